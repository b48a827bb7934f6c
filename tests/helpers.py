"""Helpers shared by the test modules. Torch-free at import: the runtime's tests run without torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "sample"
BUNDLED_MASKS = Path(__file__).parent / "data" / "bundled-masks"
KVASIR_IMAGE = DATA / "images" / "kvasir-seg__cju2htabevq9108015qjei0x7.jpg"
BUSI_IMAGE = DATA / "images" / "busi__benign_110.jpg"

BLOCKER = textwrap.dedent(
    """
    import sys

    class _Block:
        BLOCKED = {blocked!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
            return None

    sys.meta_path.insert(0, _Block())
    """
)


RUNTIME_ONLY = ("torch", "onnx", "onnxsim", "lvunet_edge", "lvunet_export")


def no_torch_env(folder: Path, blocked: tuple[str, ...] = RUNTIME_ONLY) -> dict[str, str]:
    """Environment variables under which torch, onnx and the other stages cannot be imported."""
    (folder / "sitecustomize.py").write_text(BLOCKER.replace("{blocked!r}", repr(blocked)))
    return {**os.environ, "PYTHONPATH": str(folder)}


# lvunet-<program>: (module, console entry point, typer app)
PROGRAMS = {
    "infer": ("lvunet_runtime.cli", "infer_main", "infer_app"),
    "eval": ("lvunet_runtime.cli", "eval_main", "eval_app"),
    "bench": ("lvunet_runtime.cli", "bench_main", "bench_app"),
    "serve": ("lvunet_runtime.serve.cli", "main", "serve_app"),
    "train": ("lvunet_edge.cli", "main", "app"),
    "export": ("lvunet_export.cli", "main", "app"),
}


def entry_code(program: str, args: list) -> str:
    """Python source that runs ``lvunet-<program> args`` through its real entry point."""
    module, entry, _ = PROGRAMS[program]
    return (
        f"import sys\nfrom {module} import {entry}\n"
        f"sys.argv = ['lvunet-{program}', *{[str(a) for a in args]!r}]\n{entry}()"
    )


def start_serve(args: list, env: dict | None = None, **popen) -> tuple[subprocess.Popen, str]:
    """``lvunet-serve args`` in a fresh interpreter; the process and the URL of its first line."""
    process = subprocess.Popen(
        [sys.executable, "-c", entry_code("serve", args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    line = process.stdout.readline()
    if not line.startswith("lvunet-serve: http://"):
        process.kill()
        raise AssertionError(f"lvunet-serve did not start: {line}{process.stderr.read()}")
    assert "not a medical device" in line, line
    return process, line.split()[1]


def run_entry(program: str, args: list, env: dict | None = None, cwd: Path | None = None):
    """Run ``lvunet-<program>`` through its real entry point in a fresh interpreter."""
    code = entry_code(program, args)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="backslashreplace",  # file names that are not UTF-8 come back as bytes
        timeout=300,
    )


def assert_one_line_error(code: int, stderr: str, expected: str, program: str, exit_code: int = 1):
    """A refusal: the exit code, one line on stderr naming the program, no traceback."""
    assert code == exit_code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error:"), stderr
    assert expected in lines[0], lines[0]


def write_pair(
    root: Path, stem: str, image: Image.Image, mask: Image.Image, ext=".png", mask_name=None
):
    """``root/images/<stem><ext>`` and ``root/masks/<mask_name or stem.png>``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{stem}{ext}")
    mask.save(root / "masks" / (mask_name or f"{stem}.png"))


def box_mask(size=(40, 30), value=255) -> Image.Image:
    """A mask with one rectangle of ``value``."""
    array = np.zeros(size[::-1], np.uint8)
    array[5:20, 10:30] = value
    return Image.fromarray(array)


def copy_pairs(prefix: str, folder: Path) -> Path:
    """The sample pairs whose id starts with ``prefix``, as a dataset folder."""
    import shutil

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for path in (DATA / "images").glob(f"{prefix}*"):
        shutil.copy(path, folder / "images")
        shutil.copy(DATA / "masks" / f"{path.stem}.png", folder / "masks")
    return folder


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove a run left the user's files alone)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def randomize_bn(model, seed: int = 0):
    """Give every BatchNorm random affine parameters and running statistics (in place)."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


def calibrate_random_model(model, images: list, logit_std: float = 0.4, threshold: float = 0.5):
    """Make a random LV-UNet (slope 1) answer its inputs: BatchNorm statistics measured on ``images``
    (a random net with made-up statistics gives nearly the same logit everywhere, so every mask would be
    empty), then the head scaled to logits of std ``logit_std`` whose median is the logit of
    ``threshold``, so about half of
    every mask is foreground and many pixels lie near the threshold. (A larger spread amplifies float
    rounding too: at std 1 ONNX Runtime and torch differ by 1.4e-4, over the export's 1e-4; at 0.4 by
    about 5e-5.) In place; returns the model."""
    import torch
    from lvunet_runtime.contract import ModelContract
    from lvunet_runtime.processing import preprocess
    from torch import nn

    x = torch.from_numpy(preprocess(images, ModelContract()))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the one calibration pass
    model.train()
    with torch.no_grad():
        model(x)
        for norm in norms:
            norm.momentum = 0.1
        model.eval()
        logits = model(x)[:, 0]
        scale = logit_std / logits.std()
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
        centre = float(np.log(threshold / (1 - threshold)))  # the logit of the threshold
        model.head.bias.sub_(model(x)[:, 0].median() - centre)
    return model


def mask_statistics(probabilities, threshold: float = 0.5) -> tuple[float, float]:
    """(foreground fraction, fraction of pixels within 0.1 of ``threshold``) of probability maps."""
    probabilities = np.asarray(probabilities)
    return float((probabilities > threshold).mean()), float(
        (np.abs(probabilities - threshold) < 0.1).mean()
    )


def edit_metadata(source: Path, target: Path, **changes) -> Path:
    """A copy of an ONNX file with metadata keys replaced (value None removes the key). Needs onnx."""
    import json

    import onnx

    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        full = f"lvunet.{key}"
        if value is None:
            props.pop(full, None)
        else:
            props[full] = value if isinstance(value, RawJSON) else json.dumps(value)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))
    return target


def nan_weights_model(source: Path, target: Path) -> Path:
    """A copy of an ONNX file whose first convolution weights are all NaN (a diverged run). Needs onnx."""
    import onnx

    model = onnx.load(str(source))
    weights = next(t for t in model.graph.initializer if len(t.dims) == 4)
    array = onnx.numpy_helper.to_array(weights).copy()
    array[...] = np.nan
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(target))
    return target


class RawJSON(str):
    """A metadata value written as is (to write malformed or string-typed values)."""


class CliResult:
    """Exit code and captured output of one in-process command run."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.exit_code = self.returncode = code
        self.stdout, self.stderr = stdout, stderr


def cli(program: str, *args) -> CliResult:
    """Run ``lvunet-<program>`` in this process through the real entry wrapper (exit codes, one-line
    errors), capturing its output: as the console script runs it, without a new interpreter."""
    import contextlib
    import importlib
    import io

    module, _, app = PROGRAMS[program]
    from lvunet_runtime.command import run_command

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_command(
            getattr(importlib.import_module(module), app),
            f"lvunet-{program}",
            [str(a) for a in args],
        )
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


def assert_masks_equal_off_threshold(mask, expected, probability, threshold, tolerance=1e-4):
    """Two masks equal on every pixel whose probability is more than ``tolerance`` from ``threshold``
    (float rounding may flip only those), and the masks are not trivially equal (neither empty nor full)."""
    mask, expected, probability = np.asarray(mask), np.asarray(expected), np.asarray(probability)
    assert 0.01 < expected.mean() < 0.99, (
        f"degenerate reference mask ({expected.mean():.3f} foreground)"
    )
    decided = np.abs(probability - threshold) > tolerance
    differ = int((mask != expected)[decided].sum())
    assert differ == 0, f"{differ} pixel(s) differ farther than {tolerance} from the threshold"

"""Mutation check: break the code on purpose and show that a test fails for each break.

Every mutation names one edit (a text that occurs exactly once in one source file, and what replaces it)
and the test modules that guard it. For each, the edit is made, only those modules run (``pytest -x``),
and the edit is undone; a mutation is *caught* when pytest fails. The script exits 1 if any mutation
survives (or no longer applies because its text moved), so it can be rerun after any change:

    .venv/bin/python tests/mutations.py            # all mutations, about 4 minutes on 2 cores
    .venv/bin/python tests/mutations.py threshold  # those whose name contains "threshold"

Not part of ``make test``: each mutation reruns its modules, so the whole list costs minutes. Files are
edited in place and always restored (also on Ctrl-C); run it on a clean tree.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = "runtime/lvunet_runtime"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    # --- the contract's preprocessing -------------------------------------------------------------
    Mutation(
        "interpolation: always bilinear instead of the contract's",
        f"{RUNTIME}/processing.py",
        "interpolation=INTERPOLATION_FLAGS[contract.resize_interpolation])",
        "interpolation=cv2.INTER_LINEAR)",
        ("tests/runtime/test_segmenter.py",),
    ),
    Mutation(
        "channel order: BGR models fed RGB",
        f"{RUNTIME}/processing.py",
        'return [0, 1, 2] if contract.channel_order == "RGB" else [2, 1, 0]',
        "return [0, 1, 2]",
        ("tests/test_contract_flow.py",),
    ),
    Mutation(
        "mean/std: mean not subtracted",
        f"{RUNTIME}/processing.py",
        "shift = np.asarray(contract.mean, np.float32) / std",
        "shift = np.zeros(3, np.float32) / std",
        ("tests/runtime/test_segmenter.py",),
    ),
    Mutation(
        "mean/std: std ignored",
        f"{RUNTIME}/processing.py",
        "scale = np.float32(contract.pixel_scale) / std",
        "scale = np.float32(contract.pixel_scale) / np.float32(1.0)",
        ("tests/runtime/test_segmenter.py",),
    ),
    # --- post-processing and the threshold --------------------------------------------------------
    Mutation(
        "threshold: the mask ignores the threshold asked for (always 0.5)",
        f"{RUNTIME}/processing.py",
        "return prob, prob > threshold",
        "return prob, prob > 0.5",
        ("tests/export/test_export.py",),
    ),
    Mutation(
        "threshold: training and export binarise logits at 0 whatever the contract says",
        f"{RUNTIME}/processing.py",
        "return float(np.log(threshold / (1.0 - threshold)))",
        "return 0.0",
        ("tests/export/test_export.py",),
    ),
    Mutation(
        "threshold: range check lets 1.0 through",
        f"{RUNTIME}/contract.py",
        "if not _is_number(value) or not 0 < value < 1:",
        "if not _is_number(value) or not 0 < value <= 1:",
        ("tests/runtime/test_contract.py",),
    ),
    Mutation(
        "post-processing order: threshold first, then resize the mask",
        f"{RUNTIME}/processing.py",
        """    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    return prob, prob > threshold""",
        """    mask = prob > threshold
    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return prob, mask""",
        ("tests/runtime/test_segmenter.py",),
    ),
    Mutation(
        "keep-largest: keeps every region",
        f"{RUNTIME}/processing.py",
        "    if count <= 2:\n        return mask",
        "    if count <= 200000:\n        return mask",
        ("tests/runtime/test_segmenter.py",),
    ),
    Mutation(
        "test-time augmentation: views not flipped back",
        f"{RUNTIME}/segmenter.py",
        "total = total + np.flip(flipped, [axis - 1 for axis in axes])",
        "total = total + flipped",
        ("tests/runtime/test_segmenter.py",),
    ),
    # --- fusion ------------------------------------------------------------------------------------
    Mutation(
        "fusion: BatchNorm eps dropped",
        "lvunet_edge/fusion.py",
        "std = torch.sqrt(bn.running_var.to(weight.dtype) + bn.eps)",
        "std = torch.sqrt(bn.running_var.to(weight.dtype))",
        ("tests/training/test_fusion.py",),
    ),
    Mutation(
        "fusion: 1x1 composition in the wrong order",
        "lvunet_edge/fusion.py",
        "bias = m2 @ b1 + b2",
        "bias = b1.sum() + b2",
        ("tests/training/test_fusion.py",),
    ),
    Mutation(
        "deep training: the slope schedule stops short of 1",
        "lvunet_edge/reparam.py",
        "return 1.0",
        "return 0.999",
        ("tests/training/test_reparam.py",),
    ),
    # --- masks, metrics, data ----------------------------------------------------------------------
    Mutation(
        "mask rule: 8-bit masks binarised at > 0 instead of half their range",
        f"{RUNTIME}/data.py",
        "    mask = array > cut\n",
        "    mask = array > 0\n",
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "metrics: Dice computed as IoU",
        f"{RUNTIME}/metrics.py",
        "dice = np.where(empty, 1.0, 2 * tp / np.maximum(2 * tp + fp + fn, 1))",
        "dice = np.where(empty, 1.0, tp / np.maximum(union, 1))",
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "metrics: an empty mask with an empty prediction scores 0",
        f"{RUNTIME}/metrics.py",
        "iou = np.where(empty, 1.0, tp / np.maximum(union, 1))",
        "iou = np.where(empty, 0.0, tp / np.maximum(union, 1))",
        ("tests/runtime/test_data.py",),
    ),
    # --- writer, records, run planning -------------------------------------------------------------
    Mutation(
        "writer: inputs may be written over",
        f"{RUNTIME}/writer.py",
        "        if key in self.inputs:\n",
        "        if False:\n",
        ("tests/runtime/test_writer.py",),
    ),
    Mutation(
        "writer: files keep mkstemp's private mode 0600",
        f"{RUNTIME}/writer.py",
        "        os.chmod(tmp, file_mode())\n",
        "",
        ("tests/runtime/test_writer.py",),
    ),
    Mutation(
        "writer: not atomic (a failed write leaves its temporary)",
        f"{RUNTIME}/writer.py",
        "    finally:\n        tmp.unlink(missing_ok=True)",
        "    finally:\n        pass",
        ("tests/runtime/test_writer.py",),
    ),
    Mutation(
        "records: a rerun with other settings is not refused",
        f"{RUNTIME}/records.py",
        "if before != value and not options.overwrite:",
        "if False:",
        ("tests/runtime/test_cli.py",),
    ),
    Mutation(
        "records: the outputs of earlier runs are forgotten",
        f"{RUNTIME}/records.py",
        "record = _record(options, summary, sorted(previous | created), status)",
        "record = _record(options, summary, sorted(created), status)",
        ("tests/runtime/test_records.py",),
    ),
    Mutation(
        "run planning: two inputs may write the same output names",
        f"{RUNTIME}/plan.py",
        "if len(group) > 1 and len(suffixes) < len(group):",
        "if False:",
        ("tests/test_corpus.py",),
    ),
    Mutation(
        "faults: a full disk no longer stops the run",
        f"{RUNTIME}/errors.py",
        "    return code in STOPPING_ERRNOS",
        "    return False",
        ("tests/runtime/test_distributed.py",),
    ),
    Mutation(
        "Ray: actors lose --keep-largest",
        f"{RUNTIME}/distributed.py",
        'keep_largest=self.options["keep_largest"],',
        "keep_largest=False,",
        ("tests/runtime/test_distributed.py",),
    ),
    Mutation(
        "segmenter spec: the threshold does not reach a segmenter opened from its spec",
        f"{RUNTIME}/segmenter.py",
        'return Segmenter(**{**asdict(self), "providers": self.providers and list(self.providers)})',
        'return Segmenter(**{**asdict(self), "threshold": None, "providers": self.providers and list(self.providers)})',
        ("tests/runtime/test_distributed.py",),
    ),
    Mutation(
        "pipeline: results handed back in completion order",
        f"{RUNTIME}/pipeline.py",
        "            yield _outcome(*finishing.popleft())\n        while finishing:",
        "            yield _outcome(*finishing.pop())\n        while finishing:",
        ("tests/runtime/test_pipeline.py",),
    ),
    Mutation(
        "command runner: refusals exit 0",
        f"{RUNTIME}/command.py",
        "        return exc.exit_code\n",
        "        return 0\n",
        ("tests/runtime/test_cli.py",),
    ),
    Mutation(
        "first line: an empty message gives an empty line",
        f"{RUNTIME}/errors.py",
        "    return type(exc).__name__",
        '    return ""',
        ("tests/runtime/test_errors.py",),
    ),
    Mutation(
        "training: the contract's threshold is not the one asked for",
        "lvunet_edge/config.py",
        "        threshold=config.threshold,",
        "",
        ("tests/training/test_train.py",),
    ),
    Mutation(
        "checkpoints: loaded without weights_only",
        "lvunet_edge/checkpoint.py",
        "map_location=map_location, weights_only=True",
        "map_location=map_location, weights_only=False",
        ("tests/training/test_checkpoint.py",),
    ),
    # --- added with the WebGPU provider and the hardening round ---------------------------------------
    Mutation(
        "WebGPU: a software adapter used when a hardware one is asked for",
        f"{RUNTIME}/webgpu.py",
        'if wanted == "gpu" and hardware:',
        'if wanted == "gpu" and (hardware or software):\n        hardware = hardware or software',
        ("tests/runtime/test_webgpu.py",),
    ),
    Mutation(
        "recommendation: the fastest provider chosen even when its masks disagree",
        f"{RUNTIME}/bench.py",
        '    agreeing = [r for r in measured if r["agrees"]]',
        '    agreeing = [r for r in measured if r.get("status") == "ok"]',
        ("tests/runtime/test_recommend.py",),
    ),
    Mutation(
        "records: no plan written before the work (a killed run cannot be finished)",
        f"{RUNTIME}/infer.py",
        "        write_plan(options, summary, previous, planned, guard)\n",
        "",
        ("tests/runtime/test_reruns.py",),
    ),
    Mutation(
        "lock: a second live run is let in",
        f"{RUNTIME}/lock.py",
        'if holder is None or holder.get("host") != me["host"] or process_alive(holder["pid"]):',
        "if False:",
        ("tests/runtime/test_reruns.py",),
    ),
    Mutation(
        "mask rule: colour masks read through their first channel",
        f"{RUNTIME}/data.py",
        'return rgb.max(axis=2), "colour"',
        'return rgb[..., 0], "colour"',
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "mask rule: masks not turned by their EXIF orientation",
        f"{RUNTIME}/data.py",
        "array, kind = _mask_values(upright(image))",
        "array, kind = _mask_values(image)",
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "inputs: --recursive descends into hidden and system folders",
        f"{RUNTIME}/inputs.py",
        'folders[:] = [f for f in folders if not f.startswith(".") and f not in SYSTEM_FOLDERS]',
        "pass",
        ("tests/test_corpus.py",),
    ),
    Mutation(
        "model identity: the model's path reported",
        f"{RUNTIME}/outputs.py",
        '"model": segmenter.identity,',
        '"model": str(segmenter.path),',
        ("tests/runtime/test_records.py",),
    ),
    # --- hardening, second round (server limits, names, PNGs, data checks) ------------------------
    Mutation(
        "server: no header deadline (a silent client holds its connection)",
        f"{RUNTIME}/serve/limits.py",
        '        if wanted == "headers" and self.timeout_keep_alive_task is not None:',
        '        if wanted == "headers":',
        ("tests/serve/test_limits.py",),
    ),
    Mutation(
        "server: the connection cap not applied",
        f"{RUNTIME}/serve/limits.py",
        "            if len(self.connections) > limits.max_connections:",
        "            if False:",
        ("tests/serve/test_limits.py",),
    ),
    Mutation(
        "server: the machine's faults reported as 500, not 503",
        f"{RUNTIME}/serve/app.py",
        "    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS):",
        "    if False:",
        ("tests/serve/test_limits.py",),
    ),
    Mutation(
        "server: a replaced model file served with its old weights",
        f"{RUNTIME}/serve/app.py",
        "        if loaded is not None and (loaded[2] == stamp or not self._changed(loaded[0], source)):",
        "        if loaded is not None:",
        ("tests/serve/test_limits.py",),
    ),
    Mutation(
        "server: multipart forms taken as the raw body",
        f"{RUNTIME}/serve/app.py",
        '    if not content_type.lower().startswith("multipart/form-data"):',
        "    if True:",
        ("tests/serve/test_limits.py",),
    ),
    Mutation(
        "native paths: a name that is not UTF-8 handed to OpenCV as it is",
        f"{RUNTIME}/native.py",
        "    if is_utf8(text):\n        yield text\n        return",
        "    if True:\n        yield text\n        return",
        ("tests/test_corpus_places.py",),
    ),
    Mutation(
        "PNG: damaged optional chunks refused as Pillow does",
        f"{RUNTIME}/decoder.py",
        "        if ancillary and zlib.crc32(body, zlib.crc32(kind)) != crc:",
        "        if False:",
        ("tests/runtime/test_decoder.py", "tests/test_corpus_places.py"),
    ),
    Mutation(
        "commands: ONNX Runtime's telemetry left on",
        f"{RUNTIME}/command.py",
        '    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")',
        "    pass",
        ("tests/test_corpus_places.py",),
    ),
    Mutation(
        "lock takeover: a killed run's temporary files left",
        f"{RUNTIME}/lock.py",
        "            for unfinished in left:\n                unfinished.unlink(missing_ok=True)",
        "            for unfinished in left:\n                pass",
        ("tests/runtime/test_reruns.py",),
    ),
    Mutation(
        "mask rule: transparency ignored (black on transparent reads empty)",
        f"{RUNTIME}/data.py",
        '    if alpha is not None:\n        return alpha, "alpha"',
        '    if False:\n        return alpha, "alpha"',
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "data checks: byte-identical images not named",
        f"{RUNTIME}/data.py",
        "    duplicated = [ids for ids in copies.values() if len(ids) > 1]",
        "    duplicated = []",
        ("tests/runtime/test_data.py",),
    ),
    Mutation(
        "input guard: a grey image sent to a colour model never warned",
        f"{RUNTIME}/contract.py",
        "    if seen == contract.input_colour:\n        return None",
        "    if True:\n        return None",
        ("tests/runtime/test_fit.py", "tests/runtime/test_contract.py"),
    ),
    Mutation(
        "inputs: DICOM files without an extension not recognised",
        f"{RUNTIME}/data.py",
        "    return suffix not in VIDEO_SUFFIXES and path.is_file() and is_dicom(path)",
        "    return False",
        ("tests/runtime/test_fit.py",),
    ),
    # --- training speed and several runs at once (#24) ---------------------------------------------
    Mutation(
        "multi-run: BatchNorm statistics not copied back into each run's model",
        "lvunet_edge/multirun.py",
        "                    b[name].copy_(part)",
        "                    pass",
        ("tests/training/test_multirun.py",),
    ),
    Mutation(
        "multi-run: convolutions not grouped per run",
        "lvunet_edge/multirun.py",
        "            module.groups *= count",
        "            module.groups *= 1",
        ("tests/training/test_multirun.py",),
    ),
    Mutation(
        "--compile: a compiler fault stops the run instead of falling back",
        "lvunet_edge/train.py",
        "            except Exception as exc:  # noqa: BLE001 - any compiler fault: train eagerly and say so",
        "            except KeyboardInterrupt as exc:",
        ("tests/training/test_train.py",),
    ),
    # --- the contract's version 6 (#28) ------------------------------------------------------------
    Mutation(
        "contract v6: an unknown output_resize accepted",
        f"{RUNTIME}/contract.py",
        "    if c.output_resize not in OUTPUT_RESIZES:",
        "    if False:",
        ("tests/runtime/test_contract.py",),
    ),
]


def run(mutation: Mutation) -> tuple[str, float]:
    """``caught``, ``SURVIVED`` or ``NOT APPLIED``, and the seconds it took."""
    path = ROOT / mutation.file
    original = path.read_text()
    if original.count(mutation.old) != 1:
        return "NOT APPLIED", 0.0
    started = time.perf_counter()
    try:
        path.write_text(original.replace(mutation.old, mutation.new))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    return ("caught" if result.returncode != 0 else "SURVIVED"), time.perf_counter() - started


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not argv or any(a in m.name for a in argv)]
    width = max(len(m.name) for m in chosen)
    bad = 0
    for mutation in chosen:
        verdict, seconds = run(mutation)
        bad += verdict != "caught"
        print(
            f"{mutation.name:<{width}}  {verdict:<11} {seconds:5.1f} s  {' '.join(mutation.tests)}"
        )
    print(f"{len(chosen) - bad} of {len(chosen)} mutations caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Checkpoint -> fused, simplified, verified ONNX file with the runtime's metadata contract.

Steps (each reported in :class:`ExportReport`): load the training checkpoint; refuse unless its slope is
exactly 1; fuse and compare fused vs trained in torch; ``torch.onnx.export`` (TorchScript exporter, opset
17: it gives the clean graph and needs no workaround for hardswish or bilinear resize); ``onnx.checker``;
onnxsim; metadata; ONNX Runtime vs torch on the same inputs. The file is written to a temporary name and
renamed only when every check passed, so a failed export never leaves a file that looks valid.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lvunet_runtime
import numpy as np
import onnx
import onnxruntime as ort
import torch
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.errors import LVUNetRuntimeError
from lvunet_runtime.image import load_image
from lvunet_runtime.processing import resize_input, to_model_input
from lvunet_runtime.session import Segmenter

from lvunet_edge import LVUNetError, load_checkpoint, reparameterize_model
from lvunet_edge.checkpoint import read_checkpoint

FP32_TOLERANCE = 1e-4  # max |logit| difference allowed between torch and ONNX Runtime (fp32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_VERIFY_IMAGES = Path(lvunet_runtime.__file__).parent / "samples"


class ExportError(LVUNetError):
    """The export cannot proceed or its result failed a check."""


@dataclass
class ExportReport:
    """What the export did and measured; printed by the CLI as a summary."""

    out: str = ""
    precision: str = "fp32"
    steps: list[str] = field(default_factory=list)
    fused_vs_trained_max_abs: float = 0.0
    ort_vs_torch_max_abs: float = 0.0
    mask_agreement: float = 1.0
    dice_vs_fp32: float | None = None
    nodes: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    verify_images: int = 0
    notes: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_batch(folder: Path | None, contract: ModelContract, limit: int = 16) -> np.ndarray:
    """Real images resized exactly as the runtime does: uint8 (N, H, W, 3) at model size."""
    folder = folder or DEFAULT_VERIFY_IMAGES
    if not folder.is_dir():
        raise ExportError(f"verification image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise ExportError(f"no images in {folder}")
    try:
        return np.stack([resize_input(load_image(p)[0], contract) for p in paths])
    except LVUNetRuntimeError as exc:
        raise ExportError(f"verification image unusable: {exc}") from None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2 * inter / total


def _run_ort(path: Path, feed: np.ndarray) -> np.ndarray:
    """The written file through the runtime itself (its metadata, its batching), on CPU."""
    return Segmenter(path, providers=["cpu"]).run(feed)


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    opset: int = 17,
    image_size: int = 256,
    dynamic_batch: bool = True,
    precision: str = "fp32",
    calib: str | Path | None = None,
    simplify: bool = True,
    verify_images: str | Path | None = None,
    label: str | None = None,
    dataset: str | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Export a training checkpoint to a verified ONNX file. See the module docstring for the steps.

    Raises:
        ExportError: bad checkpoint, slope not 1, existing output without ``overwrite``, a missing
            onnxsim, or a parity check that failed (the output file is then not written).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"precision must be fp32, fp16 or int8, not {precision!r}")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ExportError(f"cannot write {out}: folder {out.parent} is missing or not writable")
    if precision == "int8" and calib is None:
        raise ExportError("--precision int8 needs --calib DIR with calibration images")
    if simplify:
        try:
            import onnxsim  # noqa: F401  (imported lazily: only the simplification step needs it)
        except ImportError:
            raise ExportError(
                "onnxsim is not installed: pip install onnxsim, or pass --no-simplify"
            ) from None
    report = ExportReport(out=str(out), precision=precision)

    payload = read_checkpoint(checkpoint)
    if payload.get("fused"):
        raise ExportError(
            f"{checkpoint} is already fused; export needs the training checkpoint (best.pt from "
            "lvunet-train) so it can prove the fused model equals the trained one"
        )
    slope = payload.get("slope")
    if slope != 1.0:
        raise ExportError(
            f"{checkpoint} has LeakyReLU slope {slope}, not 1.0: fusing would change its outputs. "
            "Use a checkpoint from the end of deep training (best.pt is chosen among slope-1 epochs), "
            "or resume training until the slope schedule reaches 1.0"
        )
    trained, info = load_checkpoint(checkpoint)
    report.steps.append(f"loaded {checkpoint.name}: slope 1.0, config {info['config']}")
    fused = reparameterize_model(trained)
    divisor = fused.config.size_divisor
    if image_size % divisor:
        raise ExportError(f"--image-size must be a multiple of {divisor}, not {image_size}")

    metrics = info.get("metrics", {})
    train_config = info.get("train_config", {})
    contract = ModelContract(
        input_height=image_size,
        input_width=image_size,
        dynamic_batch=dynamic_batch,
        label=label or info.get("label") or "foreground",
        precision=precision,
        model_config=info["config"],
        training_dataset=dataset or Path(str(train_config.get("data", ""))).name,
        split=str(info.get("split", {}).get("source", "")),
        test_metrics=dict(info.get("test_metrics", {})),  # written by lvunet-train after its test
        validation_metrics=dict(metrics.get("val", {})),
        source_sha256=_sha256(checkpoint),
        versions={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "lvunet_runtime": lvunet_runtime.__version__,
        },
    )

    # Step 3: fused vs trained in torch, on random inputs and on real images.
    generator = torch.Generator().manual_seed(0)
    random_batch = (
        (torch.rand(2, image_size, image_size, 3, generator=generator) * 255)
        .to(torch.uint8)
        .numpy()
    )
    real_batch = _verify_batch(Path(verify_images) if verify_images else None, contract)
    report.verify_images = len(real_batch)
    inputs = np.concatenate([random_batch, real_batch])
    float_inputs = to_model_input(inputs, contract)
    with torch.no_grad():
        x = torch.from_numpy(float_inputs)
        trained_logits = trained(x)[:, 0].numpy()
        fused_logits = fused(x)[:, 0].numpy()
    report.fused_vs_trained_max_abs = float(np.abs(trained_logits - fused_logits).max())
    scale = max(1.0, float(np.abs(trained_logits).max()))
    if report.fused_vs_trained_max_abs > FP32_TOLERANCE * scale:
        raise ExportError(
            f"fused model differs from the trained one by {report.fused_vs_trained_max_abs:.2e} "
            f"(> {FP32_TOLERANCE:g} x {scale:.1f})"
        )
    report.steps.append(
        f"fused: {report.fused_vs_trained_max_abs:.2e} max |logit diff| vs trained on "
        f"{len(inputs)} inputs ({len(real_batch)} real images)"
    )

    # Steps 4-6 on a temporary file beside the output; renamed only when everything passed.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        example = torch.from_numpy(float_inputs[:1])
        axes = {contract.input_name: {0: "batch"}, contract.output_name: {0: "batch"}}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    fused,
                    (example,),
                    str(tmp),
                    opset_version=opset,
                    dynamo=False,
                    input_names=[contract.input_name],
                    output_names=[contract.output_name],
                    dynamic_axes=axes if dynamic_batch else None,
                    do_constant_folding=True,
                )
            model = onnx.load(str(tmp))
            onnx.checker.check_model(model, full_check=True)
        except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
            # e.g. an opset too old for hardswish (< 14): say so instead of a traceback
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"ONNX export at opset {opset} failed: {first[:300]}") from None
        report.steps.append(
            f"torch.onnx.export (TorchScript exporter, opset {opset}) + onnx.checker"
        )
        if simplify:
            import onnxsim

            model, ok = onnxsim.simplify(model)
            if not ok:
                raise ExportError("onnxsim could not validate the simplified model")
            report.steps.append("onnxsim simplified")
        model = _constants_to_initializers(model)
        fp32_model = model
        if precision == "fp16":
            model = _to_fp16(model)
            report.steps.append("float16 weights and compute, float32 inputs and outputs")
        del model.metadata_props[:]
        for key, value in contract.to_metadata().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.doc_string = (
            f"LV-UNet ({contract.label}) exported by lvunet-export from {checkpoint.name}"
        )
        onnx.save(model, str(tmp))
        if precision == "int8":
            _quantize_int8(fp32_model, tmp, Path(calib), contract)
            model = onnx.load(str(tmp))
            report.steps.append(f"int8 static QDQ quantization calibrated on {calib}")
        report.nodes = len(model.graph.node)
        for node in model.graph.node:
            report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        leftovers = {"BatchNormalization", "LeakyRelu"} & set(report.op_counts)
        if leftovers:
            raise ExportError(f"exported graph still has {sorted(leftovers)} nodes")

        # Step 6: ONNX Runtime vs torch on the same inputs.
        ort_logits = _run_ort(tmp, float_inputs)
        report.ort_vs_torch_max_abs = float(np.abs(ort_logits - fused_logits).max())
        ort_masks, torch_masks = ort_logits > 0, fused_logits > 0
        report.mask_agreement = float((ort_masks == torch_masks).mean())
        real = slice(len(random_batch), None)
        report.dice_vs_fp32 = float(
            np.mean([_dice(a, b) for a, b in zip(ort_masks[real], torch_masks[real], strict=True)])
        )
        report.steps.append(
            f"ONNX Runtime vs torch: {report.ort_vs_torch_max_abs:.2e} max |logit diff|, "
            f"{report.mask_agreement:.6f} pixel agreement, mask Dice {report.dice_vs_fp32:.4f} on real images"
        )
        if precision == "fp32" and report.ort_vs_torch_max_abs > FP32_TOLERANCE:
            raise ExportError(
                f"ONNX Runtime differs from torch by {report.ort_vs_torch_max_abs:.2e} (> {FP32_TOLERANCE:g})"
            )
        if precision == "fp32" and report.mask_agreement != 1.0:
            raise ExportError(
                f"ONNX Runtime masks differ from torch's ({report.mask_agreement:.6f} agreement)"
            )
        if precision != "fp32":
            report.notes.append(
                f"{precision}: mask Dice {report.dice_vs_fp32:.4f} vs the fp32 model on the verify "
                "images; measure its speed with lvunet-bench before choosing it (int8 was slower than "
                "fp32 on 2-core CPUs in the reference measurements)"
            )
        report.size_bytes = tmp.stat().st_size
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn tensor-valued Constant nodes into initializers: same graph, fewer nodes to schedule."""
    keep = []
    for node in model.graph.node:
        value = [a for a in node.attribute if a.name == "value"]
        if node.op_type == "Constant" and len(node.attribute) == 1 and value:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


class _CalibrationReader:
    """Feeds preprocessed calibration images to onnxruntime.quantization, one at a time."""

    def __init__(self, folder: Path, contract: ModelContract) -> None:
        batch = _verify_batch(folder, contract, limit=64)
        self._items = iter(
            [
                {contract.input_name: to_model_input(batch[i : i + 1], contract)}
                for i in range(len(batch))
            ]
        )

    def get_next(self) -> dict[str, Any] | None:
        return next(self._items, None)


def _quantize_int8(
    fp32_model: onnx.ModelProto, path: Path, calib: Path, contract: ModelContract
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader = type("Reader", (_CalibrationReader, CalibrationDataReader), {})(calib, contract)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "fp32.onnx"
        onnx.save(fp32_model, str(source))
        quantize_static(
            str(source),
            str(path),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))

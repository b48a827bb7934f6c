"""Checkpoint -> fused, simplified, verified ONNX file carrying the contract the checkpoint trained with.

Steps (each reported in :class:`ExportReport`): load the training checkpoint and refuse unless its slope
is exactly 1; take the contract it recorded (input size, normalisation, interpolation, channel order,
threshold); fuse and compare fused vs trained in torch; ``torch.onnx.export`` (TorchScript exporter,
opset 17); ``onnx.checker``; onnxsim; metadata; ONNX Runtime vs torch through the runtime's own
``Segmenter``; and the test-split accuracy measured on the written file itself. The file is written to a
temporary name and renamed only when every check passed, so a failed export never leaves a file that
looks valid.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lvunet_runtime
import numpy as np
import onnx
import onnxruntime as ort
import torch
from lvunet_runtime.contract import CONTRACT_VERSION, ModelContract
from lvunet_runtime.data import file_sha256, find_pairs, is_image_file
from lvunet_runtime.errors import LVUNetRuntimeError, first_line
from lvunet_runtime.evaluate import evaluate
from lvunet_runtime.image import load_image
from lvunet_runtime.metrics import confusion_counts, per_image_scores
from lvunet_runtime.native import library_path
from lvunet_runtime.processing import (
    binarize_output,
    logit_threshold,
    resize_input,
    to_model_input,
)
from lvunet_runtime.segmenter import Segmenter
from lvunet_runtime.writer import OutputGuard

from lvunet_edge import LVUNetError, load_checkpoint, reparameterize_model, require_slope_one
from lvunet_edge.checkpoint import read_checkpoint
from lvunet_edge.config import training_recipe
from lvunet_edge.model import LVUNet

FP32_TOLERANCE = 1e-4  # max |logit| difference allowed between torch and ONNX Runtime (fp32)
DEFAULT_VERIFY_IMAGES = Path(lvunet_runtime.__file__).parent / "samples"
ACCURACY_KEYS = ("images", "iou", "dice", "dataset_iou", "dataset_dice", "precision", "recall")


class ExportError(LVUNetError):
    """The export cannot proceed or its result failed a check."""


@dataclass
class ExportReport:
    """What the export did and measured; printed by the CLI as a summary."""

    out: str = ""
    precision: str = "fp32"
    input_size: tuple[int, int] = (0, 0)
    training_size: tuple[int, int] | None = None
    steps: list[str] = field(default_factory=list)
    fused_vs_trained_max_abs: float = 0.0
    ort_vs_torch_max_abs: float = 0.0
    mask_agreement: float = 1.0
    dice_vs_fp32: float | None = None
    nodes: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    verify_images: int = 0
    test_metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    opset: int = 17,
    image_size: int | None = None,
    dynamic_batch: bool = True,
    precision: str = "fp32",
    calib: str | Path | None = None,
    simplify: bool = True,
    verify_images: str | Path | None = None,
    label: str | None = None,
    dataset: str | None = None,
    data: str | Path | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Export a training checkpoint to a verified ONNX file. See the module docstring for the steps.

    Args:
        image_size: None exports at the size the checkpoint trained at; another size only when asked,
            and the report says it differs.
        data: the dataset folder for the accuracy check, when the one the checkpoint recorded is not
            here. Without data the file gets no accuracy key and the report says why.

    Raises:
        ExportError: bad request or checkpoint, slope not 1, existing output without ``overwrite``, a
            missing onnxsim, or a failed check (the output file is then not written).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    check_request(checkpoint, out, precision, calib, simplify, overwrite)
    guard = OutputGuard(overwrite=overwrite, inputs=[checkpoint])
    report = ExportReport(out=str(out), precision=precision)
    trained, info = load_training_checkpoint(checkpoint, report)
    fused = reparameterize_model(trained)
    contract = contract_for_export(
        info, checkpoint, fused, image_size, dynamic_batch, precision, label, dataset, report
    )
    inputs, real = parity_inputs(contract, verify_images, report)
    fused_logits = check_fused_equals_trained(trained, fused, inputs, report)
    with guard.writing(out, ".onnx") as real_tmp, library_path(real_tmp) as tmp_name:
        tmp = Path(
            tmp_name
        )  # torch, onnx and ONNX Runtime encode paths as UTF-8: a link if need be
        model = export_graph(fused, inputs[:1], contract, opset, tmp, report)
        if simplify:
            model = simplify_graph(model, report)
        write_model(model, tmp, contract, checkpoint, calib, report)
        check_runtime_parity(tmp, inputs, fused_logits, real, contract, report)
        measure_accuracy(tmp, info, data, contract, report)
        report.size_bytes = tmp.stat().st_size
    return report


def check_request(
    checkpoint: Path,
    out: Path,
    precision: str,
    calib: str | Path | None,
    simplify: bool,
    overwrite: bool,
) -> None:
    """Every option and the output path, before any work."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"precision must be fp32, fp16 or int8, not {precision!r}")
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; give the path of the .onnx file to write")
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise ExportError(f"--out {out} is the checkpoint itself; choose another file name")
    try:
        OutputGuard(overwrite=overwrite, inputs=[checkpoint]).check(out)
    except LVUNetRuntimeError as exc:
        raise ExportError(str(exc)) from None
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


def load_training_checkpoint(
    checkpoint: Path, report: ExportReport
) -> tuple[LVUNet, dict[str, Any]]:
    """The trained (unfused) model at slope 1 and everything its checkpoint recorded."""
    payload = read_checkpoint(checkpoint)
    if payload.get("fused"):
        raise ExportError(
            f"{checkpoint} is already fused; export needs the training checkpoint (best.pt from "
            "lvunet-train) so it can prove the fused model equals the trained one"
        )
    require_slope_one(payload.get("slope"), f"checkpoint {checkpoint}")
    for name, tensor in payload["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ExportError(
                f"{checkpoint} has non-finite weights (NaN or inf) in {name}; the run diverged"
            )
    trained, info = load_checkpoint(checkpoint)
    report.steps.append(f"loaded {checkpoint.name}: slope 1.0, config {info['config']}")
    return trained, info


def contract_for_export(
    info: dict[str, Any],
    checkpoint: Path,
    fused: LVUNet,
    image_size: int | None,
    dynamic_batch: bool,
    precision: str,
    label: str | None,
    dataset: str | None,
    report: ExportReport,
) -> ModelContract:
    """The contract the checkpoint trained with, at the training size unless another was asked for."""
    train_config = info.get("train_config", {})
    if "contract" in info:
        recorded = ModelContract.from_dict(info["contract"], source=str(checkpoint))
    else:
        size = int(train_config.get("image_size", 256))
        recorded = ModelContract(input_height=size, input_width=size)
        report.notes.append(
            f"{checkpoint.name} predates recorded contracts: assumed its training inputs were RGB, "
            f"{size}x{size} ({'its train_config' if 'image_size' in train_config else 'default'}), "
            "area resize, /255 and ImageNet mean/std, threshold 0.5"
        )
    training_size = recorded.training_size or recorded.input_size
    size = image_size if image_size is not None else training_size[0]
    divisor = fused.config.size_divisor
    if size <= 0 or size % divisor:
        raise ExportError(f"--image-size must be a positive multiple of {divisor}, not {size}")
    if (size, size) != tuple(training_size):
        report.notes.append(
            f"exported at {size}x{size}, but the checkpoint trained at "
            f"{training_size[0]}x{training_size[1]}: accuracy may differ from training"
        )
    report.input_size, report.training_size = (size, size), tuple(training_size)
    return replace(
        recorded,
        input_height=size,
        input_width=size,
        dynamic_batch=dynamic_batch,
        precision=precision,
        label=label or info.get("label") or recorded.label,
        model_config=info["config"],
        training_dataset=dataset or Path(str(train_config.get("data", ""))).name,
        training_size=tuple(training_size),
        training_recipe=recorded.training_recipe or training_recipe(train_config),
        split=str(info.get("split", {}).get("source", "")),
        test_metrics={},
        validation_metrics=dict(info.get("metrics", {}).get("val", {})),
        source_sha256=file_sha256(checkpoint),
        versions={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "lvunet_runtime": lvunet_runtime.__version__,
        },
        contract_version=CONTRACT_VERSION,
    )


def parity_inputs(
    contract: ModelContract, verify_images: str | Path | None, report: ExportReport
) -> tuple[np.ndarray, slice]:
    """Two random images and up to 16 real ones, normalised as the runtime does; and where the real ones are."""
    size = contract.input_size
    generator = torch.Generator().manual_seed(0)
    random_batch = (torch.rand(2, *size, 3, generator=generator) * 255).to(torch.uint8).numpy()
    real_batch = _verify_batch(Path(verify_images) if verify_images else None, contract)
    report.verify_images = len(real_batch)
    batch = np.concatenate([random_batch, real_batch])
    return to_model_input(batch, contract), slice(len(random_batch), None)


def check_fused_equals_trained(
    trained: LVUNet, fused: LVUNet, inputs: np.ndarray, report: ExportReport
) -> np.ndarray:
    """Fused vs trained in torch float32; returns the fused model's logits (N, H, W)."""
    with torch.no_grad():
        x = torch.from_numpy(inputs)
        trained_logits = trained(x)[:, 0].numpy()
        fused_logits = fused(x)[:, 0].numpy()
    if not (np.isfinite(trained_logits).all() and np.isfinite(fused_logits).all()):
        raise ExportError(
            "the model gives non-finite logits (NaN or inf) on the verification inputs"
        )
    report.fused_vs_trained_max_abs = float(np.abs(trained_logits - fused_logits).max())
    scale = max(1.0, float(np.abs(trained_logits).max()))
    if not report.fused_vs_trained_max_abs <= FP32_TOLERANCE * scale:
        raise ExportError(
            f"fused model differs from the trained one by {report.fused_vs_trained_max_abs:.2e} "
            f"(> {FP32_TOLERANCE:g} x {scale:.1f})"
        )
    report.steps.append(
        f"fused: {report.fused_vs_trained_max_abs:.2e} max |logit diff| vs trained on "
        f"{len(inputs)} inputs ({report.verify_images} real images)"
    )
    return fused_logits


def export_graph(
    fused: LVUNet,
    example: np.ndarray,
    contract: ModelContract,
    opset: int,
    tmp: Path,
    report: ExportReport,
) -> onnx.ModelProto:
    """TorchScript exporter at ``opset``, then ``onnx.checker`` (full check)."""
    axes = {contract.input_name: {0: "batch"}, contract.output_name: {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                fused,
                (torch.from_numpy(example),),
                str(tmp),
                opset_version=opset,
                dynamo=False,
                input_names=[contract.input_name],
                output_names=[contract.output_name],
                dynamic_axes=axes if contract.dynamic_batch else None,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        # e.g. an opset too old for hardswish (< 14): say so instead of a traceback
        raise ExportError(f"ONNX export at opset {opset} failed: {first_line(exc)}") from None
    report.steps.append(f"torch.onnx.export (TorchScript exporter, opset {opset}) + onnx.checker")
    return model


def simplify_graph(model: onnx.ModelProto, report: ExportReport) -> onnx.ModelProto:
    """onnxsim, which validates its own result."""
    import onnxsim

    model, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    report.steps.append("onnxsim simplified")
    return model


def write_model(
    model: onnx.ModelProto,
    tmp: Path,
    contract: ModelContract,
    checkpoint: Path,
    calib: str | Path | None,
    report: ExportReport,
) -> None:
    """Precision variant, metadata contract and graph checks, written to ``tmp``."""
    model = _constants_to_initializers(model)
    if contract.precision == "fp16":
        model = _to_fp16(model)
        report.steps.append("float16 weights and compute, float32 inputs and outputs")
    model.doc_string = (
        f"LV-UNet ({contract.label}) exported by lvunet-export from {checkpoint.name}"
    )
    if contract.precision == "int8":
        _quantize_int8(model, tmp, Path(calib), contract)
        model = onnx.load(str(tmp))
        report.steps.append(f"int8 static QDQ quantization calibrated on {calib}")
    embed_contract(model, contract, tmp)
    report.nodes = len(model.graph.node)
    for node in model.graph.node:
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
    leftovers = {"BatchNormalization", "LeakyRelu"} & set(report.op_counts)
    if leftovers:
        raise ExportError(f"exported graph still has {sorted(leftovers)} nodes")


def embed_contract(model: onnx.ModelProto, contract: ModelContract, path: Path) -> None:
    """Replace the file's metadata with ``contract`` and save it to ``path`` (the one metadata writer)."""
    del model.metadata_props[:]
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def check_runtime_parity(
    tmp: Path,
    inputs: np.ndarray,
    fused_logits: np.ndarray,
    real: slice,
    contract: ModelContract,
    report: ExportReport,
) -> None:
    """The written file through the runtime itself (its metadata, its checks) vs torch, on CPU; masks
    compared at the contract's threshold, as the runtime will apply it."""
    try:
        ort_logits = Segmenter(tmp, providers=["cpu"]).run(inputs)
    except LVUNetRuntimeError as exc:
        raise ExportError(f"the written file does not load in the runtime: {exc}") from None
    report.ort_vs_torch_max_abs = float(np.abs(ort_logits - fused_logits).max())
    ort_masks, torch_masks = (
        binarize_output(logits, contract.threshold, contract.output_meaning)
        for logits in (ort_logits, fused_logits)
    )
    report.mask_agreement = float((ort_masks == torch_masks).mean())
    # within the logit tolerance of the threshold a rounding difference may flip a pixel; nowhere else
    margin = np.abs(fused_logits - logit_threshold(contract.threshold, contract.output_meaning))
    flipped_outside_tolerance = int(((ort_masks != torch_masks) & (margin > FP32_TOLERANCE)).sum())
    report.dice_vs_fp32 = float(
        per_image_scores(confusion_counts(ort_masks[real], torch_masks[real]))[1].mean()
    )
    report.steps.append(
        f"ONNX Runtime vs torch: {report.ort_vs_torch_max_abs:.2e} max |logit diff|, "
        f"{report.mask_agreement:.6f} pixel agreement, mask Dice {report.dice_vs_fp32:.4f} on real images"
    )
    if report.precision == "fp32":
        if not report.ort_vs_torch_max_abs <= FP32_TOLERANCE:
            raise ExportError(
                f"ONNX Runtime differs from torch by {report.ort_vs_torch_max_abs:.2e} (> {FP32_TOLERANCE:g})"
            )
        if flipped_outside_tolerance:
            raise ExportError(
                f"ONNX Runtime masks differ from torch's in {flipped_outside_tolerance} pixel(s) whose "
                f"logit is more than {FP32_TOLERANCE:g} from the threshold"
            )
    else:
        report.notes.append(
            f"{report.precision}: mask Dice {report.dice_vs_fp32:.4f} vs the fp32 model on the verify "
            "images; " + _PRECISION_ADVICE[report.precision]
        )


_PRECISION_ADVICE = {
    "fp16": "meant for GPU providers (on CPUs it was slower than fp32); measure with lvunet-bench",
    "int8": "measure its speed with lvunet-bench before choosing it (int8 was slower than fp32 on "
    "2-core CPUs in the reference measurements)",
}


def measure_accuracy(
    tmp: Path,
    info: dict[str, Any],
    data: str | Path | None,
    contract: ModelContract,
    report: ExportReport,
) -> None:
    """The written file on the checkpoint's test split, through the runtime, each image at its own size.

    The result goes into the file's ``test_metrics``; without a test split or its data, the file gets
    no accuracy key and the report says why. Never copied from the checkpoint.
    """
    test_ids = list(info.get("split", {}).get("test", []))
    recorded = str(info.get("train_config", {}).get("data", "") or "")
    folder = Path(data) if data is not None else (Path(recorded) if recorded else None)
    if not test_ids:
        report.notes.append("no accuracy in the metadata: the checkpoint records no test split")
        return
    if folder is None or not folder.is_dir():
        where = (
            f"the training data {folder} is not here" if folder else "no data folder is recorded"
        )
        report.notes.append(f"no accuracy in the metadata: {where}; pass --data DIR to measure it")
        return
    try:
        pairs = find_pairs(folder, test_ids)
        result = evaluate(Segmenter(tmp, providers=["cpu"]), pairs)
    except LVUNetRuntimeError as exc:
        raise ExportError(
            f"cannot measure the test accuracy on {folder}: {first_line(exc)}"
        ) from None
    metrics = {k: result[k] for k in ACCURACY_KEYS}
    metrics.update(
        measured_on="this file, through lvunet_runtime on CPU, each image at its own size",
        data=folder.name,
        split=contract.split,
    )
    embed_contract(onnx.load(str(tmp)), replace(contract, test_metrics=metrics), tmp)
    report.test_metrics = metrics
    if metrics["precision"] is None:
        report.notes.append(
            f"warning: the model predicts no foreground on any of the {metrics['images']} test "
            "images: its masks will all be empty"
        )
    report.steps.append(
        f"test split measured on the written file: {metrics['images']} images, IoU "
        f"{metrics['iou']:.4f}, Dice {metrics['dice']:.4f} (full-size masks)"
    )


def _verify_batch(folder: Path | None, contract: ModelContract, limit: int = 16) -> np.ndarray:
    """Real images resized exactly as the runtime does: uint8 (N, H, W, 3) at model size."""
    folder = folder or DEFAULT_VERIFY_IMAGES
    if not folder.is_dir():
        raise ExportError(f"verification image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if is_image_file(p))[:limit]
    if not paths:
        raise ExportError(f"no images in {folder}")
    try:
        return np.stack([resize_input(load_image(p)[0], contract) for p in paths])
    except LVUNetRuntimeError as exc:
        raise ExportError(f"verification image unusable: {exc}") from None


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
    """Static QDQ int8 (per-channel weights) written to ``path``; metadata is embedded afterwards."""
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

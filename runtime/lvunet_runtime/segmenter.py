"""``Segmenter``: one ONNX Runtime session plus the model's own pre- and post-processing contract, and
``SegmenterSpec``, the one description of a segmenter that every route opens (a local run, a Ray actor,
the server's model cache), so every option reaches every route."""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lvunet_runtime.contract import ModelContract, check_threshold, input_warning
from lvunet_runtime.errors import (
    ImageError,
    LVUNetRuntimeError,
    ModelError,
    ProviderError,
    first_line,
)
from lvunet_runtime.model_files import MODELS_DIR, resolve_model
from lvunet_runtime.processing import (
    keep_largest_region,
    postprocess,
    resize_input,
    to_model_input,
)
from lvunet_runtime.providers import (
    WEBGPU,
    check_accelerator_options,
    open_session,
    provider_options,
    resolve_providers,
)

# Test-time augmentation: the input flips (NCHW axes) whose outputs, flipped back, are averaged with the
# plain output. "h": the mirror image (2 model runs per image); "hv": also upside down and both (4 runs).
TTA_VIEWS: dict[str, list[tuple[int, ...]]] = {"off": [], "h": [(3,)], "hv": [(3,), (2,), (2, 3)]}


@dataclass(frozen=True)
class Prediction:
    """Result for one image, at the image's own size: the probability map and mask, and what
    ``lvunet-infer`` reports and writes of them (``area_px``, ``regions``, :meth:`save`, :meth:`to_json`,
    :meth:`overlay`), through the same functions the commands use."""

    probability: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB input, for overlays
    threshold: float | None = None
    model: str = ""  # the model's identity (``polyp sha256:...``)
    name: str = ""  # the input's path as given, when it was a path

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def area_fraction(self) -> float:
        return self.area_px / float(self.mask.size) if self.mask.size else 0.0

    @functools.cached_property
    def stats(self) -> dict:
        """What the per-image JSON holds: size, area, bounding box, regions (largest first)."""
        from lvunet_runtime.outputs import region_stats

        return region_stats(self.mask, self.probability)

    @property
    def regions(self) -> list[dict]:
        """Each 8-connected region: ``area_px``, ``bbox_xywh``, ``mean_probability``, ``contour_xy``."""
        return self.stats["region_list"]

    def overlay(self) -> np.ndarray:
        """The image with the region tinted and outlined (RGB uint8), as ``--overlay`` writes it."""
        from lvunet_runtime.outputs import overlay

        if self.image is None:
            raise LVUNetRuntimeError("this prediction has no image to draw on (made by finish())")
        return overlay(self.image, self.mask)

    def to_json(self) -> str:
        """The per-image JSON ``lvunet-infer --json`` writes, byte for byte."""
        from lvunet_runtime.outputs import image_json

        return image_json(self._meta(), self.mask, self.probability)[0].decode()

    def save(
        self, folder: str | Path, *, overlay: bool = False, prob: bool = False, json: bool = False
    ) -> dict[str, Path]:
        """Write what ``lvunet-infer --out folder`` writes for this image (``<stem>_mask.png``, and the
        overlay, probability map and JSON when asked), never over an existing file; the paths."""
        from lvunet_runtime.data import file_id
        from lvunet_runtime.outputs import write_image_outputs
        from lvunet_runtime.writer import OutputGuard

        folder, stem = Path(folder), file_id(Path(self.name)) if self.name else "image"
        wanted = {
            "mask": "_mask.png",
            "overlay": "_overlay.png",
            "prob": "_prob.png",
            "json": ".json",
        }
        asked = {"mask": True, "overlay": overlay, "prob": prob, "json": json}
        paths = {k: folder / f"{stem}{suffix}" for k, suffix in wanted.items() if asked[k]}
        if overlay and self.image is None:
            raise LVUNetRuntimeError("this prediction has no image to draw an overlay on")
        write_image_outputs(
            paths, OutputGuard(), self.image, self.probability, self.mask, self._meta()
        )
        return paths

    def summary(self) -> str:
        """One line: ``scan.jpg: 12.3% foreground (4210 px), 1 region``."""
        count = len(self.regions)
        return (
            f"{self.name or 'image'}: {self.area_fraction:.1%} foreground ({self.area_px} px), "
            f"{count} region{'' if count == 1 else 's'}"
        )

    def _meta(self) -> dict:
        return {"input": self.name or "image", "model": self.model, "threshold": self.threshold}


@dataclass(frozen=True)
class Prepared:
    """One image ready for the model: resized to the input size, plus what finishing it needs."""

    resized: np.ndarray  # (h, w, 3) uint8 RGB at the model's input size
    size: tuple[int, int]  # the image's own (height, width)
    image: np.ndarray | None = None  # the original RGB image, kept when asked (overlays)


@dataclass(frozen=True)
class SegmenterSpec:
    """Everything that makes a segmenter, as plain values (picklable: Ray ships it to its actors).

    ``model`` is a bundled name or an ``.onnx`` path; the others are :class:`Segmenter`'s options.
    """

    model: str | None = None
    providers: tuple[str, ...] | None = None
    threads: int | None = None
    threshold: float | None = None
    device: str | None = None
    precision: str | None = None
    tta: str = "off"

    def open(self) -> Segmenter:
        """A :class:`Segmenter` as described (checked and probed)."""
        return Segmenter(**{**asdict(self), "providers": self.providers and list(self.providers)})

    def with_(self, **changes) -> SegmenterSpec:
        """A copy with some fields changed (e.g. another model, another thread count)."""
        return replace(self, **changes)


def _dims(node) -> list:
    return list(node.shape) if isinstance(node.shape, list | tuple) else []


def check_graph(session: ort.InferenceSession, contract: ModelContract, source: str) -> None:
    """The contract must describe the graph: input/output names, channel count, spatial size.

    Raises:
        ModelError: naming what the metadata says and what the graph has.
    """
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if contract.input_name not in inputs:
        raise ModelError(
            f"{source}: metadata names input {contract.input_name!r}, the graph has {sorted(inputs)}"
        )
    if contract.output_name not in outputs:
        raise ModelError(
            f"{source}: metadata names output {contract.output_name!r}, the graph has {sorted(outputs)}"
        )
    graph_input, graph_output = inputs[contract.input_name], outputs[contract.output_name]
    if graph_input.type != "tensor(float)":
        raise ModelError(
            f"{source}: input {graph_input.name!r} is {graph_input.type}, expected tensor(float)"
        )
    expected = {"input": [3, contract.input_height, contract.input_width], "output": [1]}
    for kind, node in (("input", graph_input), ("output", graph_output)):
        dims = _dims(node)
        if len(dims) != 4:
            raise ModelError(
                f"{source}: {kind} {node.name!r} has shape {dims}, expected 4 dimensions (NCHW)"
            )
        for want, have in zip(expected[kind], dims[1:], strict=False):
            if isinstance(have, int) and have != want:
                raise ModelError(
                    f"{source}: graph {kind} shape {dims} does not match the metadata "
                    f"(channels and size {expected[kind]}); re-export the model"
                )


class Segmenter:
    """Runs an exported LV-UNet: everything it needs comes from the file's metadata.

    A model is checked when it loads, before any image: the metadata contract is validated, compared with
    the graph's input and output, and one probe run must give finite output of the right shape.
    Work is split in three stages that a pipeline can run on different threads: :meth:`prepare`
    (decode-side: resize), :meth:`run_prepared` (the model) and :meth:`finish` (probability, threshold,
    resize back); :meth:`predict` chains them for one image.

    Args:
        model: bundled model name (default ``polyp``) or path to an ``.onnx`` file.
        providers: execution providers (short or full names); None picks the default order;
            ``["auto"]`` the one ``lvunet-bench --recommend`` recorded for this model and machine.
        threads: intra-op threads; None lets ONNX Runtime choose (one per physical core).
        threshold: overrides the model's stored probability threshold.
        tta: test-time augmentation, ``off``, ``h`` (average with the mirror image) or ``hv`` (also
            flipped upside down and both): the mean of the raw outputs, flipped back.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        threshold: float | None = None,
        device: str | None = None,
        precision: str | None = None,
        tta: str = "off",
    ) -> None:
        if tta not in TTA_VIEWS:
            raise LVUNetRuntimeError(f"tta must be one of {', '.join(TTA_VIEWS)}, not {tta!r}")
        if threads is not None and threads < 1:
            raise LVUNetRuntimeError(f"threads must be at least 1, not {threads}")
        if threshold is not None:
            threshold = check_threshold(threshold)
        self.spec = SegmenterSpec(
            None if model is None else str(model),
            None if providers is None else tuple(providers),
            threads,
            threshold,
            device,
            precision,
            tta,
        )
        self.tta = tta
        self.path = resolve_model(model)
        self.provider_note = ""  # with providers=["auto"]: what was chosen and why (one line)
        if providers is not None and [p.strip().lower() for p in providers] == ["auto"]:
            from lvunet_runtime.recommend import resolve_auto

            providers, chosen_device, chosen_precision, self.provider_note = resolve_auto(self.path)
            device = chosen_device if device is None else device
            precision = chosen_precision if precision is None else precision
        requested = resolve_providers(providers)
        check_accelerator_options(requested, device, precision)
        self.device, self.precision = device, precision
        self.session = open_session(
            self.path, requested, device=device, precision=precision, threads=threads
        )
        self._check_providers(requested, explicit=bool(providers))
        self.adapter = self._adapter()
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(metadata, source=str(self.path))
        check_graph(self.session, self.contract, str(self.path))
        self.threshold = self.contract.threshold if threshold is None else threshold
        self._probe()

    def _check_providers(self, requested: list[str], explicit: bool) -> None:
        """Every provider asked for by name must have started: never a silent fallback."""
        missing = [p for p in requested if p not in self.session.get_providers()]
        if missing and explicit:
            settings = provider_options(missing[0], device=self.device, precision=self.precision)
            raise ProviderError(
                f"ONNX Runtime could not start {missing[0]} with {settings or 'default options'} "
                f"(it fell back to CPU: {', '.join(self.session.get_providers())}); check the device and "
                "precision (OpenVINO on a CPU takes fp32 or bf16, not fp16)"
            )
        self.fallback = missing  # in the default order: reported in the run summary

    def _adapter(self):
        """The WebGPU adapter this session runs on (``webgpu.Adapter``), or None for other providers."""
        if WEBGPU not in self.session.get_providers():
            return None
        from lvunet_runtime.webgpu import choose

        return choose(self.device)[1]

    def node_placement(self) -> dict[str, int]:
        """How many graph nodes each execution provider runs, from one profiled run of the probe.

        A provider that takes the graph as one compiled subgraph (OpenVINO, TensorRT) counts as one node;
        nodes it leaves to the CPU show up under ``CPUExecutionProvider``.
        """
        contract = self.contract
        with tempfile.TemporaryDirectory() as folder:
            session = open_session(
                self.path,
                self.session.get_providers(),
                device=self.device,
                precision=self.precision,
                profile_prefix=str(Path(folder) / "profile"),
            )
            grey = np.full((1, contract.input_height, contract.input_width, 3), 128, np.uint8)
            session.run(
                [contract.output_name], {contract.input_name: to_model_input(grey, contract)}
            )
            events = json.loads(Path(session.end_profiling()).read_text())
        nodes: dict[str, set[str]] = {}
        for event in events:
            provider = event.get("args", {}).get("provider")
            if event.get("cat") == "Node" and provider:
                nodes.setdefault(provider, set()).add(event["name"].removesuffix("_kernel_time"))
        return {provider: len(names) for provider, names in sorted(nodes.items())}

    def _probe(self) -> None:
        """One run on a mid-grey image: the output must be finite and of the input's size."""
        contract = self.contract
        grey = np.full((1, contract.input_height, contract.input_width, 3), 128, np.uint8)
        try:
            output = self.session.run(
                [contract.output_name], {contract.input_name: to_model_input(grey, contract)}
            )[0]
        except Exception as exc:  # onnxruntime's pybind errors: the graph cannot run as described
            raise ModelError(
                f"{self.path}: the probe run failed ({first_line(exc, 200)})"
            ) from None
        expected = (1, 1, contract.input_height, contract.input_width)
        if output.shape != expected:
            raise ModelError(
                f"{self.path}: the probe run gave output shape {list(output.shape)}, expected {list(expected)}"
            )
        if not np.isfinite(output).all():
            raise ModelError(
                f"{self.path}: the probe run gave non-finite output (NaN or inf); the weights are broken"
            )

    @functools.cached_property
    def sha256(self) -> str:
        """The model file's sha256 (hex): what the run record compares and the identity names."""
        from lvunet_runtime.data import file_sha256

        return file_sha256(self.path)

    @property
    def identity(self) -> str:
        """How the model is named wherever it is reported (summaries, per-image JSON, the server's
        answers): its bundled name or file name and the first 12 hex digits of its sha256, never a path
        on this machine's disk (``polyp sha256:c66e266a81f3``)."""
        name = self.path.stem if self.path.parent == MODELS_DIR else self.path.name
        return f"{name} sha256:{self.sha256[:12]}"

    def input_warning(self, image: np.ndarray) -> str | None:
        """Why ``image`` (RGB uint8) clearly does not fit this model, or None: a greyscale image for a
        model trained on colour images or the reverse (:func:`lvunet_runtime.contract.input_warning`)."""
        return input_warning(self.contract, image)

    @property
    def active_providers(self) -> list[str]:
        """Providers ONNX Runtime actually uses for this session, in priority order."""
        return self.session.get_providers()

    def prepare(self, image: np.ndarray, *, keep_image: bool = False) -> Prepared:
        """Stage 1: an RGB uint8 (H, W, 3) image of any size, resized for the model."""
        return Prepared(
            resize_input(image, self.contract), image.shape[:2], image if keep_image else None
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model call on a normalised NCHW float32 batch; returns the output (B, h, w) at model size
        (with test-time augmentation: the mean over the flipped views, each flipped back)."""
        total = self._run(batch)
        views = TTA_VIEWS[self.tta]
        for axes in views:
            flipped = self._run(np.ascontiguousarray(np.flip(batch, axes)))
            total = total + np.flip(flipped, [axis - 1 for axis in axes])
        return total / np.float32(len(views) + 1) if views else total

    def _run(self, batch: np.ndarray) -> np.ndarray:
        contract = self.contract
        if not contract.dynamic_batch and len(batch) != 1:
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        return self.session.run([contract.output_name], {contract.input_name: batch})[0][:, 0]

    def run_prepared(self, prepared: list[Prepared]) -> np.ndarray:
        """Stage 2: normalise a list of prepared images into one batch and run the model."""
        resized = [p.resized for p in prepared]
        batch = resized[0][None] if len(resized) == 1 else np.stack(resized)
        return self.run(to_model_input(batch, self.contract))

    def finish(
        self,
        output: np.ndarray,
        size: tuple[int, int],
        *,
        keep_largest: bool = False,
        threshold: float | None = None,
    ) -> Prediction:
        """Stage 3: one image's model output -> probability and mask at the image's ``size``
        (thresholded at ``threshold``, default the segmenter's)."""
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        prob, mask = postprocess(output, size, threshold, self.contract.output_meaning)
        mask = keep_largest_region(mask) if keep_largest else mask
        return Prediction(prob, mask, threshold=threshold, model=self.identity)

    def predict_batch(self, images: list, *, keep_largest: bool = False) -> list[Prediction]:
        """Images of any sizes (each a path, file bytes, a PIL image or an RGB uint8 array) ->
        predictions at each image's own size."""
        if not images:
            return []
        loaded = [_as_rgb(image) for image in images]
        prepared = [self.prepare(rgb) for rgb, _ in loaded]
        outputs = self.run_prepared(prepared)
        return [
            replace(self.finish(output, p.size, keep_largest=keep_largest), image=rgb, name=name)
            for p, output, (rgb, name) in zip(prepared, outputs, loaded, strict=True)
        ]

    def predict(self, image, *, keep_largest: bool = False) -> Prediction:
        """One image (a path, file bytes, a PIL image or an RGB uint8 (H, W, 3) array) -> its
        :class:`Prediction` at the image's own size."""
        return self.predict_batch([image], keep_largest=keep_largest)[0]

    def __repr__(self) -> str:
        contract = self.contract
        return (
            f"Segmenter({self.identity}, {contract.label}, {contract.input_height}x"
            f"{contract.input_width}, {self.active_providers[0]}, threshold {self.threshold:g})"
        )


def _as_rgb(image) -> tuple[np.ndarray, str]:
    """A path, bytes, a PIL image or an RGB uint8 array -> (RGB uint8 array, the file's name or "")."""
    from lvunet_runtime.image import decode_image, load_image, to_rgb8

    if isinstance(image, str | Path):
        return load_image(image)[0], str(image)  # named as given, as lvunet-infer names it
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), name="the image")[0], ""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        return to_rgb8(image), getattr(image, "filename", "") and Path(image.filename).name
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError(
            f"predict takes a path, file bytes, a PIL image or an RGB uint8 array of shape (H, W, 3), "
            f"not {array.dtype} {array.shape}"
        )
    return array, ""

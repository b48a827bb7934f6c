"""``Segmenter``: one ONNX Runtime session plus the model's own pre- and post-processing contract, and
``SegmenterSpec``, the one description of a segmenter that every route opens (a local run, a Ray actor,
the server's model cache), so every option reaches every route."""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lvunet_runtime.contract import ModelContract, check_threshold, input_warning
from lvunet_runtime.errors import LVUNetRuntimeError, ModelError, ProviderError, first_line
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
    """Result for one image, at the image's own size."""

    probability: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool


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
        return Prediction(prob, keep_largest_region(mask) if keep_largest else mask)

    def predict_batch(
        self, images: list[np.ndarray], *, keep_largest: bool = False
    ) -> list[Prediction]:
        """RGB uint8 images of any sizes -> predictions at each image's own size."""
        if not images:
            return []
        prepared = [self.prepare(image) for image in images]
        outputs = self.run_prepared(prepared)
        return [
            self.finish(output, p.size, keep_largest=keep_largest)
            for p, output in zip(prepared, outputs, strict=True)
        ]

    def predict(self, image: np.ndarray, *, keep_largest: bool = False) -> Prediction:
        """One RGB uint8 (H, W, 3) image of any size -> probability map and mask at (H, W)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ModelError(
                f"predict expects an RGB uint8 array of shape (H, W, 3), not {image.dtype} "
                f"{image.shape}; load files with lvunet_runtime.load_image"
            )
        return self.predict_batch([image], keep_largest=keep_largest)[0]

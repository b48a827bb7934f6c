"""The metadata contract between training, the exported ONNX file and the runtime.

One :class:`ModelContract` describes how an image becomes the model's input and how its output becomes a
mask. ``lvunet-train`` builds its inputs from it and records it in every checkpoint, ``lvunet-export``
writes it into the ONNX file's ``metadata_props``, and the runtime reads it back and validates it before
any image is run, so producer and consumer cannot drift apart.

Versions: ``1`` (the first exports); ``2`` (adds ``training_size``; ``test_metrics`` is measured on the
written file and absent when no test data were at hand); ``3`` (adds ``training_image_sha256``, content
hashes of the images the model was trained and validated on, so ``lvunet-eval`` can say which evaluated
images it has already seen); ``4`` (adds ``training_recipe``, how the weights were trained: epochs,
augmentation, weight averaging, ... as ``lvunet-train`` recorded them). The runtime reads all four.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lvunet_runtime.errors import LVUNetRuntimeError, ModelError

PREFIX = "lvunet."
CONTRACT_VERSION = "6"
READABLE_VERSIONS = ("1", "2", "3", "4", "5", "6")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_MULTIPLE = 128  # LV-UNet halves the input seven times
MAX_INPUT_SIDE = 4096  # documented cap: larger inputs would need gigabytes per image
INTERPOLATIONS = ("area", "linear", "cubic", "nearest")
# How the output comes back to the image's size (version 6 writes it; before, the runtime did the same):
# "linear" = the probabilities (not the mask) resized with OpenCV INTER_LINEAR (cv2.resize: half-pixel
# centres, edge pixels replicated), then foreground where probability > threshold. Thresholding first and
# resizing the mask flips about 0.6% of the pixels of the bundled samples.
OUTPUT_RESIZES = ("linear",)
CHANNEL_ORDERS = ("RGB", "BGR")
OUTPUT_MEANINGS = ("logits", "probability")
PRECISIONS = ("fp32", "fp16", "int8")
# Keys a file may leave out: added after version 1, or written only when measured.
OPTIONAL = {
    "training_size": None,
    "test_metrics": {},
    "training_image_sha256": (),
    "training_recipe": {},
    "input_colour": "",  # version 5
    "output_resize": "",  # version 6 (older files: "linear", what the runtime always did)
}
INPUT_COLOURS = ("", "colour", "grey")  # "": not recorded (contracts before version 5): no guard
GREY_TOLERANCE = 8  # levels between channels a grey image may show (JPEG chroma noise, compression)
GREY_SHARE = (
    0.99  # share of pixels within it that makes an image grey (coloured text and marks aside)
)
HASH_LENGTH = 16  # hex digits kept of each image file's sha256 (64 bits: no accidental collision)

# The one input layout: float32 NCHW, normalised by the runtime. (A uint8 NHWC variant that normalised
# inside the graph was measured no faster end to end, 124-143 vs 126-140 images/s, and was dropped.)
LAYOUT_FLOAT_NCHW = "float32-nchw"


@dataclass(frozen=True)
class ModelContract:
    """Everything needed to feed a model and read its output, plus where the model came from.

    Preprocessing: decode to 8-bit RGB, resize to ``input_height`` x ``input_width`` with
    ``resize_interpolation`` (OpenCV), reorder channels to ``channel_order``, multiply by
    ``pixel_scale``, subtract ``mean``, divide by ``std`` (per channel, in ``channel_order``), NCHW
    float32. Output: ``output_meaning`` is ``logits`` (probability = sigmoid) or ``probability``;
    the probability map resized to the image's size with ``output_resize`` (OpenCV ``INTER_LINEAR``),
    then foreground where probability > ``threshold`` (resize first, threshold second).

    Construction validates every field (types, lengths, ranges), so an invalid contract cannot exist.
    """

    input_name: str = "image"
    output_name: str = "logits"
    input_layout: str = LAYOUT_FLOAT_NCHW
    input_height: int = 256
    input_width: int = 256
    dynamic_batch: bool = True
    channel_order: str = "RGB"
    pixel_scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_interpolation: str = "area"
    output_meaning: str = "logits"
    output_resize: str = "linear"  # version 6: see OUTPUT_RESIZES
    threshold: float = 0.5
    label: str = "foreground"
    precision: str = "fp32"
    model_config: dict[str, Any] = field(default_factory=dict)
    training_dataset: str = ""
    training_size: tuple[int, int] | None = None
    training_image_sha256: tuple[str, ...] = ()
    training_recipe: dict[str, Any] = field(default_factory=dict)
    input_colour: str = ""  # what the model was trained on: colour or grey images (input_warning)
    split: str = ""
    test_metrics: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    source_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            raise ModelError(f"invalid model contract: {problem}")

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the graph takes."""
        return self.input_height, self.input_width

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings): fit for JSON and ``weights_only`` checkpoints."""
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["training_image_sha256"] = list(self.training_image_sha256)
        if self.training_size is not None:
            data["training_size"] = list(self.training_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> ModelContract:
        """The inverse of :meth:`to_dict`; unknown keys and invalid values are a one-line ModelError."""
        if not isinstance(data, dict):
            raise ModelError(
                f"{source}: the model contract must be a mapping, not {type(data).__name__}"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelError(f"{source}: unknown model contract field(s) {unknown}")
        values = dict(data)
        for key in ("mean", "std", "training_size", "training_image_sha256"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs, every key prefixed ``lvunet.``; values as JSON.

        Optional fields that are empty (no measured test metrics, unknown training size) are left out.
        """
        return {
            PREFIX + k: json.dumps(v)
            for k, v in self.to_dict().items()
            if not (k in OPTIONAL and not v)
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelContract:
        """Parse and validate a metadata map (any readable contract version).

        Raises:
            ModelError: the contract is missing, of an unknown version, malformed or invalid; the
                message names the field and what was expected.
        """
        present = {k[len(PREFIX) :]: v for k, v in metadata.items() if k.startswith(PREFIX)}
        if not present:
            raise ModelError(
                f"{source} lacks the LV-UNet metadata contract (no LV-UNet metadata); "
                "export it with lvunet-export"
            )
        values = {}
        for key, text in present.items():
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:
                raise ModelError(
                    f"{source} has malformed LV-UNet metadata: {PREFIX}{key} is not JSON ({text[:40]!r})"
                ) from None
        version = values.get("contract_version")
        if version not in READABLE_VERSIONS:
            raise ModelError(
                f"{source} uses metadata contract {version!r}; this runtime reads versions "
                f"{', '.join(READABLE_VERSIONS)}: upgrade lvunet-runtime or re-export"
            )
        required = {f.name for f in fields(cls)} - set(OPTIONAL)
        missing = sorted(required - set(values))
        if missing:
            raise ModelError(
                f"{source} lacks the LV-UNet metadata contract (missing {missing}); "
                "export it with lvunet-export"
            )
        values = {k: v for k, v in values.items() if k in {f.name for f in fields(cls)}}
        return cls.from_dict(values, source)


def threshold_problem(value: Any) -> str | None:
    """Why ``value`` is not a probability threshold, or None: the one rule (a number strictly between 0
    and 1) that the contract, every command, the Python API and the server apply."""
    if not _is_number(value) or not 0 < value < 1:
        return f"threshold must be a number strictly between 0 and 1, not {value!r}"
    return None


def check_threshold(value: Any) -> float:
    """``value`` as a float threshold; LVUNetRuntimeError (a refusal) with :func:`threshold_problem`'s
    words if it is not one."""
    problem = threshold_problem(value)
    if problem:
        raise LVUNetRuntimeError(problem)
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _first_problem(c: ModelContract) -> str | None:
    """The first field that breaks the contract, described with what was expected; None if valid."""
    for name in ("input_name", "output_name"):
        if not isinstance(getattr(c, name), str) or not getattr(c, name):
            return f"{name} must be a non-empty string, not {getattr(c, name)!r}"
    if c.input_layout != LAYOUT_FLOAT_NCHW:
        return f"input_layout {c.input_layout!r} is not supported; this runtime feeds {LAYOUT_FLOAT_NCHW}"
    for name in ("input_height", "input_width"):
        value = getattr(c, name)
        if not _is_int(value) or not 0 < value <= MAX_INPUT_SIDE or value % SIZE_MULTIPLE:
            return (
                f"{name} must be a positive multiple of {SIZE_MULTIPLE} up to {MAX_INPUT_SIDE}, "
                f"not {value!r}"
            )
    if not isinstance(c.dynamic_batch, bool):
        return f"dynamic_batch must be true or false, not {c.dynamic_batch!r}"
    if c.channel_order not in CHANNEL_ORDERS:
        return f"channel_order must be one of {CHANNEL_ORDERS}, not {c.channel_order!r}"
    if not _is_number(c.pixel_scale) or c.pixel_scale <= 0:
        return f"pixel_scale must be a positive number, not {c.pixel_scale!r}"
    for name in ("mean", "std"):
        value = getattr(c, name)
        if not isinstance(value, tuple) or len(value) != 3 or not all(map(_is_number, value)):
            return f"{name} must be three numbers (one per channel), not {value!r}"
    if min(c.std) <= 0:
        return f"std must be positive in every channel, not {list(c.std)}"
    if c.resize_interpolation not in INTERPOLATIONS:
        return (
            f"resize_interpolation must be one of {INTERPOLATIONS}, not {c.resize_interpolation!r}"
        )
    if c.output_resize not in OUTPUT_RESIZES:
        return f"output_resize must be one of {OUTPUT_RESIZES}, not {c.output_resize!r}"
    if c.output_meaning not in OUTPUT_MEANINGS:
        return f"output_meaning must be one of {OUTPUT_MEANINGS}, not {c.output_meaning!r}"
    if threshold_problem(c.threshold):
        return threshold_problem(c.threshold)
    if c.input_colour not in INPUT_COLOURS:
        return f"input_colour must be one of {INPUT_COLOURS}, not {c.input_colour!r}"
    if c.precision not in PRECISIONS:
        return f"precision must be one of {PRECISIONS}, not {c.precision!r}"
    for name in ("label", "training_dataset", "split", "source_sha256", "contract_version"):
        if not isinstance(getattr(c, name), str):
            return f"{name} must be a string, not {getattr(c, name)!r}"
    for name in ("model_config", "test_metrics", "validation_metrics", "versions"):
        if not isinstance(getattr(c, name), dict):
            return f"{name} must be a mapping, not {type(getattr(c, name)).__name__}"
    size = c.training_size
    if size is not None and (
        not isinstance(size, tuple) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size)
    ):
        return f"training_size must be two positive integers (height, width), not {size!r}"
    hashes = c.training_image_sha256
    if not isinstance(hashes, tuple) or not all(
        isinstance(h, str) and len(h) == HASH_LENGTH and set(h) <= set("0123456789abcdef")
        for h in hashes
    ):
        return f"training_image_sha256 must be a list of {HASH_LENGTH}-digit hex strings"
    recipe = c.training_recipe
    if not isinstance(recipe, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str | bool) or _is_number(v))
        for k, v in recipe.items()
    ):
        return "training_recipe must map names to plain values (strings, numbers, true/false, null)"
    return None


def image_colour(rgb: Any) -> str:
    """``grey`` when the channels of an RGB uint8 image agree within :data:`GREY_TOLERANCE` levels on
    :data:`GREY_SHARE` of its pixels (an ultrasound frame with coloured annotations is still grey), else
    ``colour``. Training records this for its images; the runtime compares each input with it."""
    import numpy as np

    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] < 3 or array.size == 0:
        return "grey"
    step = max(
        1, int((array.shape[0] * array.shape[1] / 65536) ** 0.5)
    )  # a 256x256 sample suffices
    sample = array[::step, ::step, :3].astype(np.int16)
    spread = sample.max(axis=2) - sample.min(axis=2)
    return "grey" if (spread <= GREY_TOLERANCE).mean() >= GREY_SHARE else "colour"


def dataset_colour(colours: list[str]) -> str:
    """A training set's ``input_colour``: ``grey`` or ``colour`` when at least 90% of its images are,
    ``""`` (no guard) for a mixed set."""
    for kind in ("grey", "colour"):
        if colours and colours.count(kind) >= 0.9 * len(colours):
            return kind
    return ""


def input_warning(contract: ModelContract, rgb: Any) -> str | None:
    """Why an image clearly does not fit the model (a greyscale image sent to a model trained on colour
    images, or the reverse), or None; the rule the CLI, the API and the page apply."""
    if not contract.input_colour:
        return None
    seen = image_colour(rgb)
    if seen == contract.input_colour:
        return None
    trained = contract.training_dataset or contract.label
    return (
        f"a {seen} image sent to a model trained on {contract.input_colour} images ({trained}); "
        "its masks may mean nothing: check --model"
    )

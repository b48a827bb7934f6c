"""The metadata contract between an exported ONNX file and the runtime.

The exporter writes these keys into the ONNX file's ``metadata_props``; the runtime reads them back
(``onnxruntime`` exposes them as ``custom_metadata_map``), so preprocessing, threshold and labels are
defined once, here, and producer and consumer cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lvunet_runtime.errors import ModelError

PREFIX = "lvunet."
CONTRACT_VERSION = "1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The one input layout: float32 NCHW, normalised by the runtime. (A uint8 NHWC variant that normalised
# inside the graph was measured no faster end to end, 124-143 vs 126-140 images/s, and was dropped.)
LAYOUT_FLOAT_NCHW = "float32-nchw"


@dataclass(frozen=True)
class ModelContract:
    """Everything the runtime needs to use a model, as stored in its metadata.

    Preprocessing: decode to 8-bit RGB, resize to ``input_height`` x ``input_width`` with
    ``resize_interpolation`` (OpenCV INTER_AREA), multiply by ``pixel_scale``, subtract ``mean``, divide
    by ``std`` (per channel, RGB order), NCHW float32. Output: ``output_meaning`` logits; probability = sigmoid(logit); foreground where
    probability > ``threshold``.
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
    threshold: float = 0.5
    label: str = "foreground"
    precision: str = "fp32"
    model_config: dict[str, Any] = field(default_factory=dict)
    training_dataset: str = ""
    split: str = ""
    test_metrics: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    source_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs, every key prefixed ``lvunet.``; structured values as JSON."""
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelContract:
        """Parse a metadata map; a file without the contract is a ModelError naming what is missing."""
        required = {f.name for f in fields(cls)}
        present = {k[len(PREFIX) :]: v for k, v in metadata.items() if k.startswith(PREFIX)}
        missing = sorted(required - set(present))
        if missing:
            what = "no LV-UNet metadata" if len(missing) == len(required) else f"missing {missing}"
            raise ModelError(
                f"{source} lacks the LV-UNet metadata contract ({what}); export it with lvunet-export"
            )
        try:
            values = {k: json.loads(present[k]) for k in required}
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source} has malformed LV-UNet metadata: {exc}") from None
        if values["contract_version"] != CONTRACT_VERSION:
            raise ModelError(
                f"{source} uses metadata contract {values['contract_version']}; this runtime reads "
                f"{CONTRACT_VERSION}: upgrade lvunet-runtime or re-export"
            )
        if values["input_layout"] != LAYOUT_FLOAT_NCHW:
            raise ModelError(
                f"{source} takes {values['input_layout']!r} input; this runtime feeds {LAYOUT_FLOAT_NCHW}"
            )
        values["mean"] = tuple(values["mean"])
        values["std"] = tuple(values["std"])
        return cls(**values)

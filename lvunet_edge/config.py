"""A training run's settings (:class:`TrainConfig`, stored in every checkpoint; ``lvunet-train``'s
options map 1:1 to its fields, defaults included) and what they become in the model's contract: the
recipe and the preprocessing a run trains with."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from lvunet_runtime.contract import ModelContract, threshold_problem

from lvunet_edge.errors import LVUNetError

if TYPE_CHECKING:
    from lvunet_edge.model import LVUNetConfig

RECIPES = ("basic", "strong", "ultrasound")  # the augmentation recipes of lvunet_edge/augment.py


def default_deep_epochs(epochs: int) -> int:
    """Deep-training epochs when none are given: 90% of the epochs, at most ``epochs - 1``, so at least
    one epoch trains at slope 1 and the best checkpoint can be chosen among fusible epochs."""
    return min(round(0.9 * epochs), epochs - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint (``--resume`` reuses it).

    ``deep_epochs`` None means :func:`default_deep_epochs`. ``threshold`` is the probability above
    which a pixel is foreground: training scores, export checks and the runtime's masks all use it
    (it is written into the model's contract).
    """

    data: str
    out: str = "runs/lvunet"
    image_size: int = 256
    epochs: int = 300
    deep_epochs: int | None = None
    schedule: str = "cosine"
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-6
    seed: int = 42
    device: str = "auto"
    workers: int = 4
    amp: bool = True
    pretrained: str | None = None
    split_file: str | None = None
    val_file: str | None = None
    combination: str = "II"
    act_num: int = 1
    skip: str = "add"
    augment: str = "basic"
    ema: float = 0.0
    deep_supervision: float = 0.0
    multi_scale: bool = False
    distill: str | None = None  # teacher checkpoint (self-distillation, lvunet_edge/distill.py)
    distill_weight: float = 0.5
    distill_sha256: str | None = None  # the teacher file's hash, recorded when the run starts
    threshold: float = 0.5
    channels_last: bool = (
        True  # NHWC activations: the same arithmetic, ~2x faster convolutions on CPU
    )
    compile: bool = False  # torch.compile the training step (measured in benchmarks/train_speed.py)

    def __post_init__(self) -> None:
        if self.augment not in RECIPES:
            raise LVUNetError(f"augment must be one of {', '.join(RECIPES)}, not {self.augment!r}")
        if threshold_problem(self.threshold):
            raise LVUNetError(threshold_problem(self.threshold))
        if not 0.0 <= self.deep_supervision <= 1.0:
            raise LVUNetError(
                "deep_supervision must be 0 (off) up to 1, the weight of the side outputs' loss, "
                f"not {self.deep_supervision}"
            )
        if self.distill is not None and not 0.0 < self.distill_weight <= 1.0:
            raise LVUNetError(
                "distill_weight must be above 0 and at most 1 (the soft targets' share of the loss), "
                f"not {self.distill_weight}"
            )
        if not 0.0 <= self.ema < 1.0:
            raise LVUNetError(
                f"ema must be 0 (off) or a decay below 1 such as 0.999, not {self.ema}"
            )
        for name in ("batch_size", "workers"):
            if getattr(self, name) < 1:
                raise LVUNetError(
                    f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}"
                )
        if not (self.lr > 0 and self.min_lr >= 0):
            raise LVUNetError(
                f"lr must be positive and min-lr non-negative, not {self.lr} / {self.min_lr}"
            )
        if self.image_size < 128 or self.image_size % 128:
            near = max(128, round(self.image_size / 128) * 128)
            raise LVUNetError(
                f"--image-size must be a positive multiple of 128 (128, 256, 384, 512, ...), not "
                f"{self.image_size}; the nearest is {near}"
            )
        if self.image_size == 128 and self.batch_size == 1:
            raise LVUNetError(
                "batch-size 1 at image-size 128 leaves BatchNorm one value per channel at the 1x1 "
                "bottleneck; use --batch-size 2 or more, or --image-size 256"
            )
        if self.epochs < 1:
            raise LVUNetError(f"epochs must be at least 1, not {self.epochs}")
        if self.deep_epochs is not None and not 0 <= self.deep_epochs <= self.epochs - 1:
            raise LVUNetError(
                f"deep_epochs must be 0..epochs-1 ({self.epochs - 1}) so that at least one epoch "
                f"trains at slope 1, not {self.deep_epochs}"
            )

    @property
    def effective_deep_epochs(self) -> int:
        if self.deep_epochs is not None:
            return self.deep_epochs
        return default_deep_epochs(self.epochs)

    @property
    def model_config(self) -> LVUNetConfig:
        from lvunet_edge.model import LVUNetConfig

        return LVUNetConfig(combination=self.combination, act_num=self.act_num, skip=self.skip)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def train_config_defaults() -> dict[str, Any]:
    """Each :class:`TrainConfig` field's default (``lvunet-train``'s option defaults are these)."""
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


RECIPE_KEYS = (
    "epochs", "deep_epochs", "schedule", "batch_size", "lr", "min_lr", "image_size", "augment", "ema",
    "deep_supervision", "pretrained", "combination", "act_num", "skip", "seed", "multi_scale",
    "distill_weight", "distill_sha256",
)  # fmt: skip


DISTILL_KEYS = ("distill_weight", "distill_sha256")  # recorded only for a distilled run


def training_recipe(train_config: dict[str, Any]) -> dict[str, Any]:
    """How a run trained, for the model's metadata (contract v4): the settings that shape the weights.

    ``pretrained`` becomes true/false (a local path says nothing to the model's users); ``deep_epochs``
    the number actually used. Settings an older run did not record are left out.
    """
    recipe = {k: train_config[k] for k in RECIPE_KEYS if k in train_config}
    if not train_config.get("distill"):
        recipe = {k: v for k, v in recipe.items() if k not in DISTILL_KEYS}
    if "pretrained" in recipe:
        recipe["pretrained"] = bool(recipe["pretrained"])
    epochs = recipe.get("epochs")
    if isinstance(epochs, int) and epochs >= 1 and recipe.get("deep_epochs") is None:
        recipe["deep_epochs"] = default_deep_epochs(epochs)
    return recipe


def training_contract(config: TrainConfig) -> ModelContract:
    """The preprocessing contract a run trains with; recorded in every checkpoint, exported as is."""
    size = config.image_size
    return ModelContract(
        input_height=size,
        input_width=size,
        training_size=(size, size),
        threshold=config.threshold,
        training_recipe=training_recipe(asdict(config)),
    )

"""Training and evaluation (paper section V.B): 0.5 BCE + Dice, Adam 1e-3, cosine to 1e-6, batch 8,
deep training with the LeakyReLU slope reaching exactly 1.0 so the final model fuses exactly.

Data are decoded once into memory (``data.load_dataset``) and augmented on the training device with
random 90-degree rotations and flips, so an epoch is bound by the model, not by JPEG decoding. Under
``torchrun`` the same command trains with DistributedDataParallel (rank 0 writes checkpoints and logs).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lvunet_runtime.contract import ModelContract
from lvunet_runtime.data import find_pairs
from lvunet_runtime.metrics import confusion_counts, summarize
from torch import nn
from tqdm import tqdm

from lvunet_edge.augment import RECIPES, augment_batch, multi_scale
from lvunet_edge.checkpoint import (
    atomic_torch_save,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from lvunet_edge.data import ArrayDataset, load_dataset, make_split, to_input, write_split
from lvunet_edge.distill import (
    check_unchanged,
    distill_loss,
    file_sha256,
    load_teacher,
    soft_targets,
)
from lvunet_edge.errors import CheckpointError, DataError, LVUNetError
from lvunet_edge.losses import bce_dice_loss
from lvunet_edge.model import LVUNet, LVUNetConfig, build_model, exact_float32
from lvunet_edge.pretrained import load_mobilenet_v3_weights
from lvunet_edge.reparam import reparameterize_model, set_act_slope, slope_schedule
from lvunet_edge.supervision import SideOutputs

FUSED_TOLERANCE = 0.001  # trained and fused test metrics must agree to this
RUN_FILES = ("split.json", "log.jsonl", "train.log", "best.pt", "metrics.json")  # and last.pt


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint (``--resume`` reuses it).

    ``deep_epochs`` None means 90% of the epochs (at most ``epochs - 1``, so at least one epoch trains
    at slope 1 and the best checkpoint can be chosen among fusible epochs).
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

    def __post_init__(self) -> None:
        if self.augment not in RECIPES:
            raise LVUNetError(f"augment must be one of {', '.join(RECIPES)}, not {self.augment!r}")
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
        if self.image_size < 128:
            raise LVUNetError(
                f"image_size must be a positive multiple of 128, not {self.image_size}"
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
        if self.image_size % 128:
            raise LVUNetError(f"image_size must be a multiple of 128, not {self.image_size}")

    @property
    def effective_deep_epochs(self) -> int:
        if self.deep_epochs is not None:
            return self.deep_epochs
        return min(round(0.9 * self.epochs), self.epochs - 1)

    @property
    def model_config(self) -> LVUNetConfig:
        return LVUNetConfig(combination=self.combination, act_num=self.act_num, skip=self.skip)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a CPU fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LVUNetError("--device cuda was asked for, but this torch has no CUDA device")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise LVUNetError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    contract: ModelContract,
    batch_size: int = 16,
) -> np.ndarray:
    """Logits (N, H, W) float32 for uint8 (N, H, W, 3) RGB images, in eval mode and true float32.

    TF32 is switched off for the call: on Ampere and later GPUs cuDNN convolutions default to TF32,
    which moves logits by up to ~0.1 and would hide (or fake) a fused-vs-trained difference.
    """
    model.eval()
    with exact_float32():
        return _predict(model, images, device, contract, batch_size)


def _predict(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    contract: ModelContract,
    batch_size: int,
) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out.append(model(to_input(batch, contract))[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


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
        recipe["deep_epochs"] = min(round(0.9 * epochs), epochs - 1)  # TrainConfig's default
    return recipe


def training_contract(config: TrainConfig) -> ModelContract:
    """The preprocessing contract a run trains with; recorded in every checkpoint, exported as is."""
    size = config.image_size
    return ModelContract(
        input_height=size,
        input_width=size,
        training_size=(size, size),
        training_recipe=training_recipe(asdict(config)),
    )


@dataclass
class Run:
    """One training run: its settings, data, model and optimiser state, and where it writes."""

    config: TrainConfig
    contract: ModelContract
    device: torch.device
    rank: int
    world: int
    run_dir: Path
    split: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, ArrayDataset] = field(default_factory=dict)
    images: torch.Tensor | None = None  # the training images, resident on the device
    masks: torch.Tensor | None = None
    model: LVUNet | None = None
    net: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    generator: torch.Generator | None = None
    ema: Any = None  # torch.optim.swa_utils.AveragedModel of the model, with --ema
    side: SideOutputs | None = None  # decoder side heads, with --deep-supervision
    soft: torch.Tensor | None = None  # the teacher's soft targets (N, S, S) uint8, with --distill
    start_epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "val_iou": -1.0})

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def kept(self) -> LVUNet:
        """The weights a run validates, tests and exports: the moving average with --ema."""
        return self.model if self.ema is None else self.ema.module

    def log(self, message: str) -> None:
        """Print (above the progress bar) and append to ``train.log``; rank 0 only."""
        if not self.main:
            return
        tqdm.write(message)
        with open(self.run_dir / "train.log", "a") as handle:
            handle.write(message + "\n")

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.sets["train"].ids) // (self.config.batch_size * self.world))

    def slope(self, step: int) -> float:
        """The deep-training slope at global ``step``."""
        deep_steps = self.config.effective_deep_epochs * self.steps_per_epoch
        return slope_schedule(step, deep_steps, self.config.schedule)

    def checkpoint_info(self, epoch: int, val: dict) -> dict[str, Any]:
        """What every checkpoint of this run records beside the weights, the contract among it."""
        return {
            "train_config": asdict(self.config),
            "contract": self.contract.to_dict(),
            "split": self.split,
            "epoch": epoch,
            "metrics": {"val": val},
        }


def train(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train, pick the best fusible epoch, evaluate trained and fused forms on the test split.

    ``stop_after`` ends this invocation after that many epochs (a long run split across sessions);
    ``resume`` continues it exactly: model, optimizer, scheduler, slope, random state, epoch.

    Writes into ``config.out``: ``split.json``, ``log.jsonl``, ``train.log``, ``last.pt``, ``best.pt``,
    ``metrics.json``. Returns the metrics dict (rank 0; other ranks return an empty dict).
    """
    state = read_resume_state(resume) if resume is not None else None
    if state is not None:
        config = replace(TrainConfig.from_dict(state["train_config"]), out=str(resume))
    run = start_run(config, state)
    load_data(run, state)
    build_training(run, state)
    end_epoch = (
        config.epochs if stop_after is None else min(config.epochs, run.start_epoch + stop_after)
    )
    for epoch in range(run.start_epoch, end_epoch):
        started = time.perf_counter()
        stats = train_epoch(run, epoch, progress)
        if run.main:
            end_of_epoch(run, epoch, stats, started)
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if not run.main:
        return {}
    if end_epoch < config.epochs:
        run.log(f"stopped after epoch {end_epoch}; continue with --resume {run.run_dir}")
        return {}
    return final_test(run)


def read_resume_state(resume: str | Path) -> dict[str, Any]:
    """The ``last.pt`` of a run to continue, checked to be a resumable training state.

    Raises:
        CheckpointError: no run there, or ``last.pt`` is not a run's last state (e.g. a copy of
            ``best.pt``, which has no optimiser state).
    """
    last = Path(resume) / "last.pt"
    if not last.is_file():
        raise CheckpointError(f"{resume} holds no run to resume (no last.pt)")
    state = read_checkpoint(last)
    needed = (
        "train_config",
        "split",
        "epoch",
        "best",
        "optimizer",
        "scheduler",
        "generator",
        "torch_rng",
    )
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(
            f"{last} is not a resumable training state (it lacks {missing}); it may be a copy of best.pt"
        )
    return state


def start_run(config: TrainConfig, state: dict[str, Any] | None) -> Run:
    """Device, distributed group, run folder and the contract (the recorded one when resuming)."""
    rank, local_rank, world = (
        int(os.environ.get(k, d))
        for k, d in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"))
    )
    device = resolve_device(config.device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise LVUNetError(f"--out {run_dir} is a file, not a folder; choose a folder for the run")
    if state is None and (run_dir / "last.pt").exists():
        raise LVUNetError(
            f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
            "or choose another --out"
        )
    taken = [name for name in RUN_FILES if state is None and (run_dir / name).exists()]
    if taken:
        raise LVUNetError(
            f"{run_dir} already holds {', '.join(taken)} (not written by this run); choose another --out"
        )
    contract = training_contract(config)
    if state is not None and "contract" in state:
        contract = ModelContract.from_dict(state["contract"], source=f"{run_dir}/last.pt")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    return Run(config, contract, device, rank, world, run_dir)


def load_data(run: Run, state: dict[str, Any] | None) -> None:
    """Pair, decode and split the data once (the split recorded by the run when resuming)."""
    config = run.config
    dataset = load_dataset(find_pairs(config.data), run.contract, config.workers)
    split = (
        state["split"]
        if state
        else make_split(dataset.ids, config.seed, config.split_file, config.val_file)
    )
    run.split = split
    try:
        run.sets = {k: dataset.subset(split[k]) for k in ("train", "val", "test")}
    except DataError as exc:
        if state is None:
            raise
        raise DataError(
            f"the data in {config.data} no longer matches the run being resumed: {exc}"
        ) from None
    if not run.sets["train"].ids:
        raise LVUNetError("the training split is empty; add data or change the split")
    if (
        state is None
    ):  # the contract names the images the model has seen (lvunet-eval warns about them)
        seen = {dataset.hashes[i] for k in ("train", "val") for i in split[k]}
        run.contract = replace(run.contract, training_image_sha256=tuple(sorted(seen)))
    train_set = run.sets["train"]
    run.images = torch.from_numpy(train_set.images).to(run.device)  # (N, S, S, 3) uint8, resident
    run.masks = torch.from_numpy(train_set.masks).to(run.device)  # (N, S, S) uint8
    if run.main:
        write_split(run.run_dir / "split.json", split)
        rules = ", ".join(
            f"{n} mask(s) empty" if r == "empty" else f"{n} mask(s) binarised at {r}"
            for r, n in sorted(dataset.mask_rules.items())
        )
        sizes = "/".join(str(len(run.sets[k].ids)) for k in ("train", "val", "test"))
        run.log(
            f"data: {len(dataset.ids)} pairs from {config.data} ({rules}); split {sizes} "
            f"({split['source']}); inputs {run.contract.input_height}x{run.contract.input_width}, "
            f"{run.contract.resize_interpolation} resize, mean {list(run.contract.mean)}, "
            f"std {list(run.contract.std)}"
        )
    if config.distill:
        attach_teacher(run, {dataset.hashes[i] for i in split["test"] if i in dataset.hashes}, state)


def attach_teacher(run: Run, test_hashes: set[str], state: dict[str, Any] | None) -> None:
    """With --distill: check the teacher, record its hash (in the recipe too) and make the soft targets."""
    config = run.config
    if state is not None:
        check_unchanged(config.distill, config.distill_sha256)
    teacher = load_teacher(config.distill, run.contract, run.device, test_hashes)
    if state is None:
        run.config = replace(config, distill_sha256=file_sha256(config.distill))
        recipe = training_recipe(asdict(run.config))
        run.contract = replace(run.contract, training_recipe=recipe)
    run.soft = soft_targets(teacher, run.images, run.contract)
    run.log(
        f"distilling from {config.distill} (weight {config.distill_weight}): soft targets of "
        f"{len(run.soft)} training images, the teacher's mean logit over 4 flipped views"
    )


def build_training(run: Run, state: dict[str, Any] | None) -> None:
    """Model (pretrained encoder if asked), optimiser, schedule and random state; restored on resume."""
    config = run.config
    model = build_model(config.model_config)
    if state is None and config.pretrained:
        load_mobilenet_v3_weights(model, config.pretrained)
        run.log(f"encoder: ImageNet weights from {config.pretrained}")
    elif state is None:
        run.log("encoder: no --pretrained weights, training from scratch")
    model.to(run.device)
    run.model = model
    if config.ema:  # averaged copy made before the side heads hook into the model (it needs none)
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        run.ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True
        )
    parameters = list(model.parameters())
    if config.deep_supervision:
        if run.world > 1:
            raise LVUNetError(
                "--deep-supervision is not supported with several processes (DDP) yet"
            )
        run.side = SideOutputs(model).to(run.device)
        parameters += list(run.side.parameters())
    run.optimizer = torch.optim.Adam(parameters, lr=config.lr)
    run.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        run.optimizer, T_max=config.epochs, eta_min=config.min_lr
    )
    run.generator = torch.Generator().manual_seed(config.seed)
    if state is not None:
        restore_state(run, state)
    run.net = wrap_distributed(run)


def restore_state(run: Run, state: dict[str, Any]) -> None:
    """Continue exactly where ``last.pt`` stopped: weights, optimiser, schedule, random state, epoch."""
    try:
        run.model.load_state_dict(state["state_dict"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if run.ema is not None:
            run.ema.load_state_dict(state["ema"])
        if run.side is not None:
            run.side.load_state_dict(state["side"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{run.run_dir}/last.pt does not match its run's model or optimiser: {str(exc).splitlines()[0]}"
        ) from None
    run.start_epoch, run.best = state["epoch"] + 1, state["best"]
    run.log(f"resuming {run.run_dir} at epoch {run.start_epoch} of {run.config.epochs}")


def wrap_distributed(run: Run) -> nn.Module:
    """DDP (with SyncBatchNorm on CUDA) when several processes train; the model itself otherwise."""
    if run.world == 1:
        return run.model
    net: nn.Module = run.model
    if run.device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
    else:
        run.log(
            "DDP on CPU: SyncBatchNorm needs CUDA, so each process normalises its own "
            "batch; DDP broadcasts rank 0's BatchNorm statistics every step"
        )
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[run.device.index] if run.device.type == "cuda" else None
    )


def train_epoch(run: Run, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over this rank's share of the training set, the slope rising per step."""
    config, train_set = run.config, run.sets["train"]
    images, masks = run.images, run.masks
    use_amp = config.amp and run.device.type == "cuda"
    run.net.train()
    order = torch.randperm(len(train_set.ids), generator=run.generator)[run.rank :: run.world]
    losses, tp_fp_fn = [], torch.zeros(3, device=run.device)
    bar = tqdm(
        range(run.steps_per_epoch),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (progress and run.main),
        leave=False,
    )
    for step in bar:
        slope = run.slope(epoch * run.steps_per_epoch + step)
        set_act_slope(run.model, slope)
        idx = order[step * config.batch_size : (step + 1) * config.batch_size].to(run.device)
        targets = masks[idx, None].float()
        if run.soft is not None:  # the soft targets move with the mask through augmentation
            targets = torch.cat([targets, run.soft[idx, None].float() / 255.0], 1)
        x, targets = augment_batch(
            config.augment, images[idx], targets, run.contract, run.generator
        )
        if config.multi_scale:
            x, targets = multi_scale(x, targets, config.image_size, run.generator)
        y = targets[:, :1]
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = run.net(x)
            side = run.side.logits(tuple(x.shape[-2:])) if run.side is not None else []
        loss = batch_loss(run, logits, side, targets)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
            set_act_slope(run.ema.module, slope)  # the slope is a buffer: never averaged
        with torch.no_grad():
            pred, target = logits.detach() > 0, y > 0.5
            tp_fp_fn += torch.stack(
                [(pred & target).sum(), (pred & ~target).sum(), (~pred & target).sum()]
            ).float()
        losses.append(loss.detach())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1].item():.4f}", slope=f"{slope:.3f}")
    run.scheduler.step()
    tp, fp, fn = tp_fp_fn.tolist()
    return {"train_loss": float(torch.stack(losses).mean()), "train_iou": tp / max(tp + fp + fn, 1)}


def batch_loss(
    run: Run, logits: torch.Tensor, side: list[torch.Tensor], targets: torch.Tensor
) -> torch.Tensor:
    """BCE + Dice against the mask (channel 0 of ``targets``), plus the side outputs' mean loss with
    --deep-supervision, mixed with BCE against the teacher's soft targets (channel 1) with --distill."""
    config, y = run.config, targets[:, :1]
    loss = bce_dice_loss(logits, y)
    if side:
        loss = (
            loss + config.deep_supervision * torch.stack([bce_dice_loss(s, y) for s in side]).mean()
        )
    if run.soft is not None:
        loss = distill_loss(loss, logits, targets[:, 1:], config.distill_weight)
    return loss


def end_of_epoch(run: Run, epoch: int, stats: dict[str, float], started: float) -> None:
    """Validate, log, and checkpoint: ``last.pt`` always, ``best.pt`` for the best fusible epoch."""
    train_time = time.perf_counter() - started
    val_set = run.sets["val"]
    val = (
        _evaluate_counts(run.kept, val_set, run.device, run.contract)
        if val_set.ids
        else {"iou": float("nan")}
    )
    end_slope = run.slope((epoch + 1) * run.steps_per_epoch - 1)
    record = {
        "epoch": epoch,
        "slope": end_slope,
        "lr": run.optimizer.param_groups[0]["lr"],
        **stats,
        "val_iou": val["iou"],
        "val_dice": val.get("dice", float("nan")),
        "train_time_s": train_time,
        "epoch_time_s": time.perf_counter() - started,
    }
    with open(run.run_dir / "log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    fusible = end_slope == 1.0 and run.slope(epoch * run.steps_per_epoch) == 1.0
    val_score = val["iou"] if val_set.ids else -stats["train_loss"]
    info = run.checkpoint_info(epoch, val)
    if fusible and val_score > run.best["val_iou"]:
        run.best = {"epoch": epoch, "val_iou": val_score}
        save_checkpoint(run.run_dir / "best.pt", run.kept, **info, best=run.best)
    save_checkpoint(
        run.run_dir / "last.pt",
        run.model,
        **info,
        best=run.best,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        generator=run.generator.get_state(),
        torch_rng=torch.get_rng_state(),
        **({} if run.ema is None else {"ema": run.ema.state_dict()}),
        **({} if run.side is None else {"side": run.side.state_dict()}),
    )
    run.log(
        f"epoch {epoch + 1}/{run.config.epochs} slope {end_slope:.4f} loss "
        f"{stats['train_loss']:.4f} train IoU {stats['train_iou']:.4f} val IoU {val['iou']:.4f} "
        f"({record['epoch_time_s']:.1f} s)"
    )


def final_test(run: Run) -> dict:
    """The best fusible checkpoint on the test split, trained and fused; ``metrics.json`` and best.pt."""
    test_set = run.sets["test"]
    if not (run.run_dir / "best.pt").is_file():
        raise LVUNetError(
            f"no epoch trained fully at slope 1, so {run.run_dir} has no best.pt to test"
        )
    metrics = evaluate_trained_and_fused(
        run.run_dir / "best.pt", test_set, run.device, run.contract
    )
    metrics["best_epoch"] = run.best["epoch"]
    metrics["epochs"] = run.config.epochs
    metrics["deep_epochs"] = run.config.effective_deep_epochs
    (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    record_test_metrics(run.run_dir / "best.pt", metrics)
    run.log(
        f"test ({len(test_set.ids)} images): trained IoU {metrics['trained']['iou']:.4f} "
        f"Dice {metrics['trained']['dice']:.4f}; fused IoU {metrics['fused']['iou']:.4f} "
        f"Dice {metrics['fused']['dice']:.4f}; max |logit diff| {metrics['max_abs_logit_diff']:.2e}"
    )
    return metrics


def record_test_metrics(checkpoint: Path, metrics: dict) -> None:
    """Store the test metrics in the checkpoint itself, so the export can carry them into the ONNX file."""
    payload = read_checkpoint(checkpoint)
    payload["test_metrics"] = {
        "trained": metrics["trained"],
        "fused": metrics["fused"],
        "max_abs_logit_diff": metrics["max_abs_logit_diff"],
        "split_size": metrics["split_size"],
    }
    atomic_torch_save(payload, checkpoint)


def _evaluate_counts(
    model: nn.Module, dataset: ArrayDataset, device: torch.device, contract: ModelContract
) -> dict[str, float]:
    logits = predict_logits(model, dataset.images, device, contract)
    return summarize(confusion_counts(logits > 0, dataset.masks))


def evaluate_trained_and_fused(
    checkpoint: str | Path, dataset: ArrayDataset, device: torch.device, contract: ModelContract
) -> dict:
    """Evaluate a training checkpoint as trained and after fusion on the same images.

    Raises:
        LVUNetError: the fused model's metrics differ from the trained model's by more than 0.001.
    """
    model, info = load_checkpoint(checkpoint, map_location=device)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "split_size": len(dataset.ids)}
    trained_logits = predict_logits(model, dataset.images, device, contract)
    fused = reparameterize_model(model)
    fused_logits = predict_logits(fused, dataset.images, device, contract)
    result["trained"] = summarize(confusion_counts(trained_logits > 0, dataset.masks))
    result["fused"] = summarize(confusion_counts(fused_logits > 0, dataset.masks))
    diff = np.abs(trained_logits - fused_logits)
    result["max_abs_logit_diff"] = float(diff.max()) if diff.size else 0.0
    result["pixel_agreement"] = float(((trained_logits > 0) == (fused_logits > 0)).mean())
    gap = max(abs(result["trained"][k] - result["fused"][k]) for k in ("iou", "dice"))
    if gap > FUSED_TOLERANCE:
        raise LVUNetError(
            f"fused and trained test metrics differ by {gap:.4f} (> {FUSED_TOLERANCE})"
        )
    return result

"""The training loop (paper section V.B): 0.5 BCE + Dice, Adam 1e-3, cosine to 1e-6, batch 8,
deep training with the LeakyReLU slope reaching exactly 1.0 so the final model fuses exactly.

Data are decoded once into memory (``dataset.load_dataset``) and augmented on the training device with
random 90-degree rotations and flips, so an epoch is bound by the model, not by JPEG decoding. Under
``torchrun`` the same command trains with DistributedDataParallel (rank 0 writes checkpoints and logs).
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lvunet_runtime.contract import ModelContract, dataset_colour, image_colour
from lvunet_runtime.data import (
    check_mask_rules,
    describe_mask_rules,
    find_pairs,
    pair_warnings,
)
from lvunet_runtime.errors import first_line
from lvunet_runtime.lock import remove_stale_temporaries
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from lvunet_edge.augment import augment_batch, multi_scale
from lvunet_edge.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from lvunet_edge.config import TrainConfig, training_contract, training_recipe
from lvunet_edge.dataset import ArrayDataset, load_dataset, make_split, write_split
from lvunet_edge.distill import (
    check_unchanged,
    distill_loss,
    file_sha256,
    load_teacher,
    soft_targets,
)
from lvunet_edge.errors import CheckpointError, DataError, LVUNetError
from lvunet_edge.evaluation import (
    evaluate_counts,
    evaluate_trained_and_fused,
    masks_of,
    predict_logits,
    record_test_metrics,
)
from lvunet_edge.losses import bce_dice_loss
from lvunet_edge.model import LVUNet, build_model
from lvunet_edge.pretrained import load_mobilenet_v3_weights
from lvunet_edge.reparam import set_act_slope, slope_schedule
from lvunet_edge.report import integrity_report, results_png
from lvunet_edge.supervision import SideOutputs

RUN_FILES = ("split.json", "log.jsonl", "train.log", "best.pt", "metrics.json")  # and last.pt


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a CPU fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LVUNetError("--device cuda was asked for, but this torch has no CUDA device")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise LVUNetError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


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
    data_warnings: list[str] = field(default_factory=list)  # lvunet_runtime.data.pair_warnings
    images: torch.Tensor | None = None  # the training images, resident on the device
    masks: torch.Tensor | None = None
    model: LVUNet | None = None
    net: nn.Module | None = None
    step_net: Any = None  # what a training step calls: net, or torch.compile(net) with --compile
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
    config: TrainConfig | None,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train, pick the best fusible epoch, evaluate trained and fused forms on the test split.

    ``stop_after`` ends this invocation after that many epochs (a long run split across sessions);
    ``resume`` continues it exactly: model, optimizer, scheduler, slope, random state, epoch (its
    stored config is used; ``config`` may be None).

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
    run = Run(config, contract, device, rank, world, run_dir)
    if rank == 0 and state is not None and remove_stale_temporaries(run_dir):
        run.log("note: removed a checkpoint left half-written by the run that stopped")
    return run


def load_data(run: Run, state: dict[str, Any] | None) -> None:
    """Pair, decode and split the data once (the split recorded by the run when resuming)."""
    config = run.config
    pairs = find_pairs(config.data)
    run.data_warnings = pair_warnings(pairs)
    dataset = load_dataset(pairs, run.contract, config.workers)
    check_mask_rules(dataset.mask_rules, Path(config.data) / "masks")  # never train on nothing
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
        colour = dataset_colour([image_colour(image) for image in run.sets["train"].images])
        run.contract = replace(
            run.contract, training_image_sha256=tuple(sorted(seen)), input_colour=colour
        )  # and whether they are colour or grey (the runtime warns about inputs that are not)
    train_set = run.sets["train"]
    run.images = torch.from_numpy(train_set.images).to(run.device)  # (N, S, S, 3) uint8, resident
    run.masks = torch.from_numpy(train_set.masks).to(run.device)  # (N, S, S) uint8
    if run.main:
        for line in integrity_report(pairs, dataset, run.data_warnings):  # before the first step
            run.log(line)
        write_split(run.run_dir / "split.json", split)
        rules = describe_mask_rules(dataset.mask_rules)
        sizes = "/".join(str(len(run.sets[k].ids)) for k in ("train", "val", "test"))
        run.log(
            f"data: {len(dataset.ids)} pairs from {config.data} ({rules}); split {sizes} "
            f"({split['source']}); inputs {run.contract.input_height}x{run.contract.input_width}, "
            f"{run.contract.resize_interpolation} resize, mean {list(run.contract.mean)}, "
            f"std {list(run.contract.std)}"
        )
    if config.distill:
        attach_teacher(
            run, {dataset.hashes[i] for i in split["test"] if i in dataset.hashes}, state
        )


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
    if (
        config.channels_last
    ):  # NHWC: the convolutions' fast layout (the same arithmetic, rounded apart)
        model.to(memory_format=torch.channels_last)
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
    run.optimizer = torch.optim.Adam(parameters, lr=config.lr, fused=True)  # one kernel per step
    run.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        run.optimizer, T_max=config.epochs, eta_min=config.min_lr
    )
    run.generator = torch.Generator().manual_seed(config.seed)
    if uses_amp(run) and run.device.type == "cpu":
        run.log(
            "bfloat16 autocast on this CPU (it has bfloat16 instructions; --no-amp for float32)"
        )
    if state is not None:
        restore_state(run, state)
    run.net = wrap_distributed(run)
    run.step_net = compiled(run) if config.compile else run.net


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
            f"{run.run_dir}/last.pt does not match its run's model or optimiser: {first_line(exc)}"
        ) from None
    run.start_epoch, run.best = state["epoch"] + 1, state["best"]
    run.log(f"resuming {run.run_dir} at epoch {run.start_epoch} of {run.config.epochs}")


def compiled(run: Run) -> Any:
    """``torch.compile`` of the training net (its first step compiles: minutes on a CPU, said here)."""
    run.log("compiling the training step with torch.compile (the first step takes longer)")
    return CompiledOrEager(run)


class CompiledOrEager:
    """``torch.compile(net)``, falling back to ``net`` itself, with one line in the log, when compiling
    fails (no C++ compiler, an unsupported platform or operator): the run trains on, eagerly."""

    def __init__(self, run: Run) -> None:
        self.run, self.compiled, self.failed = run, torch.compile(run.net), False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            try:
                return self.compiled(x)
            except Exception as exc:  # noqa: BLE001 - any compiler fault: train eagerly and say so
                self.failed = True
                self.run.log(f"note: torch.compile failed ({first_line(exc)}); training without it")
        return self.run.net(x)


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


@dataclass
class Batch:
    """One step's augmented input, targets (mask in channel 0) and deep-training slope."""

    x: torch.Tensor
    targets: torch.Tensor
    slope: float


class Tally:
    """A run's training loss and pixel counts over an epoch, kept on the device: no host sync per step."""

    def __init__(self, device: torch.device) -> None:
        self.losses: list[torch.Tensor] = []
        self.tp_fp_fn = torch.zeros(3, device=device)

    @torch.no_grad()
    def add(self, run: Run, logits: torch.Tensor, loss: torch.Tensor, y: torch.Tensor) -> None:
        pred, target = masks_of(logits.detach(), run.contract), y > 0.5
        self.tp_fp_fn += torch.stack(
            [(pred & target).sum(), (pred & ~target).sum(), (~pred & target).sum()]
        ).float()
        self.losses.append(loss.detach())

    def stats(self) -> dict[str, float]:
        tp, fp, fn = self.tp_fp_fn.tolist()  # the epoch's one host sync
        loss = float(torch.stack(self.losses).mean())
        return {"train_loss": loss, "train_iou": tp / max(tp + fp + fn, 1)}


def epoch_order(run: Run) -> torch.Tensor:
    """This rank's share of the training set in the epoch's random order (drawn from the run's generator)."""
    return torch.randperm(len(run.sets["train"].ids), generator=run.generator)[
        run.rank :: run.world
    ]


def next_batch(run: Run, order: torch.Tensor, epoch: int, step: int) -> Batch:
    """Set the step's slope and draw its augmented batch, every random number from the run's generator."""
    config = run.config
    slope = run.slope(epoch * run.steps_per_epoch + step)
    set_act_slope(run.model, slope)
    with record_function("augment"):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size].to(run.device)
        targets = run.masks[idx, None].float()
        if run.soft is not None:  # the soft targets move with the mask through augmentation
            targets = torch.cat([targets, run.soft[idx, None].float() / 255.0], 1)
        x, targets = augment_batch(
            config.augment, run.images[idx], targets, run.contract, run.generator
        )
        if config.multi_scale:
            x, targets = multi_scale(x, targets, config.image_size, run.generator)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    return Batch(x, targets, slope)


@functools.cache
def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX (Linux's CPU flags): where bfloat16 convolutions beat float32 on a CPU
    (measured 1.2x per training step on the 2-core EPYC VM); elsewhere bfloat16 is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_amp(run: Run) -> bool:
    """``--amp``: bfloat16 autocast on CUDA, and on CPUs with bfloat16 instructions."""
    device = run.device.type
    return run.config.amp and (device == "cuda" or (device == "cpu" and cpu_has_bf16()))


def autocast(run: Run) -> Any:
    """The training forward's autocast context (:func:`uses_amp`); a no-op context otherwise."""
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=uses_amp(run))


def optimizer_step(run: Run, batch: Batch) -> None:
    """The update after the gradients are in: Adam, then the moving average with --ema."""
    with record_function("optimizer"):
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
            set_act_slope(run.ema.module, batch.slope)  # the slope is a buffer: never averaged


def train_epoch(run: Run, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over this rank's share of the training set, the slope rising per step."""
    run.net.train()
    order, tally = epoch_order(run), Tally(run.device)
    bar = tqdm(
        range(run.steps_per_epoch),
        desc=f"epoch {epoch + 1}/{run.config.epochs}",
        disable=not (progress and run.main),
        leave=False,
    )
    for step in bar:
        batch = next_batch(run, order, epoch, step)
        train_step(run, batch, tally)
        if progress and step % 10 == 0:  # a host sync: only when a bar shows it
            bar.set_postfix(loss=f"{tally.losses[-1].item():.4f}", slope=f"{batch.slope:.3f}")
    run.scheduler.step()
    return tally.stats()


def train_step(run: Run, batch: Batch, tally: Tally) -> None:
    """Forward, loss, backward and update of one batch (no host sync)."""
    with record_function("forward"), autocast(run):
        logits = run.step_net(batch.x)
        side = run.side.logits(tuple(batch.x.shape[-2:])) if run.side is not None else []
    loss = batch_loss(run, logits, side, batch.targets)
    run.optimizer.zero_grad(set_to_none=True)
    with record_function("backward"):
        loss.backward()
    optimizer_step(run, batch)
    tally.add(run, logits, loss, batch.targets[:, :1])


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
    with record_function("validation"):
        val = (
            evaluate_counts(run.kept, val_set, run.device, run.contract)
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
    with record_function("checkpoint"):
        save_checkpoints(run, info, fusible and val_score > run.best["val_iou"], epoch, val_score)
    run.log(
        f"epoch {epoch + 1}/{run.config.epochs} slope {end_slope:.4f} loss "
        f"{stats['train_loss']:.4f} train IoU {stats['train_iou']:.4f} val IoU {val['iou']:.4f} "
        f"({record['epoch_time_s']:.1f} s)"
    )


def save_checkpoints(run: Run, info: dict, better: bool, epoch: int, val_score: float) -> None:
    """``best.pt`` when this epoch is the best fusible one so far; ``last.pt`` always."""
    if better:
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


def draw_results(run: Run, count: int = 4) -> Path:
    """``results.png``: the run's curves and ``count`` validation images (evenly spaced ids) with the
    best checkpoint's predictions."""
    val = run.sets["val"]
    rows = np.linspace(0, len(val.ids) - 1, num=min(count, len(val.ids)), dtype=int)
    model, _ = load_checkpoint(run.run_dir / "best.pt", map_location=run.device)
    images = val.images[rows]
    masks = masks_of(predict_logits(model, images, run.device, run.contract), run.contract)
    mosaic = [(images[i], val.masks[r], masks[i]) for i, r in enumerate(rows)]
    return results_png(run.run_dir, mosaic)


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
    metrics["mask_rules"] = run.sets["train"].mask_rules  # how the dataset's masks were read
    metrics["data_warnings"] = run.data_warnings  # said before the first step, kept with the result
    metrics["deep_epochs"] = run.config.effective_deep_epochs
    (run.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    record_test_metrics(run.run_dir / "best.pt", metrics)
    run.log(
        f"test ({len(test_set.ids)} images): trained IoU {metrics['trained']['iou']:.4f} "
        f"Dice {metrics['trained']['dice']:.4f}; fused IoU {metrics['fused']['iou']:.4f} "
        f"Dice {metrics['fused']['dice']:.4f}; max |logit diff| {metrics['max_abs_logit_diff']:.2e}"
    )
    try:
        run.log(f"results: {draw_results(run)} (curves and validation predictions)")
    except ImportError as exc:  # a bare machine (a lent GPU) may lack matplotlib: the run is done
        run.log(f"note: results.png not drawn ({first_line(exc)}); the metrics are in metrics.json")
    if metrics["trained"]["precision"] is None:  # numbers that mean nothing: say so
        run.log(
            f"warning: the trained model predicts no foreground on any of the {len(test_set.ids)} "
            "test images: train longer, check the masks (metrics.json mask_rules) or the threshold"
        )
    return metrics

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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from lvunet_edge.checkpoint import (
    atomic_torch_save,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from lvunet_edge.data import find_pairs, load_dataset, make_split, write_split
from lvunet_edge.errors import LVUNetError
from lvunet_edge.losses import bce_dice_loss
from lvunet_edge.metrics import confusion_counts, summarize
from lvunet_edge.model import LVUNetConfig, build_model
from lvunet_edge.pretrained import load_mobilenet_v3_weights
from lvunet_edge.reparam import reparameterize_model, set_act_slope, slope_schedule

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FUSED_TOLERANCE = 0.001  # trained and fused test metrics must agree to this


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

    def __post_init__(self) -> None:
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


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> float (B, 3, H, W), scaled to [0, 1] and ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def augment(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 90-degree rotation and horizontal/vertical flips per sample (NCHW / N1HW tensors)."""
    params = torch.randint(0, 4, (len(images), 3), generator=generator)
    out_images, out_masks = [], []
    for (k, hflip, vflip), image, mask in zip(params.tolist(), images, masks, strict=False):
        dims = [d for d, flip in ((2, hflip % 2), (1, vflip % 2)) if flip]
        image, mask = torch.rot90(image, k, (1, 2)), torch.rot90(mask, k, (1, 2))
        if dims:
            image, mask = torch.flip(image, dims), torch.flip(mask, dims)
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 16
) -> np.ndarray:
    """Logits (N, H, W) float32 for uint8 (N, H, W, 3) RGB images, in eval mode and true float32.

    TF32 is switched off for the call: on Ampere and later GPUs cuDNN convolutions default to TF32,
    which moves logits by up to ~0.1 and would hide (or fake) a fused-vs-trained difference.
    """
    model.eval()
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _predict(model, images, device, batch_size)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _predict(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int
) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        out.append(model(to_input(batch))[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


def _log(run_dir: Path | None, message: str) -> None:
    tqdm.write(message)
    if run_dir is not None:
        with open(run_dir / "train.log", "a") as handle:
            handle.write(message + "\n")


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


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
    state = None
    if resume is not None:
        last = Path(resume) / "last.pt"
        state = read_checkpoint(last)
        config = replace(TrainConfig.from_dict(state["train_config"]), out=str(resume))
    rank, local_rank, world = _distributed()
    device = resolve_device(config.device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    main = rank == 0
    run_dir = Path(config.out)
    if state is None and (run_dir / "last.pt").exists():
        raise LVUNetError(
            f"{run_dir} already holds a run (last.pt); continue it with --resume {run_dir} "
            "or choose another --out"
        )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = run_dir if main else None
    torch.manual_seed(config.seed)

    pairs = find_pairs(config.data)
    dataset = load_dataset(pairs, config.image_size, config.workers)
    split = (
        state["split"]
        if state
        else make_split(dataset.ids, config.seed, config.split_file, config.val_file)
    )
    train_set, val_set, test_set = (dataset.subset(split[k]) for k in ("train", "val", "test"))
    if not len(train_set.ids):
        raise LVUNetError("the training split is empty; add data or change the split")
    if main:
        write_split(run_dir / "split.json", split)
        rules = ", ".join(f"{n} mask(s) binarised at {r}" for r, n in dataset.mask_rules.items())
        _log(
            log_dir,
            f"data: {len(dataset.ids)} pairs from {config.data} ({rules}); split "
            f"{len(train_set.ids)}/{len(val_set.ids)}/{len(test_set.ids)} ({split['source']})",
        )

    model = build_model(config.model_config)
    if config.pretrained and not state:
        load_mobilenet_v3_weights(model, config.pretrained)
        _log(log_dir, f"encoder: ImageNet weights from {config.pretrained}")
    elif not state:
        _log(log_dir, "encoder: no --pretrained weights, training from scratch")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs, eta_min=config.min_lr
    )
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch, best, history = 0, {"epoch": -1, "val_iou": -1.0}, []
    if state:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        _log(log_dir, f"resuming {run_dir} at epoch {start_epoch} of {config.epochs}")
    net: nn.Module = model
    if world > 1:
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            _log(
                log_dir,
                "DDP on CPU: SyncBatchNorm needs CUDA, so each process normalises its own "
                "batch; DDP broadcasts rank 0's BatchNorm statistics every step",
            )
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )

    images = torch.from_numpy(train_set.images).to(device)  # (N, S, S, 3) uint8, resident
    masks = torch.from_numpy(train_set.masks).to(device)  # (N, S, S) uint8
    steps_per_epoch = max(1, len(train_set.ids) // (config.batch_size * world))
    deep_steps = config.effective_deep_epochs * steps_per_epoch
    use_amp = config.amp and device.type == "cuda"
    end_epoch = (
        config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    )
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(train_set.ids), generator=generator)[rank::world]
        losses, tp_fp_fn = [], torch.zeros(3, device=device)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and main),
            leave=False,
        )
        for step in bar:
            slope = slope_schedule(epoch * steps_per_epoch + step, deep_steps, config.schedule)
            set_act_slope(model, slope)
            idx = order[step * config.batch_size : (step + 1) * config.batch_size].to(device)
            x, y = augment(to_input(images[idx]), masks[idx, None].float(), generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x)
            loss = bce_dice_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                pred, target = logits.detach() > 0, y > 0.5
                tp_fp_fn += torch.stack(
                    [(pred & target).sum(), (pred & ~target).sum(), (~pred & target).sum()]
                ).float()
            loss = loss.detach()
            losses.append(loss)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", slope=f"{slope:.3f}")
        scheduler.step()
        train_loss = float(torch.stack(losses).mean())
        tp, fp, fn = tp_fp_fn.tolist()
        train_time = time.perf_counter() - t0
        end_slope = slope_schedule((epoch + 1) * steps_per_epoch - 1, deep_steps, config.schedule)
        if main:
            val = _evaluate_counts(model, val_set, device) if val_set.ids else {"iou": float("nan")}
            record = {
                "epoch": epoch,
                "slope": end_slope,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": train_loss,
                "train_iou": tp / max(tp + fp + fn, 1),
                "val_iou": val["iou"],
                "val_dice": val.get("dice", float("nan")),
                "train_time_s": train_time,
                "epoch_time_s": time.perf_counter() - t0,
            }
            history.append(record)
            with open(run_dir / "log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            fusible = (
                end_slope == 1.0
                and slope_schedule(epoch * steps_per_epoch, deep_steps, config.schedule) == 1.0
            )
            val_score = val["iou"] if val_set.ids else -train_loss
            info = {
                "train_config": asdict(config),
                "split": split,
                "epoch": epoch,
                "metrics": {"val": val},
            }
            if fusible and val_score > best["val_iou"]:
                best = {"epoch": epoch, "val_iou": val_score}
                save_checkpoint(run_dir / "best.pt", model, **info, best=best)
            save_checkpoint(
                run_dir / "last.pt",
                model,
                **info,
                best=best,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                generator=generator.get_state(),
                torch_rng=torch.get_rng_state(),
            )
            _log(
                log_dir,
                f"epoch {epoch + 1}/{config.epochs} slope {end_slope:.4f} loss "
                f"{train_loss:.4f} train IoU {record['train_iou']:.4f} val IoU {val['iou']:.4f} "
                f"({record['epoch_time_s']:.1f} s)",
            )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if not main:
        return {}
    if end_epoch < config.epochs:
        _log(log_dir, f"stopped after epoch {end_epoch}; continue with --resume {run_dir}")
        return {}
    metrics = evaluate_trained_and_fused(run_dir / "best.pt", test_set, device)
    metrics["best_epoch"] = best["epoch"]
    metrics["epochs"] = config.epochs
    metrics["deep_epochs"] = config.effective_deep_epochs
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    record_test_metrics(run_dir / "best.pt", metrics)
    _log(
        log_dir,
        f"test ({len(test_set.ids)} images): trained IoU {metrics['trained']['iou']:.4f} "
        f"Dice {metrics['trained']['dice']:.4f}; fused IoU {metrics['fused']['iou']:.4f} "
        f"Dice {metrics['fused']['dice']:.4f}; max |logit diff| {metrics['max_abs_logit_diff']:.2e}",
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


def _evaluate_counts(model: nn.Module, dataset, device: torch.device) -> dict[str, float]:
    logits = predict_logits(model, dataset.images, device)
    return summarize(confusion_counts(logits > 0, dataset.masks))


def evaluate_trained_and_fused(checkpoint: str | Path, dataset, device: torch.device) -> dict:
    """Evaluate a training checkpoint as trained and after fusion on the same images.

    Raises:
        LVUNetError: the fused model's metrics differ from the trained model's by more than 0.001.
    """
    model, info = load_checkpoint(checkpoint, map_location=device)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "split_size": len(dataset.ids)}
    trained_logits = predict_logits(model, dataset.images, device)
    fused = reparameterize_model(model)
    fused_logits = predict_logits(fused, dataset.images, device)
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

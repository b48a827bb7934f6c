"""One checkpoint format for the whole project: config, slope, fused flag and state_dict in one file.

Files are written atomically (temporary file + rename) and read with ``torch.load(weights_only=True)``,
so a checkpoint handed over by someone else cannot run code on load.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lvunet_runtime.errors import first_line
from lvunet_runtime.writer import atomic_file

from lvunet_edge.errors import CheckpointError, LVUNetError
from lvunet_edge.model import LVUNet, LVUNetConfig, build_model
from lvunet_edge.reparam import get_act_slope

CHECKPOINT_FORMAT = "lvunet-edge/checkpoint"
CHECKPOINT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through the runtime's one atomic writer: never a half-written file, the usual
    permissions, data on disk (fsync) before the rename."""
    path = Path(path)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            try:
                torch.save(obj, handle)
            except RuntimeError as exc:  # torch reports a failed write (a full disk) this way
                raise _write_fault(path, exc) from None
            handle.flush()
            os.fsync(handle.fileno())


def _write_fault(path: Path, exc: BaseException) -> OSError:
    """A failed ``torch.save`` as the OSError it is (a full disk when the disk is nearly full), so the
    run stops with exit 2 and says how to continue; the previous file at ``path`` is untouched."""
    free = shutil.disk_usage(path.parent).free
    if free < 64 << 20:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"could not write the checkpoint ({first_line(exc)})", str(path))


def save_checkpoint(path: str | Path, model: LVUNet, **info: Any) -> None:
    """Save ``model`` with its config, slope and fused flag, plus any extra ``info``.

    ``info`` values must be plain data or tensors (dicts, lists, numbers, strings, state_dicts) so the
    file stays loadable with ``weights_only=True``: optimizer state, split, metrics, epoch, ...
    """
    reserved = {"format", "version", "config", "fused", "slope", "state_dict"} & set(info)
    if reserved:
        raise LVUNetError(f"info keys {sorted(reserved)} are reserved by the checkpoint format")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "fused": bool(model.deploy),
        "slope": get_act_slope(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **info,
    }
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint file without building a model.

    Raises:
        CheckpointError: missing, unreadable, truncated, or not an LV-UNet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load raises many types for bad bytes; all mean unreadable
        reason = first_line(exc)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or not a checkpoint "
            f"saved with plain data): {reason}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an LV-UNet checkpoint (no '{CHECKPOINT_FORMAT}' format marker); "
            "expected a file written by lvunet-train or lvunet_edge.save_checkpoint"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; this lvunet-edge reads "
            f"version {CHECKPOINT_VERSION}"
        )
    return payload


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[LVUNet, dict[str, Any]]:
    """Load a checkpoint into a freshly built model (fused or not, as saved).

    Returns:
        ``(model, info)``: the model in eval mode, and every other entry of the file (config, fused,
        slope, and whatever extra info was saved).
    """
    payload = read_checkpoint(path, map_location)
    try:
        config = LVUNetConfig.from_dict(payload["config"])
        model = build_model(config, deploy=bool(payload["fused"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (LVUNetError, KeyError, RuntimeError, TypeError) as exc:
        reason = first_line(exc)
        raise CheckpointError(f"{path} does not match its LV-UNet config: {reason}") from exc
    model.to(map_location).eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, info

"""The models shipped inside the package, and how a model name or path becomes a file."""

from __future__ import annotations

from pathlib import Path

from lvunet_runtime.errors import ModelError

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "polyp"


def bundled_models() -> list[str]:
    """Names of the models shipped inside this package."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def resolve_model(model: str | Path | None) -> Path:
    """A bundled model name (default ``polyp``) or a path to an ``.onnx`` file."""
    name = DEFAULT_MODEL if model is None else str(model)
    if Path(name).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise ModelError(
            f"{name} is a training checkpoint, not an ONNX model: export it first with "
            f"lvunet-export --ckpt {name} --out model.onnx, then give --model model.onnx"
        )
    bundled = MODELS_DIR / f"{name}.onnx"
    if bundled.is_file() and not Path(name).suffix:
        return bundled
    path = Path(name)
    if path.is_file():
        return path
    names = ", ".join(bundled_models()) or "none"
    raise ModelError(
        f"model {name!r} not found: give a path to an .onnx file or a bundled name ({names})"
    )

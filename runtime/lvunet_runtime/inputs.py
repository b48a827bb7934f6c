"""What ``lvunet-infer`` takes as input: files, folders, glob patterns, each file once, regular files only,
and never the tool's own earlier outputs.

A folder (or a glob's folder) holding one of our run records (``summary.json`` written by
``lvunet-infer``) has its recorded outputs left out, so ``lvunet-infer in --out in`` twice does not
segment its own masks. A file named explicitly on the command line always runs (a user's own
``scan_mask.png`` is a valid input).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

from lvunet_runtime.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES

RECORD_NAME = "summary.json"
RECORD_TOOL = "lvunet-infer"


@dataclass(frozen=True)
class Source:
    """One input file and the folder it was found in (its outputs mirror the path below that folder)."""

    path: Path
    base: Path | None = None

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Inputs:
    """The expanded inputs and the arguments that gave none."""

    sources: list[Source] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def read_record(folder: Path) -> dict | None:
    """The run record in ``folder`` if one of our runs wrote it; None otherwise (or unreadable)."""
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("tool") != RECORD_TOOL:
        return None
    outputs = record.get("outputs")
    return (
        record if isinstance(outputs, list) and all(isinstance(o, str) for o in outputs) else None
    )


def _recorded_outputs(folder: Path, cache: dict[Path, set[Path]]) -> set[Path]:
    if folder not in cache:
        record = read_record(folder)
        cache[folder] = {(folder / o).resolve() for o in record["outputs"]} if record else set()
    return cache[folder]


def _ours(path: Path, cache: dict[Path, set[Path]]) -> bool:
    """Whether a run record in this file's folder or any folder above it lists it as an output."""
    resolved = path.resolve()
    return any(resolved in _recorded_outputs(folder, cache) for folder in path.resolve().parents)


def _media(paths, cache) -> list[Path]:
    return [
        p
        for p in paths
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
        and not _ours(p, cache)
    ]


def collect_inputs(arguments: list[str], recursive: bool) -> Inputs:
    """Expand files, folders and glob patterns into sources, each file once."""
    found = Inputs()
    seen: set[Path] = set()
    cache: dict[Path, set[Path]] = {}

    def add(paths: list[Path], base: Path | None) -> None:
        for path in paths:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.sources.append(Source(path, base))

    for raw in arguments:
        path = Path(raw)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.iterdir()
            media = _media(sorted(walker), cache)
            if not media:
                found.errors.append(
                    {"input": raw, "error": f"{raw}: no new images or videos in this folder"}
                )
            add(media, path)
        elif path.exists() or path.is_symlink():
            add(
                [path], None
            )  # named explicitly: always runs (load_image refuses non-regular files)
        elif glob.has_magic(raw):
            matches = _media(sorted(Path(m) for m in glob.glob(raw, recursive=True)), cache)
            if not matches:
                found.errors.append({"input": raw, "error": f"{raw}: no files match this pattern"})
            add(matches, None)
        else:
            found.errors.append({"input": raw, "error": f"{raw}: file not found"})
    return found

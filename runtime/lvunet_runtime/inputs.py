"""What ``lvunet-infer`` takes as input: files, folders, glob patterns, each file once, regular files only,
and never the tool's own earlier outputs.

A folder (or a glob's folder) holding one of our run records (``summary.json`` written by
``lvunet-infer``) has its recorded outputs left out, so ``lvunet-infer in --out in`` twice does not
segment its own masks. A file named explicitly on the command line always runs (a user's own
``scan_mask.png`` is a valid input).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from lvunet_runtime.data import VIDEO_SUFFIXES, file_id, is_image_file
from lvunet_runtime.records import read_records


@dataclass(frozen=True)
class Source:
    """One input file and the folder it was found in (its outputs mirror the path below that folder)."""

    path: Path
    base: Path | None = None

    @functools.cached_property
    def is_dicom(self) -> bool:
        from lvunet_runtime.dicom import is_dicom

        return self.path.suffix.lower() not in VIDEO_SUFFIXES and is_dicom(self.path)

    @functools.cached_property
    def is_video(self) -> bool:
        """A video file, or a multi-frame (cine) DICOM image: run frame by frame."""
        if self.path.suffix.lower() in VIDEO_SUFFIXES:
            return True
        from lvunet_runtime.dicom import frame_count

        return self.is_dicom and frame_count(self.path) > 1

    @property
    def stem(self) -> str:
        return file_id(self.path)


@dataclass
class Inputs:
    """The expanded inputs and the arguments that gave none."""

    sources: list[Source] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def _recorded_outputs(folder: Path, cache: dict[Path, set[Path]]) -> set[Path]:
    if folder not in cache:
        cache[folder] = {(folder / o).resolve() for r in read_records(folder) for o in r["outputs"]}
    return cache[folder]


def _ours(path: Path, cache: dict[Path, set[Path]]) -> bool:
    """Whether a run record in this file's folder or any folder above it lists it as an output."""
    resolved = path.resolve()
    return any(resolved in _recorded_outputs(folder, cache) for folder in path.resolve().parents)


# Folders that operating systems, file managers and NAS boxes make inside a user's folders: --recursive
# never descends into them (nor into any hidden folder: a name starting with ".").
SYSTEM_FOLDERS = frozenset(
    {"$RECYCLE.BIN", "System Volume Information", "__MACOSX", "@eaDir", "lost+found", "#recycle"}
)


def _walk(folder: Path):
    """Every file below ``folder``, skipping hidden and system folders (``.Trashes``, ``.thumbnails``,
    ``$RECYCLE.BIN``, ``__MACOSX``, ...) without descending into them."""
    for root, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".") and f not in SYSTEM_FOLDERS]
        for name in files:
            yield Path(root) / name


def _is_media(path: Path) -> bool:
    """An image (by extension, or DICOM by content) or a video, not hidden."""
    return (
        path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")
    ) or is_image_file(path)


def _media(paths, cache) -> list[Path]:
    return [p for p in paths if p.is_file() and _is_media(p) and not _ours(p, cache)]


def _nothing_new(raw: str, folder: Path, recursive: bool) -> str:
    """Why a folder gave no input: images only in its sub-folders (add --recursive), the files it
    skipped (named), or all of them our own outputs."""
    if not recursive:
        below = sum(1 for p in _walk(folder) if p.is_file() and _is_media(p))
        if below:
            return f"{raw}: no images directly in this folder; add --recursive ({below} below it)"
    files = sorted(p for p in (_walk(folder) if recursive else folder.iterdir()) if p.is_file())
    visible = [p for p in files if not p.name.startswith(".")]
    others = [p.name for p in visible if not _is_media(p)]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return (
            f"{raw}: no new images or videos in this folder ({len(others)} other file(s) skipped, "
            f"not images, videos or DICOM: {shown})"
        )
    if visible:
        return f"{raw}: no new images or videos in this folder (all {len(visible)} are our outputs)"
    return f"{raw}: no new images or videos in this folder"


def read_path_list(path: str | Path) -> list[str]:
    """Input paths from a text file, one per line, as if given on the command line (blank lines and
    ``#`` comments ignored): how an archive index is fed in.

    Raises:
        DataError: the list is missing, not text, or empty.
    """
    from lvunet_runtime.data import read_id_list

    return read_id_list(path, "input list")


def in_part(source: Source, num_parts: int, part_id: int) -> bool:
    """Whether ``source`` belongs to part ``part_id`` of ``num_parts`` (nnU-Net's convention, K from 0).

    The key is the path below the folder it was found in (or the path as given), hashed, so the split is
    the same on every rerun and every machine, whatever order the file system lists files in.
    """
    if num_parts == 1:
        return True
    key = source.path.relative_to(source.base).as_posix() if source.base else source.path.as_posix()
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % num_parts == part_id


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
            walker = _walk(path) if recursive else path.iterdir()
            media = _media(sorted(walker), cache)
            if not media:
                found.errors.append({"input": raw, "error": _nothing_new(raw, path, recursive)})
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

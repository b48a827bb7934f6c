"""Planning an ``lvunet-infer`` run: its options, the output names of every input (distinct by
construction), and the jobs left to do once an earlier run's outputs are kept."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lvunet_runtime.errors import OutputError
from lvunet_runtime.image import DEFAULT_MAX_PIXELS
from lvunet_runtime.inputs import Source, in_part
from lvunet_runtime.outputs import VIDEO_CODECS
from lvunet_runtime.records import RunSummary, _relative, record_name
from lvunet_runtime.writer import OutputGuard

if TYPE_CHECKING:
    from lvunet_runtime.dicom import SegSeries


def default_workers() -> int:
    """Decode and write threads: one per two cores (one each on a 2-core laptop)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass
class InferOptions:
    """Output and pipeline choices of ``lvunet-infer`` (CLI options map 1:1)."""

    out: Path = Path("lvunet-output")
    overlay: bool = False
    prob: bool = False
    json: bool = False
    overwrite: bool = False
    recursive: bool = False
    batch_size: int = 1
    keep_largest: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = field(default_factory=default_workers)
    progress: bool = True
    video_codec: str = "mp4v"
    num_parts: int = 1
    part_id: int = 0
    input_list: Path | None = None
    ray: bool = False
    ray_address: str | None = None
    ray_actors: int | None = None
    dicom_seg: bool = False
    seg_series: SegSeries | None = None  # made when the run starts (a new DICOM series per run)

    @property
    def record_name(self) -> str:
        return record_name(self.num_parts, self.part_id)


@dataclass
class Job:
    """One input and the outputs still to write (those an earlier run of ours with the same settings
    left are not listed: they stay as they are)."""

    source: Path
    outputs: dict[str, Path]
    video: bool = False  # run frame by frame: a video file or a multi-frame DICOM image


def _names(source: Source, options: InferOptions, stem: str) -> dict[str, Path]:
    folder = options.out
    if source.base is not None:
        folder = options.out / source.path.parent.relative_to(source.base)  # mirror a folder
    seg = {"seg": folder / f"{stem}_seg.dcm"} if options.dicom_seg and source.is_dicom else {}
    if source.is_video:
        extension = VIDEO_CODECS[options.video_codec][1]
        return {
            "video": folder / f"{stem}_overlay{extension}",
            "csv": folder / f"{stem}_frames.csv",
            **seg,
        }
    paths = {"mask": folder / f"{stem}_mask.png", **seg}
    if options.overlay:
        paths["overlay"] = folder / f"{stem}_overlay.png"
    if options.prob:
        paths["prob"] = folder / f"{stem}_prob.png"
    if options.json:
        paths["json"] = folder / f"{stem}.json"
    return paths


def unique_names(sources: list[Source], options: InferOptions) -> dict[Path, dict[str, Path]]:
    """Output paths per source, distinct by construction.

    Two inputs that would write the same file: when their extensions differ (``x.jpg``, ``x.png``) both
    names carry the extension (``x_jpg_mask.png``); otherwise one error before any work.
    """
    by_name: dict[Path, list[Source]] = {}
    for source in sources:
        by_name.setdefault(_names(source, options, source.stem)[_first(source)], []).append(source)
    names = {}
    for group in by_name.values():
        suffixes = {s.path.suffix.lower() for s in group}
        if len(group) > 1 and len(suffixes) < len(group):
            a, b = group[0].path, group[1].path
            raise OutputError(
                f"{a} and {b} would write the same output names; give them in separate runs with "
                "different --out, or use --recursive on a folder above both"
            )
        for source in group:
            stem = source.stem
            if len(group) > 1:
                stem = f"{stem}_{source.path.suffix.lower().lstrip('.')}"
            names[source.path] = _names(source, options, stem)
    return names


def _first(source: Source) -> str:
    return "video" if source.is_video else "mask"


def plan_jobs(
    sources: list[Source],
    options: InferOptions,
    guard: OutputGuard,
    previous: set[str],
    summary: RunSummary,
) -> list[Job]:
    """One job per source with the outputs still to write; sources whose outputs all exist from an
    earlier run are skipped; a source whose outputs may not be written is a failure, before any work."""
    jobs = []
    part = {s.path for s in sources if in_part(s, options.num_parts, options.part_id)}
    for source, outputs in unique_names(sources, options).items():  # names from all parts: stable
        if source not in part:
            continue
        job = Job(source, {}, video="video" in outputs)
        problem = None
        for kind, path in outputs.items():
            ours = _relative(path, options.out) in previous
            if path.exists() and ours and not options.overwrite and not path.is_symlink():
                continue  # kept
            problem = problem or guard.problem(path, ours=ours)
            job.outputs[kind] = path
        if problem:
            summary.failed.append({"input": str(source), "error": f"{source}: {problem}"})
        elif not job.outputs:
            summary.skipped_existing += 1
        else:
            jobs.append(job)
    return jobs

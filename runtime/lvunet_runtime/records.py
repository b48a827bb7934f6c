"""Run records: ``summary.json`` (or ``summary.part-K-of-N.json`` for one part of a sharded job) holds the
settings that shaped a run's outputs, its counts and per-image results, and the list of outputs it made.

A rerun into the same folder reads them (:func:`check_records`): the outputs listed stay, a run with other
settings is refused before any work unless ``--overwrite``. :func:`merge_parts` combines the parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lvunet_runtime.errors import OutputError
from lvunet_runtime.writer import OutputGuard

RECORD_NAME = "summary.json"
RECORD_TOOL = "lvunet-infer"
PART_RECORD_GLOB = "summary.part-*-of-*.json"


def record_name(num_parts: int = 1, part_id: int = 0) -> str:
    """``summary.json`` for a whole run, ``summary.part-K-of-N.json`` for one part of a sharded job."""
    return RECORD_NAME if num_parts == 1 else f"summary.part-{part_id}-of-{num_parts}.json"


RECORD_VERSION = 1


def read_records(folder: Path) -> list[dict]:
    """Every run record of ours in ``folder``: the whole run's and each part's of a sharded job."""
    paths = [folder / RECORD_NAME, *sorted(folder.glob(PART_RECORD_GLOB))]
    return [r for r in (read_record(folder, p.name) for p in paths) if r is not None]


def read_record(folder: Path, name: str = RECORD_NAME) -> dict | None:
    """The run record ``name`` in ``folder`` if one of our runs wrote it; None otherwise (or unreadable)."""
    path = folder / name
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


def _count(number: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def image_line(entry: dict) -> str:
    """One image's console line: ``scan.jpg: 12.3% foreground (4210 px), 1 region``."""
    line = f"{entry['input']}: {entry['area_fraction']:.1%} foreground ({entry['area_px']} px)"
    return line + (f", {_count(entry['regions'], 'region')}" if "regions" in entry else "")


@dataclass
class RunSummary:
    """Counts and timing of a run; written as ``summary.json``."""

    processed: int = 0
    skipped_existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    model: str = ""
    providers: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    not_done: int = 0
    stopped: str = ""
    record_error: str = ""
    notes: list[str] = field(
        default_factory=list
    )  # one line each, for the console (a lock taken over)
    ray: dict = field(default_factory=dict)
    node_placement: dict = field(default_factory=dict)
    provider_fallback: list[str] = field(default_factory=list)
    adapter: dict = field(default_factory=dict)  # the WebGPU adapter, when that provider ran

    def line(self) -> str:
        if not (self.processed or self.videos or self.failed or self.not_done):
            if self.skipped_existing:
                return (
                    f"nothing to do: the outputs of {_count(self.skipped_existing, 'input')} exist "
                    "(--overwrite to redo)"
                )
        rate = self.processed / self.seconds if self.seconds else 0.0
        parts = []
        if self.processed or not self.videos:
            parts.append(
                f"{_count(self.processed, 'image')} segmented in {self.seconds:.2f} s "
                f"({rate:.1f} images/s)"
            )
        if self.videos:
            fps = self.frames / self.video_seconds if self.video_seconds else 0.0
            parts.append(
                f"{_count(self.videos, 'video')}, {_count(self.frames, 'frame')} in "
                f"{self.video_seconds:.2f} s ({fps:.1f} frames/s)"
            )
        if self.skipped_existing:
            parts.append(f"{self.skipped_existing} skipped (outputs exist; --overwrite to redo)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.not_done:
            parts.append(f"{self.not_done} not done")
        return "; ".join(parts)

    @property
    def partial(self) -> bool:
        """Something the run was asked to do was not done (exit code 2)."""
        return bool(self.failed or self.stopped or self.not_done or self.record_error)


def failure_entry(source: Path | str, error: BaseException | str) -> dict[str, str]:
    """A failed input as the run record lists it: its path, and the message (naming the path)."""
    message = str(error)
    return {
        "input": str(source),
        "error": message if str(source) in message else f"{source}: {message}",
    }


def run_settings(segmenter, options) -> dict:
    """What shapes the outputs' content: a rerun into the same folder must match it."""
    settings = {
        "model_sha256": segmenter.sha256,
        "threshold": segmenter.threshold,
        "keep_largest": options.keep_largest,
    }
    settings["tta"] = (
        segmenter.tta
    )  # defaults are recorded too: a rerun with another value is refused
    return settings


# What a setting was when a record predates it (records written before --tta existed, or that left a
# default out): compared as this value, so ``--tta off`` into a folder made with ``--tta hv`` is refused.
SETTING_DEFAULTS = {"tta": "off"}


def check_records(records: list[dict], settings: dict, options) -> set[str]:
    """The outputs earlier runs of ours left in ``--out`` (relative paths, every part's), after checking
    that they ran with the same settings.

    Raises:
        OutputError: an earlier run used other settings (names the first that differs), or this run's
            record file there is not ours; ``--overwrite`` allows both.
    """
    record_path = options.out / options.record_name
    ours = {r.get("record_file", RECORD_NAME) for r in records}
    if (record_path.exists() or record_path.is_symlink()) and options.record_name not in ours:
        if not options.overwrite:
            raise OutputError(
                f"{record_path} exists and is not an lvunet-infer run record; choose another --out "
                "or pass --overwrite"
            )
    for record in records:
        previous = record.get("settings", {})
        for key, value in settings.items():
            before = previous.get(key, SETTING_DEFAULTS.get(key))
            if before != value and not options.overwrite:
                what = "model file" if key == "model_sha256" else key.replace("_", "-")
                raise OutputError(
                    f"{options.out} holds outputs made with another {what} ({before!r}, now "
                    f"{value!r}); choose another --out, or pass --overwrite to redo them"
                )
    return {o for r in records for o in r["outputs"]}


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to the output folder, as the run record lists it."""
    path, out = path.resolve(), out.resolve()
    return path.relative_to(out).as_posix() if path.is_relative_to(out) else str(path)


def write_plan(options, summary: RunSummary, previous: set[str], planned: set[str], guard) -> None:
    """Before any work: the record with this run's settings and, as its outputs, the earlier ones and
    every output this run is about to write (``status: running``). Outputs are written atomically, so
    after an interruption (Ctrl-C, SIGTERM, kill -9, a crash) each listed file either exists whole or
    not at all, and a rerun of the same command keeps the first and does the rest."""
    record = _record(options, summary, sorted(previous | planned), status="running")
    guard.write(options.out / options.record_name, record, ours=True)


def _record(options, summary: RunSummary, outputs: list[str], status: str) -> bytes:
    record = {
        "tool": RECORD_TOOL,
        "record_version": RECORD_VERSION,
        "record_file": options.record_name,
        "num_parts": options.num_parts,
        "part_id": options.part_id,
        "status": status,
        **summary.__dict__,
        "outputs": outputs,
    }
    return (json.dumps(record, indent=1) + "\n").encode()


def kept_results(records: list[dict], summary: RunSummary) -> list[dict]:
    """Per-image results of earlier runs for inputs this run kept (their outputs still listed and not
    redone), followed by this run's: a rerun that did the rest keeps everyone's areas."""
    done = {entry["input"] for entry in summary.images}
    earlier = {}
    for record in records:
        for entry in record.get("images", []):
            if isinstance(entry, dict) and isinstance(entry.get("input"), str):
                earlier[entry["input"]] = entry
    return [e for i, e in earlier.items() if i not in done] + summary.images


def write_record(
    options, summary: RunSummary, previous: set[str], guard: OutputGuard, *, planned: bool = False
) -> None:
    """The run record: this run's summary, its settings, and every output of ours in ``--out`` (also
    when nothing new was written, if :func:`write_plan` wrote a running record that must be closed)."""
    out = options.out
    created = {_relative(p, out) for p in guard.created} - {options.record_name}
    if not created and not planned:  # nothing new: the earlier record stays as it is
        return
    if not created and not previous:  # the plan of a run that wrote nothing: leave no trace
        (out / options.record_name).unlink(missing_ok=True)
        return
    status = "stopped" if summary.stopped else "done"
    record = _record(options, summary, sorted(previous | created), status)
    try:
        guard.write(out / options.record_name, record, ours=True)
    except (OSError, OutputError) as exc:
        summary.record_error = f"{options.record_name} not written ({exc})"


def merge_parts(out: Path) -> RunSummary:
    """Combine the part records of a sharded job into ``summary.json``, the whole job's record.

    Raises:
        OutputError: no part records, parts of different splits or settings, or parts missing (named).
    """
    parts = [r for r in read_records(out) if r.get("num_parts", 1) > 1]
    if not parts:
        raise OutputError(f"{out} holds no part records (summary.part-K-of-N.json) to merge")
    sizes = {r["num_parts"] for r in parts}
    if len(sizes) > 1:
        raise OutputError(
            f"{out} holds parts of different splits ({sorted(sizes)} parts); merge one job at a time"
        )
    settings = [r["settings"] for r in parts]
    if any(s != settings[0] for s in settings):
        raise OutputError(f"the parts in {out} ran with different settings; rerun them alike")
    (num_parts,) = sizes
    missing = sorted(set(range(num_parts)) - {r["part_id"] for r in parts})
    merged = RunSummary(
        model=parts[0]["model"], providers=parts[0]["providers"], settings=settings[0]
    )
    for r in sorted(parts, key=lambda r: r["part_id"]):
        for key in ("processed", "skipped_existing", "videos", "frames", "not_done"):
            setattr(merged, key, getattr(merged, key) + r.get(key, 0))
        merged.seconds = max(merged.seconds, r.get("seconds", 0.0))  # parts run side by side
        merged.failed += r.get("failed", [])
        merged.images += r.get("images", [])
    if missing:
        merged.stopped = f"part(s) {missing} of {num_parts} have not run (or wrote no record)"
    guard = OutputGuard()
    outputs = {o for r in parts for o in r["outputs"]}
    record = {
        "tool": RECORD_TOOL,
        "record_version": RECORD_VERSION,
        "record_file": RECORD_NAME,
        "num_parts": 1,
        "part_id": 0,
        "merged_parts": num_parts,
        **merged.__dict__,
        "outputs": sorted(outputs),
    }
    ours = read_record(out) is not None
    guard.write(out / RECORD_NAME, (json.dumps(record, indent=1) + "\n").encode(), ours=ours)
    return merged

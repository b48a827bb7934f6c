"""1,000 Kvasir-SEG images four ways on this machine, one after another in one run: plain lvunet-infer,
2 shards in parallel (two processes), and a local Ray cluster with 1 and with 2 actors.

    .venv-ray/bin/python benchmarks/cluster_inference.py --images ../shared/data/kvasir-seg/images \
        --json benchmarks/results/cluster/cluster_inference.json

Each configuration is a fresh set of processes; wall time from start to the last process's exit; memory
is the peak of the summed resident memory of every process of the configuration (the lvunet-infer
processes, and for Ray its raylet, GCS and workers), sampled every 100 ms from /proc. The outputs of every
configuration are compared byte for byte with the plain run's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from timing import machine_header

INFER = [sys.executable, "-c", "from lvunet_runtime.cli import infer_main; infer_main()"]


def _rss_mb_of(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def _ours(roots: set[int]) -> set[int]:
    """The root processes, their descendants, and every Ray process (raylet, GCS, workers)."""
    children: dict[int, list[int]] = {}
    ray = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
        if b"ray" in cmd and (
            b"raylet" in cmd or b"gcs_server" in cmd or b"ray::" in cmd or b"default_worker" in cmd
        ):
            ray.add(int(entry))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found | ray


def run(commands: list[list[str]]) -> dict:
    """Start ``commands`` together; wall time and peak summed memory until all have exited."""
    start = time.perf_counter()  # a whole multi-process run, sampled while it goes
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    peak, done = 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb_of(_ours({p.pid for p in procs})))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"{proc.args}: exit {proc.returncode}: {err[-500:]}")
    return {"wall_s": wall, "peak_rss_mb": peak, "stdout": [o for o, _ in outputs]}


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("*_mask.png"))
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    images = str(args.images)
    count = len([p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png")])
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        configs = {
            "plain": [[*INFER, images, "--out", str(out / "plain"), "--no-progress"]],
            "2 shards": [
                [
                    *INFER,
                    images,
                    "--out",
                    str(out / "shards"),
                    "--no-progress",
                    "--num-parts",
                    "2",
                    "--part-id",
                    str(k),
                ]
                for k in (0, 1)
            ],
            "ray, 1 actor": [
                [
                    *INFER,
                    images,
                    "--out",
                    str(out / "ray1"),
                    "--no-progress",
                    "--ray",
                    "--ray-actors",
                    "1",
                ]
            ],
            "ray, 2 actors": [
                [
                    *INFER,
                    images,
                    "--out",
                    str(out / "ray2"),
                    "--no-progress",
                    "--ray",
                    "--ray-actors",
                    "2",
                ]
            ],
        }
        for name, commands in configs.items():
            result = run(commands)
            folder = (
                out
                / {
                    "plain": "plain",
                    "2 shards": "shards",
                    "ray, 1 actor": "ray1",
                    "ray, 2 actors": "ray2",
                }[name]
            )
            result["images_per_s"] = count / result["wall_s"]
            summary = json.loads(next(folder.glob("summary*.json")).read_text())
            result["ray"] = summary.get("ray", {})
            result["identical_to_plain"] = (
                None if name == "plain" else digest(folder) == digest(out / "plain")
            )
            results[name] = {k: v for k, v in result.items() if k != "stdout"}
            print(
                f"{name:14s} {result['wall_s']:7.2f} s  {result['images_per_s']:6.1f} images/s  "
                f"peak {result['peak_rss_mb']:6.0f} MB  identical={result['identical_to_plain']}",
                flush=True,
            )
    plain = results["plain"]["wall_s"]
    for name in ("ray, 1 actor", "ray, 2 actors"):
        results[name]["overhead_ms_per_image_vs_plain"] = (
            (results[name]["wall_s"] - plain) / count * 1e3
        )
    report = machine_header(images=count, results=results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

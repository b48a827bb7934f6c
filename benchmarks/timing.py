"""What every benchmark script here shares: one timing function (interleaved rounds, medians with the
spread of per-round medians) and one machine header for every result file.

Scripts import it as ``from timing import ...`` (run them as ``python benchmarks/NAME.py``; the script's
own folder is on ``sys.path``). The rules it encodes: warm-up before timing; every variant timed in every
round, so drift on a shared machine hits all of them alike; the figure is the median of all timed calls,
the spread the min and max of the per-round medians; ratios only between variants of one call.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx512f")  # what decides bf16 speed on a CPU


def machine_header(**extra) -> dict:
    """The header of every result file: the machine (CPU, cores, onnxruntime and its providers), its
    load when the run started (1-minute load average, so a slow figure on a busy machine shows as
    such), the command that made the file and when."""
    from lvunet_runtime.machine import machine_info

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    flags = []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            flags = sorted({f for f in handle.read().split() if f in BF16_FLAGS})
    return {
        "machine": {**machine_info(), "load_1min": load, "bf16_flags": flags},
        "command": " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def interleaved(
    variants: dict[str, Callable[[], object]],
    *,
    rounds: int,
    runs: int = 1,
    warmup: int = 10,
    warmup_each_round: bool = False,
    before_round: Callable[[], object] | None = None,
    sync: Callable[[], object] | None = None,
) -> dict[str, dict]:
    """Time each variant ``runs`` calls per round, all variants in every round, after ``warmup`` calls
    each (in every round with ``warmup_each_round``, as when other work runs between rounds).
    ``before_round`` runs at the start of each round (e.g. measuring the machine's GEMM rate);
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock reading.

    Returns per variant: ``median_ms`` (all calls), ``round_min_ms`` / ``round_max_ms`` (the spread of
    the per-round medians), ``p90_ms``, ``calls`` and the raw per-call ``samples_ms``.
    """
    wait = sync or (lambda: None)

    def warm(call) -> None:
        for _ in range(warmup):
            call()
        wait()

    if not warmup_each_round:
        for call in variants.values():
            warm(call)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        if before_round is not None:
            before_round()
        for name, call in variants.items():
            if warmup_each_round:
                warm(call)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                call()
                wait()
                times.append((time.perf_counter() - start) * 1e3)
            samples[name] += times
            per_round[name].append(statistics.median(times))
    return {
        name: {
            "median_ms": statistics.median(samples[name]),
            "round_min_ms": min(per_round[name]),
            "round_max_ms": max(per_round[name]),
            "p90_ms": sorted(samples[name])[int(0.9 * (len(samples[name]) - 1))],
            "calls": len(samples[name]),
            "samples_ms": samples[name],
        }
        for name in variants
    }


def time_once(call: Callable[[], object]) -> float:
    """Seconds one call takes (a whole run: a command, a folder)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def cpu_ms(call: Callable, items: list) -> tuple[list, float]:
    """Results of ``call`` on each item, and the process CPU milliseconds per item: the cost of a
    stage, not its wall time (what a bound over all cores is built from)."""
    start = time.process_time()
    out = [call(item) for item in items]
    return out, (time.process_time() - start) / len(items) * 1e3

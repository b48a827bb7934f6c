"""What machine a measurement ran on: enough to compare results later (``lvunet-bench``, the
recommendation record, the benchmark scripts' headers)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info() -> dict:
    """CPU model, core count, onnxruntime version and providers: enough to compare results later."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        # a slow figure on a busy machine shows as such: the 1-minute load average when the run began
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }

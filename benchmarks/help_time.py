"""How long each command's ``--help`` takes, wall time of a fresh process (the friction issue's target:
under 0.5 s for ``lvunet-infer --help`` on the 2-core development machine), interleaved over the commands,
and the slowest imports of ``lvunet-infer --help`` (``python -X importtime``).

    .venv/bin/python benchmarks/help_time.py --rounds 10 --json benchmarks/results/help-time.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from timing import interleaved, machine_header

ENTRY = {
    "lvunet-infer": "from lvunet_runtime.cli import infer_main as main",
    "lvunet-eval": "from lvunet_runtime.cli import eval_main as main",
    "lvunet-bench": "from lvunet_runtime.cli import bench_main as main",
    "lvunet-serve": "from lvunet_runtime.serve.cli import main",
    "lvunet-train": "from lvunet_edge.cli import main",
    "lvunet-export": "from lvunet_export.cli import main",
}


def command(program: str) -> list[str]:
    code = f"import sys; sys.argv = ['{program}', '--help']; {ENTRY[program]}; main()"
    return [sys.executable, "-c", code]


def slowest_imports(program: str, count: int = 8) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command(program)[1:]], capture_output=True, text=True
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            if cumulative.isdigit():
                rows.append({"module": name.strip(), "cumulative_ms": int(cumulative) / 1000})
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    calls = {
        program: (lambda c=command(program): subprocess.run(c, capture_output=True, check=True))
        for program in ENTRY
    }
    timed = interleaved(calls, rounds=args.rounds, warmup=1)
    report = {
        **machine_header(),
        "median_ms": {k: round(v["median_ms"], 1) for k, v in timed.items()},
        "round_range_ms": {
            k: [round(v["round_min_ms"], 1), round(v["round_max_ms"], 1)] for k, v in timed.items()
        },
        "slowest_imports_lvunet_infer_help": slowest_imports("lvunet-infer"),
    }
    print(json.dumps({k: report[k] for k in ("median_ms", "round_range_ms")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Two ONNX files' CPU latency side by side in one process, interleaved (issue #16: a new bundled model may
cost at most 1.5x the previous one's latency).

    git show COMMIT:runtime/lvunet_runtime/models/polyp.onnx > /tmp/polyp-previous.onnx
    .venv/bin/python benchmarks/models_latency.py /tmp/polyp-previous.onnx runtime/lvunet_runtime/models/polyp.onnx

Batch 1, 256x256, ONNX Runtime CPU EP with 2 threads; medians of ROUNDS interleaved runs after warm-up.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from timing import interleaved, machine_header


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", type=Path, nargs=2, help="baseline, candidate")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in args.models
    ]
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in sessions]
    names = ("baseline", "candidate")
    timed = interleaved(
        {
            name: (lambda session=session, feed=feed: session.run(None, feed))
            for name, session, feed in zip(names, sessions, feeds, strict=True)
        },
        rounds=args.rounds,
        warmup=20,
    )
    medians = [timed[name]["median_ms"] for name in names]
    report = machine_header(
        baseline=str(args.models[0]),
        candidate=str(args.models[1]),
        median_ms=[round(m, 3) for m in medians],
        round_spread_ms=[
            [round(timed[n][k], 3) for k in ("round_min_ms", "round_max_ms")] for n in names
        ],
        ratio=round(medians[1] / medians[0], 3),
        rounds=args.rounds,
        threads=args.threads,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()

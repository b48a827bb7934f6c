"""Fusion, compute bound and ONNX Runtime session settings on this CPU, measured side by side.

    python benchmarks/cpu_model.py --checkpoint CKPT --json out.json [--rounds 5 --runs 60]

In one process: the float32 GEMM rate of this CPU (numpy, 2048^3), then the trained-form ONNX graph, the
fused graph and torch eager (both forms) at 1x3x256x256, then the fused graph under several session
settings. Rounds interleave the variants so drift hits all of them alike; each figure is the median of
all its timed runs, with the min and max of the per-round medians as the spread. Ratios to the compute
bound use bound = 2 x MACs / GEMM rate.
"""

from __future__ import annotations

import os

# Idle worker threads of torch (OpenMP) and numpy (OpenBLAS) otherwise spin and steal the two cores
# from ONNX Runtime's threads in the next measurement.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from timing import interleaved, machine_header  # noqa: E402

from lvunet_edge import count_macs, count_parameters, load_checkpoint, reparameterize_model  # noqa: E402


def gemm_rate(size: int = 2048, runs: int = 10) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    timed = interleaved({"gemm": lambda: a @ b}, rounds=1, runs=runs, warmup=1)["gemm"]
    return 2 * size**3 / (timed["median_ms"] / 1e3)


def export(model: torch.nn.Module, path: Path) -> None:
    import onnx
    import onnxsim

    x = torch.zeros(1, 3, 256, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
        )
    simplified, _ = onnxsim.simplify(onnx.load(str(path)))
    onnx.save(simplified, str(path))


def session(path: Path, **settings) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in settings.items():
        if key.startswith("config:"):
            options.add_session_config_entry(key[7:], value)
        else:
            setattr(options, key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(2)
    trained, _ = load_checkpoint(args.checkpoint)
    fused = reparameterize_model(trained)
    macs = {"trained": count_macs(trained), "fused": count_macs(fused)}
    params = {"trained": count_parameters(trained), "fused": count_parameters(fused)}
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 256), dtype=np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        paths = {"trained": Path(scratch) / "trained.onnx", "fused": Path(scratch) / "fused.onnx"}
        export(trained, paths["trained"])
        export(fused, paths["fused"])
        ALL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        variants = {
            "ort trained-form graph (default)": session(paths["trained"]),
            "ort fused graph (default)": session(paths["fused"]),
            "ort fused, 1 thread": session(paths["fused"], intra_op_num_threads=1),
            "ort fused, 2 threads": session(paths["fused"], intra_op_num_threads=2),
            "ort fused, spinning off": session(
                paths["fused"], **{"config:session.intra_op.allow_spinning": "0"}
            ),
            "ort fused, memory arena off": session(paths["fused"], enable_cpu_mem_arena=False),
            "ort fused, ENABLE_EXTENDED": session(
                paths["fused"],
                graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            ),
            "ort fused, sequential + mem pattern": session(
                paths["fused"],
                execution_mode=ort.ExecutionMode.ORT_SEQUENTIAL,
                enable_mem_pattern=True,
                graph_optimization_level=ALL,
            ),
            "ort fused, denormals as zero": session(
                paths["fused"], **{"config:session.set_denormal_as_zero": "1"}
            ),
        }
        calls = {name: (lambda s=s: s.run(None, {"image": x})) for name, s in variants.items()}
        tx = torch.from_numpy(x)

        def eager(model):
            def call():
                with torch.no_grad():
                    model(tx)

            return call

        calls["torch eager, trained form"] = eager(trained)
        calls["torch eager, fused"] = eager(fused)
        rates: list[float] = []

        def measure_gemm() -> None:  # the compute bound, measured between the rounds
            rates.append(gemm_rate())
            time.sleep(0.2)

        timed = interleaved(
            calls,
            rounds=args.rounds,
            runs=args.runs,
            warmup=5,
            warmup_each_round=True,
            before_round=measure_gemm,
        )
    rate = statistics.median(rates)
    bound_ms = {form: 2 * m / rate * 1e3 for form, m in macs.items()}
    results = {}
    for name in calls:
        form = "trained" if "trained" in name else "fused"
        t = timed[name]
        median = t["median_ms"]
        results[name] = {
            "median_ms": median,
            "round_min_ms": t["round_min_ms"],
            "round_max_ms": t["round_max_ms"],
            "ratio_to_bound": median / bound_ms[form],
        }
        print(
            f"{name:40s} {median:7.2f} ms  [{t['round_min_ms']:.2f}-{t['round_max_ms']:.2f}]  {median / bound_ms[form]:.2f}x bound"
        )
    fused_ms = results["ort fused graph (default)"]["median_ms"]
    report = {
        **machine_header(),
        "torch": torch.__version__,
        "checkpoint": str(args.checkpoint),
        "gemm_gflops": rate / 1e9,
        "gemm_gflops_rounds": [r / 1e9 for r in rates],
        "macs": macs,
        "parameters": params,
        "bound_ms": bound_ms,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "results": results,
        "speedup_fused_vs_trained_ort": results["ort trained-form graph (default)"]["median_ms"]
        / fused_ms,
        "speedup_ort_vs_torch_eager_fused": results["torch eager, fused"]["median_ms"] / fused_ms,
    }
    print(f"GEMM {rate / 1e9:.0f} GFLOP/s; bound {bound_ms['fused']:.2f} ms fused")
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

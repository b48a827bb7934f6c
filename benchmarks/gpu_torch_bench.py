"""Fused LV-UNet latency in PyTorch on one CUDA GPU: eager vs CUDA graphs, float32 vs float16.

    python benchmarks/gpu_torch_bench.py --json gpu.json [--runs 200]

The lent GPU machines have no ONNX Runtime CUDA provider, so this measures torch. Each figure is the median
of ``--runs`` timed calls (each synchronised), after warm-up, all in one process, side by side.
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import interleaved, machine_header

from lvunet_edge import build_model, count_macs, reparameterize_model, set_act_slope


def _graphed(model, x):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        model(x)
    return graph.replay


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    trained = build_model().to(device).eval()
    set_act_slope(trained, 1.0)
    fused = reparameterize_model(trained)
    results = []
    for form, base in (("training-form", trained), ("fused", fused)):
        for dtype in (torch.float32, torch.float16):
            model = base.to(dtype)
            for batch in (1, 8, 64):
                x = torch.randn(
                    batch, 3, args.image_size, args.image_size, device=device, dtype=dtype
                )
                modes = {"eager": lambda m=model, x=x: m(x)}
                if form == "fused":
                    modes["cuda-graph"] = _graphed(model, x)
                for mode, fn in modes.items():
                    with torch.no_grad():
                        timed = interleaved(
                            {mode: fn}, rounds=1, runs=args.runs, sync=torch.cuda.synchronize
                        )[mode]
                    median, times = timed["median_ms"], timed["samples_ms"]
                    results.append(
                        {
                            "form": form,
                            "dtype": str(dtype).replace("torch.", ""),
                            "batch": batch,
                            "mode": mode,
                            "median_ms": median,
                            "min_ms": min(times),
                            "max_ms": max(times),
                            "images_per_s": batch / median * 1e3,
                        }
                    )
                    print(
                        f"{form:13s} {results[-1]['dtype']:8s} {mode:10s} batch {batch:3d}: "
                        f"{median:7.3f} ms  ({results[-1]['images_per_s']:9.0f} images/s)"
                    )
            base.float()
    report = {
        **machine_header(gpu=torch.cuda.get_device_name(), torch=torch.__version__),
        "image_size": args.image_size,
        "runs": args.runs,
        "macs_fused": count_macs(fused.float()),
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()

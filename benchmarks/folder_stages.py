"""Per-stage CPU cost of one image in a folder run (full-size Kvasir-SEG JPEGs, bundled polyp model, CPU
EP, masks only), the bound two cores allow, and what `lvunet-infer DIR` reaches in the same run.

    .venv/bin/python benchmarks/folder_stages.py --images ../shared/data/kvasir-seg/images \
        --json benchmarks/results/cpu/folder-stages.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from lvunet_runtime.image import load_image
from lvunet_runtime.infer import default_model_threads, infer
from lvunet_runtime.outputs import encode_png
from lvunet_runtime.plan import InferOptions
from lvunet_runtime.segmenter import Segmenter
from lvunet_runtime.writer import write_atomic
from timing import cpu_ms, machine_header


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".jpg")
    sample = paths[: args.count]
    segmenter = Segmenter("polyp", threads=1)
    stages = {}
    rgb, stages["decode (load_image)"] = cpu_ms(lambda p: load_image(p)[0], sample)
    prepared, stages["prepare (resize)"] = cpu_ms(segmenter.prepare, rgb)
    for p in prepared[:10]:
        segmenter.run_prepared([p])
    outputs, stages["model (1 thread)"] = cpu_ms(lambda p: segmenter.run_prepared([p])[0], prepared)
    predictions, stages["finish"] = cpu_ms(
        lambda pair: segmenter.finish(pair[1], pair[0].size),
        list(zip(prepared, outputs, strict=True)),
    )
    pngs, stages["encode 1-bit PNG"] = cpu_ms(
        lambda p: encode_png(p.mask.astype("uint8") * 255, bilevel=True), predictions
    )
    with tempfile.TemporaryDirectory() as folder:
        _, stages["write (atomic)"] = cpu_ms(
            lambda pair: write_atomic(Path(folder) / f"{pair[0]}.png", pair[1]),
            list(enumerate(pngs)),
        )
    total = sum(stages.values())
    cores = os.cpu_count() or 1
    runner = Segmenter("polyp", threads=default_model_threads())
    with tempfile.TemporaryDirectory() as out:
        summary = infer([str(args.images)], runner, InferOptions(out=Path(out), progress=False))
    reached = summary.processed / summary.seconds
    report = {
        **machine_header(),
        "images_timed": len(sample),
        "cpu_ms_per_image": stages,
        "total_cpu_ms": total,
        "cores": cores,
        "bound_images_per_s": cores * 1e3 / total,
        "lvunet_infer_images": summary.processed,
        "lvunet_infer_images_per_s": reached,
        "share_of_bound": reached / (cores * 1e3 / total),
    }
    for name, ms in stages.items():
        print(f"{name:24s} {ms:6.2f} ms CPU")
    print(
        f"total {total:.2f} ms -> bound {report['bound_images_per_s']:.0f} images/s on {cores} cores; "
        f"lvunet-infer, same run: {reached:.1f} images/s = {report['share_of_bound']:.0%} of it"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Per-stage CPU cost of one video frame (640x480, bundled polyp model, CPU EP), each stage timed alone
over the same frames, and the frame rate two cores allow when the stages overlap perfectly.

    .venv/bin/python benchmarks/video_stages.py --video /tmp/clip640.mp4 --json benchmarks/results/video/stages.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
from lvunet_runtime.outputs import frame_stats, overlay
from lvunet_runtime.segmenter import Segmenter
from timing import cpu_ms, machine_header


def measure_pipeline(video: Path) -> float:
    """Frames/s of the real video path (overlapped pipeline, mp4v), as lvunet-infer runs it."""
    import tempfile

    from lvunet_runtime.infer import default_model_threads, infer
    from lvunet_runtime.plan import InferOptions

    segmenter = Segmenter("polyp", threads=default_model_threads())
    with tempfile.TemporaryDirectory() as out:
        summary = infer([str(video)], segmenter, InferOptions(out=Path(out), progress=False))
    return summary.frames / summary.video_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    capture = cv2.VideoCapture(str(args.video))
    start = time.process_time()
    frames = []
    while len(frames) < args.frames:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(bgr)
    stages = {"decode": (time.process_time() - start) / len(frames) * 1e3}
    segmenter = Segmenter("polyp", threads=1)
    rgb, stages["to RGB"] = cpu_ms(lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2RGB), frames)
    prepared, stages["prepare (resize)"] = cpu_ms(segmenter.prepare, rgb)
    for p in prepared[:10]:
        segmenter.run_prepared([p])
    outputs, stages["model (1 thread)"] = cpu_ms(lambda p: segmenter.run_prepared([p])[0], prepared)
    predictions, stages["finish (prob, resize back)"] = cpu_ms(
        lambda pair: segmenter.finish(pair[1], pair[0].size),
        list(zip(prepared, outputs, strict=True)),
    )
    _, stages["frame stats (area, regions)"] = cpu_ms(lambda p: frame_stats(p.mask), predictions)
    views, stages["overlay + to BGR"] = cpu_ms(
        lambda pair: cv2.cvtColor(overlay(pair[0], pair[1].mask), cv2.COLOR_RGB2BGR),
        list(zip(rgb, predictions, strict=True)),
    )
    for codec, fourcc in (("mp4v", "mp4v"), ("vp8", "VP80")):
        path = Path("/tmp") / f"stage_encode.{'mp4' if codec == 'mp4v' else 'webm'}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (640, 480))
        _, stages[f"encode {codec}"] = cpu_ms(writer.write, views)
        writer.release()
    total = sum(v for k, v in stages.items() if k != "encode vp8")
    cores = os.cpu_count() or 1
    report = {
        **machine_header(),
        "frames": len(frames),
        "size": list(frames[0].shape[1::-1]),
        "cpu_ms_per_frame": stages,
        "total_cpu_ms_mp4v": total,
        "cores": cores,
        "bound_frames_per_s_mp4v": cores * 1e3 / total,
        "bound_frames_per_s_vp8": cores
        * 1e3
        / (total - stages["encode mp4v"] + stages["encode vp8"]),
    }
    report["pipeline_frames_per_s"] = measure_pipeline(args.video)
    report["share_of_bound_mp4v"] = (
        report["pipeline_frames_per_s"] / report["bound_frames_per_s_mp4v"]
    )
    for name, ms in stages.items():
        print(f"{name:28s} {ms:6.2f} ms CPU")
    print(
        f"total (mp4v) {total:.2f} ms CPU -> bound on {cores} cores: {report['bound_frames_per_s_mp4v']:.0f} frames/s"
    )
    print(
        f"lvunet-infer's video pipeline, same run: {report['pipeline_frames_per_s']:.1f} frames/s "
        f"= {report['share_of_bound_mp4v']:.0%} of the bound"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

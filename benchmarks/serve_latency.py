"""lvunet-serve: cold start to first page, and one 640x480 image through the HTTP API against the same
work done in process (interleaved, one run, so machine drift hits both alike).

    .venv/bin/python benchmarks/serve_latency.py --image ../shared/data/kvasir-seg/images/<id>.jpg \
        --json benchmarks/results/serve/latency.json

The live path's frames/s is measured in a real browser with a fake camera:
    LVUNET_LIVE_REPORT=benchmarks/results/serve/live.json .venv/bin/python -m pytest \
        tests/browser/check_browser.py -k live -p no:cacheprovider
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
from lvunet_runtime.image import load_image
from lvunet_runtime.outputs import mask_png
from lvunet_runtime.segmenter import Segmenter
from timing import interleaved, machine_header

SERVE = Path(sys.executable).with_name("lvunet-serve")


def cold_start() -> tuple[float, float]:
    """Seconds from starting the process to the URL line, and to the first page (HTTP 200)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(SERVE), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = process.stdout.readline()
        listening = time.perf_counter() - start
        with urllib.request.urlopen(line.split()[1], timeout=30) as response:
            assert response.status == 200
        return listening, time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", type=Path, required=True, help="resized to 640x480 (JPEG, q=90)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    starts = [cold_start() for _ in range(args.starts)]

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.jpg"
        cv2.imwrite(
            str(path),
            cv2.resize(cv2.imread(str(args.image)), (640, 480)),
            [cv2.IMWRITE_JPEG_QUALITY, 90],
        )
        data = path.read_bytes()
        process = subprocess.Popen(
            [str(SERVE), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            url = process.stdout.readline().split()[1]
            port = int(url.rsplit(":", 1)[1].strip("/"))
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            segmenter = Segmenter("polyp")

            model_ms: list[float] = []

            def api(query: str) -> None:
                connection.request("POST", f"/api/segment?{query}", body=data)
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                if "store=false" in query:
                    model_ms.append(float(response.getheader("X-Inference-Ms")))

            def local() -> None:  # the same work in this process: decode, model, mask PNG
                rgb, _ = load_image(path)
                mask_png(segmenter.predict(rgb).mask)

            timed = interleaved(
                {
                    "api mask (store=false)": lambda: api("output=mask&store=false"),
                    "api json (stored)": lambda: api("output=json"),
                    "in process": local,
                },
                rounds=args.runs,
            )
            rows = {name: t["samples_ms"] for name, t in timed.items()}
            rows["model"] = model_ms[-args.runs :]  # the timed calls' own model times
        finally:
            process.terminate()
            process.wait(30)
    report = {
        **machine_header(),
        "cold_start_s": {
            "listening_median": statistics.median(s[0] for s in starts),
            "first_page_median": statistics.median(s[1] for s in starts),
            "first_page_all": [round(s[1], 3) for s in starts],
        },
        "image": "640x480 JPEG, bundled polyp model, CPU EP",
        "latency_ms_median": {name: round(statistics.median(v), 2) for name, v in rows.items()},
        "runs": args.runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

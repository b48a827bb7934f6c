"""The in-browser page (lvunet-serve --static) in headless Chromium on this machine: page load to the
first mask, per-image latency (WASM with 1 thread and with threads), and camera frames/s with
Chromium's fake camera. WebGPU needs a GPU and a browser together: unmeasured here.

    python benchmarks/static_page.py --out benchmarks/results/static-page/cpu.json [--site DIR]

Per configuration a fresh browser opens the folder (served by tests/browser/static_server.py on
127.0.0.1, cross-origin isolated unless said), segments the 16 sample images ROUNDS times (the page's
own per-image time: decode excluded, resize + model + post-processing included), configurations
interleaved round by round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]

from timing import machine_header, time_once  # noqa: E402

from tests.browser.static_server import StaticServer  # noqa: E402
from tests.browser.test_browser import fake_camera, wait  # noqa: E402
from tests.browser.test_static import IMAGES, _driver, _settled  # noqa: E402


def open_page(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    try:
        wait(
            driver, lambda d: "this browser" in d.find_element(By.ID, "provider").text, timeout=120
        )
    except Exception:
        raise SystemExit(f"{url}: the page did not start: {driver.page_source[:300]!r}") from None


def segment(driver, images) -> list[float]:
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, "#results .card"):
        driver.find_element(By.ID, "clear").click()
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images))
    wait(driver, lambda d: _settled(d, len(images)), timeout=600)
    cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    return [float(c.get_attribute("data-ms")) for c in cards]


def main() -> None:
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="a folder written by lvunet-serve --static")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="static-page-"))
    site = args.site or tmp / "site"
    if args.site is None:
        serve = Path(sys.executable).parent / "lvunet-serve"
        subprocess.run([str(serve), "--static", str(site)], check=True)
    result = machine_header(images=len(IMAGES), rounds=args.rounds)
    isolated, plain = StaticServer(site, isolated=True), StaticServer(site, isolated=False)
    camera = fake_camera(tmp / "camera.y4m", IMAGES[-1])
    configs = {
        "wasm-1-thread": isolated.url + "?backend=wasm&threads=1",
        "wasm-2-threads": isolated.url + "?backend=wasm&threads=2",
        "wasm-not-isolated": plain.url + "?backend=wasm",
    }
    drivers = {name: _driver(tmp / name, camera) for name in configs}
    loads = {}
    for name, url in configs.items():  # page load to the first mask (a fresh page, one image)

        def first(driver=drivers[name], url=url) -> None:
            open_page(driver, url)
            segment(driver, IMAGES[:1])

        loads[name] = time_once(first)
    latencies = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name in configs:
            latencies[name] += segment(drivers[name], IMAGES)
    result["page_load_to_first_mask_s"] = loads
    result["per_image_ms"] = {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v), "count": len(v)}
        for name, v in latencies.items()
    }
    fps = {}
    for name in ("wasm-1-thread", "wasm-2-threads"):
        driver = drivers[name]
        driver.find_element(By.ID, "camera").click()
        stats = driver.find_element(By.ID, "live-stats")
        wait(driver, lambda d, s=stats: int(s.get_attribute("data-frames") or 0) >= 30, timeout=120)
        fps[name] = float(stats.get_attribute("data-fps"))
        driver.find_element(By.ID, "camera").click()
    result["camera_frames_per_s"] = fps
    result["providers_shown"] = {
        name: d.find_element(By.ID, "provider").text for name, d in drivers.items()
    }
    result["requests_outside_the_folder"] = isolated.outside() + plain.outside()
    result["webgpu"] = "unmeasured: no machine here has a GPU and a browser together"
    for driver in drivers.values():
        driver.quit()
    isolated.close()
    plain.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("page_load_to_first_mask_s", "per_image_ms", "camera_frames_per_s")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

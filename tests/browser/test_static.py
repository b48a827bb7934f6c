"""``lvunet-serve --static``: the page segmenting inside headless Chromium (ONNX Runtime Web, WASM), the
folder served on 127.0.0.1 with every other host unresolvable, and any request outside the folder a
failure. The masks of the 16 sample images, with each bundled model, equal lvunet-infer's except at
pixels whose probability is within 1e-4 of the threshold; the downloaded mask PNG and zip decode to the
same pixels; the JavaScript resize equals OpenCV's.

Runs in ``make test-browser``. The folder needs onnxruntime-web's package: downloaded once from the npm
registry into ``$LVUNET_CACHE`` (or ``~/.cache/lvunet``), or given as ``LVUNET_ORT_WEB=path.tgz``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.static_server import StaticServer
from tests.browser.test_browser import chromium, downloaded, fake_camera, wait
from tests.helpers import DATA, cli

pytestmark = pytest.mark.browser

IMAGES = sorted((DATA / "images").glob("*.jpg"))
NEAR = 1e-4  # probabilities this close to the threshold may fall either side (float kernels differ)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site") / "lvunet"
    given = os.environ.get("LVUNET_ORT_WEB")
    result = cli("serve", "--static", folder, *(["--ort-web", given] if given else []))
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stdout and (folder / "index.html").is_file()
    return folder


def _driver(downloads: Path, camera: Path | None = None):
    # every host but 127.0.0.1 unresolvable: a request elsewhere (a CDN) fails
    driver = chromium(
        downloads, camera, ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)
    )
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def page(site, tmp_path_factory):
    """The folder on a cross-origin-isolated static server, open in Chromium: (driver, server, downloads)."""
    server = StaticServer(site, isolated=True)
    downloads = tmp_path_factory.mktemp("static-downloads")
    camera = fake_camera(tmp_path_factory.mktemp("cam") / "camera.y4m", IMAGES[-1])
    driver = _driver(downloads, camera)
    driver.get(server.url)
    wait(driver, lambda d: "this browser" in d.find_element(By.ID, "provider").text)
    yield driver, server, downloads
    driver.quit()
    server.close()


def _settled(driver, count):
    found = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    return len(found) == count and all(c.get_attribute("data-state") != "pending" for c in found)


def _segment_all(driver, model):
    if driver.find_elements(By.CSS_SELECTOR, "#results .card"):
        driver.find_element(By.ID, "clear").click()
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    driver.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in IMAGES))
    wait(driver, lambda d: _settled(d, len(IMAGES)), timeout=240)
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def _page_mask(driver, card_id, threshold):
    """The mask PNG the page's download button makes, decoded."""
    data = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        window.lvunetBrowser.file({id: arguments[0]}, "mask", arguments[1])
          .then((b) => b.arrayBuffer()).then((a) => {
            let s = ""; const u = new Uint8Array(a);
            for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
            done(btoa(s)); });""",
        card_id,
        threshold,
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))


@pytest.mark.parametrize("model", ["polyp", "breast-ultrasound"])
def test_sixteen_samples_give_lvunet_infers_masks(page, model):
    from lvunet_runtime.segmenter import Segmenter

    driver, server, _ = page
    cards = _segment_all(driver, model)
    segmenter = Segmenter(model)
    threshold = segmenter.contract.threshold
    assert all(c.get_attribute("data-state") == "done" for c in cards)
    flipped, foreground = 0, 0
    for card, path in zip(cards, IMAGES, strict=True):
        assert card.find_element(By.CSS_SELECTOR, ".name").text == path.name
        expected = segmenter.predict(path)
        mask = _page_mask(driver, card.get_attribute("data-id"), threshold) > 127
        assert mask.shape == expected.mask.shape
        differ = mask != expected.mask
        near = np.abs(expected.probability - threshold) < NEAR
        assert not (differ & ~near).any(), (path.name, int((differ & ~near).sum()))
        flipped += int(differ.sum())
        foreground += int(expected.mask.sum())
        assert card.get_attribute("data-area") == str(int(mask.sum()))
    assert foreground > 10_000  # masks with content: equal empty masks would prove nothing
    assert server.outside() == []  # every request was for a file of the folder
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert resources and all(r.startswith(server.url) for r in resources), resources
    assert "WASM" in driver.find_element(By.ID, "provider").text


def test_downloads_and_zip_hold_the_pixels(page):
    driver, server, downloads = page
    cards = _segment_all(driver, "polyp")
    card, path = cards[0], IMAGES[0]
    page_mask = _page_mask(driver, card.get_attribute("data-id"), 0.5)
    card.find_element(By.CSS_SELECTOR, "button[data-output='mask']").click()
    png = downloaded(downloads, f"{path.stem}_mask.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("L")), page_mask)
    card.find_element(By.CSS_SELECTOR, "button[data-output='json']").click()
    stats = json.loads(downloaded(downloads, f"{path.stem}.json"))
    assert stats["area_px"] == int((page_mask > 127).sum()) and stats["threshold"] == 0.5
    driver.find_element(By.ID, "download-zip").click()
    archive = zipfile.ZipFile(io.BytesIO(downloaded(downloads, "lvunet-results.zip")))
    assert archive.testzip() is None
    names = archive.namelist()
    assert len(names) == 2 * len(IMAGES) and f"{path.stem}_mask.png" in names
    inside = np.asarray(Image.open(io.BytesIO(archive.read(f"{path.stem}_mask.png"))).convert("L"))
    assert np.array_equal(inside, page_mask)
    assert server.outside() == []


def test_the_javascript_resizes_equal_opencv(page):
    """process.js against cv2 on random images: INTER_AREA (shrink, grow, mixed, whole-number ratios)
    bit for bit; the float INTER_LINEAR of the output to 2e-5."""
    driver, _, _ = page
    rng = np.random.default_rng(5)
    sizes = [
        (143, 256),
        (256, 175),
        (622, 528),
        (512, 512),
        (1000, 700),
        (210, 258),
        (384, 255),
        (97, 131),
    ]
    for w, h in sizes:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        prob = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 3)
        out = driver.execute_script(
            """const b = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
            const img = b(arguments[0]), p = new Float32Array(b(arguments[1]).buffer);
            const P = window.lvunetProcess, w = arguments[2], h = arguments[3];
            const enc = (u) => { let s = ""; for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]); return btoa(s); };
            return [enc(P.resizeArea(img, w, h, 256, 256)),
                    enc(new Uint8Array(P.resizeLinear(p, 256, 256, w, h).buffer))];""",
            base64.b64encode(image.tobytes()).decode(),
            base64.b64encode(prob.tobytes()).decode(),
            w,
            h,
        )
        area = np.frombuffer(base64.b64decode(out[0]), np.uint8).reshape(256, 256, 3)
        assert np.array_equal(area, cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)), (
            w,
            h,
        )
        linear = np.frombuffer(base64.b64decode(out[1]), np.float32).reshape(h, w)
        expected = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        assert np.abs(linear - expected).max() < 2e-5, (w, h)


def test_camera_runs_in_the_browser(page):
    driver, server, _ = page
    driver.find_element(By.ID, "camera").click()
    stats = driver.find_element(By.ID, "live-stats")
    wait(driver, lambda d: float(stats.get_attribute("data-fps") or 0) > 0, timeout=60)
    driver.find_element(By.ID, "camera").click()
    assert server.outside() == []


def test_without_isolation_wasm_runs_single_threaded_and_says_so(site, tmp_path):
    server = StaticServer(site, isolated=False)
    driver = _driver(tmp_path)
    try:
        driver.get(server.url)
        wait(driver, lambda d: "this browser" in d.find_element(By.ID, "provider").text)
        text = driver.find_element(By.ID, "provider").text
        assert "WASM (1 thread, not cross-origin isolated)" in text, text
        driver.find_element(By.ID, "files").send_keys(str(IMAGES[0]))
        wait(driver, lambda d: _settled(d, 1), timeout=120)
        assert driver.find_element(By.CSS_SELECTOR, ".card").get_attribute("data-state") == "done"
        assert server.outside() == []
    finally:
        driver.quit()
        server.close()


def test_a_folder_of_other_files_is_never_written_over(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = cli("serve", "--static", folder)
    assert result.exit_code == 1 and "not written by lvunet-serve --static" in result.stderr
    assert (folder / "notes.txt").read_text() == "mine" and len(list(folder.iterdir())) == 1
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not the package")
    result = cli("serve", "--static", tmp_path / "new", "--ort-web", bad)
    assert result.exit_code == 1 and "is not onnxruntime-web 1.30.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_opened_as_a_file_it_says_how_to_serve_it(site, tmp_path):
    driver = _driver(tmp_path)
    try:
        driver.get((site / "index.html").as_uri())
        wait(driver, lambda d: d.find_element(By.ID, "message").text)
        text = driver.find_element(By.ID, "message").text
        assert "browsers do not run WebAssembly from file://" in text and "http.server" in text
    finally:
        driver.quit()

"""lvunet-serve's page in a real headless browser (Debian's chromium driven by Selenium through Debian's
chromedriver; nothing is downloaded): upload samples, wait for the overlays, move the threshold slider,
download the mask and the zip and compare them with lvunet-infer's files, a bad upload, a model switch,
two tabs at once, and the live camera (Chromium's fake capture device playing a sample image).

Runs in `make test-browser` (the file name keeps it out of the main suite). ``LVUNET_SCREENSHOT=path``
also saves the page's screenshot there (how docs/serve-page.png was made);
``LVUNET_LIVE_REPORT=path`` writes the live path's measured frames/s as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.helpers import BUSI_IMAGE, DATA, cli, start_serve

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
POLYPS = sorted((DATA / "images").glob("kvasir-seg__*.jpg"))[:2]


def fake_camera(path: Path, image: Path, frames: int = 60) -> Path:
    """A Y4M video (what Chromium's fake capture device plays) of a sample image drifting sideways."""
    picture = cv2.resize(cv2.imread(str(image)), (640, 480))
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for index in range(frames):
            shifted = np.roll(picture, 4 * index, axis=1)
            out.write(b"FRAME\n" + cv2.cvtColor(shifted, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real ``lvunet-serve`` on a free port; its URL."""
    process, url = start_serve(["--port", "0"])
    yield url
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


def chromium(downloads: Path, camera: Path | None = None, extra: tuple[str, ...] = ()):
    """Debian's headless chromium through chromedriver: downloads into ``downloads``, the fake camera
    playing ``camera`` when given, and ``extra`` arguments."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    camera_flags = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    )
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1000",
        *(camera_flags if camera else ()),
        *extra,
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser(downloads, tmp_path_factory):
    camera = fake_camera(tmp_path_factory.mktemp("camera") / "camera.y4m", POLYPS[0])
    driver = chromium(downloads, camera)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def infer_masks(tmp_path_factory):
    """lvunet-infer's outputs for the polyp samples at 0.60 and the BUSI sample at its model's default."""
    polyp = tmp_path_factory.mktemp("infer-polyp")
    result = cli(
        "infer", *POLYPS, "--out", polyp, "--threshold", "0.6", "--overlay", "--json", "--prob"
    )
    assert result.exit_code == 0, result.stderr
    busi = tmp_path_factory.mktemp("infer-busi")
    result = cli("infer", BUSI_IMAGE, "--out", busi, "--model", "breast-ultrasound")
    assert result.exit_code == 0, result.stderr
    return polyp, busi


def wait(driver, condition, timeout: float = 60):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def cards(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def settled(driver, count: int):
    found = cards(driver)
    return len(found) == count and all(c.get_attribute("data-state") != "pending" for c in found)


def downloaded(folder: Path, name: str, timeout: float = 30) -> bytes:
    path, deadline = folder / name, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not (folder / f"{name}.crdownload").exists():
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded: {sorted(p.name for p in folder.iterdir())}")


def model_runs(url: str) -> int:
    with urllib.request.urlopen(url + "api/health", timeout=30) as response:
        return json.loads(response.read())["model_runs"]


def test_upload_threshold_download_in_a_real_browser(server, browser, downloads, infer_masks):
    polyp, busi = infer_masks
    browser.get(server)
    assert "not a medical device" in browser.find_element(By.ID, "not-a-device").text
    provider = browser.find_element(By.ID, "provider")  # in the first paint, in plain words
    assert provider.text == "this computer's processor"
    assert provider.get_attribute("title") == "CPUExecutionProvider"
    options = [
        o.get_attribute("value") for o in Select(browser.find_element(By.ID, "model")).options
    ]
    assert {"polyp", "breast-ultrasound"} <= set(options)

    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in POLYPS))
    wait(browser, lambda d: settled(d, 2))
    assert [c.get_attribute("data-state") for c in cards(browser)] == ["done", "done"]
    view = browser.execute_script(
        "return cards[0].element.querySelector('.view').toDataURL().length"
    )
    assert view > 1000  # the overlay was drawn

    runs = model_runs(server)
    slider = browser.find_element(By.ID, "threshold")
    assert slider.get_attribute("value") == "0.5"
    slider.click()  # the middle of the track is 0.5 already; keys move it by one step each
    slider.send_keys(*([Keys.ARROW_RIGHT] * 10))
    assert browser.find_element(By.ID, "threshold-value").text == "0.60"
    wait(browser, lambda d: all(c.get_attribute("data-threshold") == "0.6" for c in cards(d)))
    assert model_runs(server) == runs  # re-thresholding ran no model
    for index, image in enumerate(POLYPS):
        stats = json.loads((polyp / f"{image.stem}.json").read_text())
        assert int(cards(browser)[index].get_attribute("data-area")) == stats["area_px"]
        # the preview the browser drew from the 8-bit probability map agrees with the server's mask
        preview = browser.execute_script(
            f"return maskOf(cards[{index}].prob, 0.6).reduce((a, b) => a + b, 0)"
        )
        assert abs(preview - stats["area_px"]) <= 0.01 * stats["width"] * stats["height"]

    cards(browser)[0].find_element(By.CSS_SELECTOR, "button[data-output='mask']").click()
    mask = downloaded(downloads, f"{POLYPS[0].stem}_mask.png")
    assert mask == (polyp / f"{POLYPS[0].stem}_mask.png").read_bytes()
    browser.find_element(By.ID, "download-zip").click()
    downloaded(downloads, "lvunet-results.zip")
    with zipfile.ZipFile(downloads / "lvunet-results.zip") as archive:
        for image in POLYPS:
            for suffix in ("_mask.png", "_overlay.png", "_prob.png"):
                assert (
                    archive.read(image.stem + suffix)
                    == (polyp / f"{image.stem}{suffix}").read_bytes()
                )
    assert model_runs(server) == runs

    bad = downloads.parent / "not-an-image.jpg"
    bad.write_bytes(b"this is text, not a JPEG")
    browser.find_element(By.ID, "files").send_keys(str(bad))
    wait(browser, lambda d: settled(d, 3))
    status = cards(browser)[2].find_element(By.CSS_SELECTOR, ".status").text
    assert cards(browser)[2].get_attribute("data-state") == "error" and "not an image" in status

    Select(browser.find_element(By.ID, "model")).select_by_value("breast-ultrasound")
    with urllib.request.urlopen(server + "api/models/breast-ultrasound", timeout=30) as response:
        default = json.loads(response.read())["threshold"]
    wait(browser, lambda d: d.find_element(By.ID, "threshold-value").text == f"{default:.2f}")
    browser.find_element(By.ID, "files").send_keys(str(BUSI_IMAGE))
    wait(browser, lambda d: settled(d, 4))
    card = cards(browser)[3]
    assert card.find_element(By.CSS_SELECTOR, ".card-model").text == "breast-ultrasound"
    card.find_element(By.CSS_SELECTOR, "button[data-output='mask']").click()
    assert (
        downloaded(downloads, f"{BUSI_IMAGE.stem}_mask.png")
        == (busi / f"{BUSI_IMAGE.stem}_mask.png").read_bytes()
    )
    if os.environ.get("LVUNET_SCREENSHOT"):
        Select(browser.find_element(By.ID, "model")).select_by_value("polyp")
        browser.execute_script(
            "document.querySelectorAll('.card')[2].remove(); window.scrollTo(0, 0)"
        )
        browser.save_screenshot(os.environ["LVUNET_SCREENSHOT"])


def test_folder_pick_and_drop(server, browser, tmp_path):
    browser.get(server)
    wait(browser, lambda d: d.find_element(By.ID, "provider").text != "...")
    folder = tmp_path / "exam"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(POLYPS[0], folder / POLYPS[0].name)
    shutil.copy(POLYPS[1], folder / "sub" / POLYPS[1].name)
    (folder / "notes.txt").write_text("not an image")
    browser.find_element(By.ID, "folder").send_keys(str(folder))
    wait(browser, lambda d: settled(d, 2))
    names = sorted(c.find_element(By.CSS_SELECTOR, ".name").text for c in cards(browser))
    assert names == sorted([f"exam/{POLYPS[0].name}", f"exam/sub/{POLYPS[1].name}"])
    assert (
        "1 file(s) that are not images were left out" in browser.find_element(By.ID, "message").text
    )
    # a file dropped on the page (a synthetic drop event carrying a real File)
    browser.execute_script(
        """const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], arguments[1], { type: "image/jpeg" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data }));""",
        __import__("base64").b64encode(BUSI_IMAGE.read_bytes()).decode(),
        BUSI_IMAGE.name,
    )
    wait(browser, lambda d: settled(d, 3))
    assert cards(browser)[2].get_attribute("data-state") == "done"
    assert cards(browser)[2].find_element(By.CSS_SELECTOR, ".name").text == BUSI_IMAGE.name


def test_a_dicom_export_is_taken_and_a_grey_frame_for_the_colour_model_is_flagged(
    server, browser, tmp_path
):
    """A PACS-style file (no extension, picked from a folder) and a greyscale ultrasound frame sent to
    the polyp model: segmented, with the wrong-model warning on its card; the colour one without."""
    from tests.dicom.files import VL_ENDOSCOPIC, colour_pixels, dataset, grey_pixels, save

    browser.get(server)
    wait(browser, lambda d: d.find_element(By.ID, "provider").text != "...")
    folder = tmp_path / "EXPORT"
    folder.mkdir()
    save(dataset(colour_pixels(), "RGB", VL_ENDOSCOPIC), folder / "IM0001")
    save(dataset(grey_pixels(), "MONOCHROME2"), folder / "IM0002")
    browser.find_element(By.ID, "folder").send_keys(str(folder))
    wait(browser, lambda d: settled(d, 2))
    found = {c.find_element(By.CSS_SELECTOR, ".name").text: c for c in cards(browser)}
    assert sorted(found) == ["EXPORT/IM0001", "EXPORT/IM0002"]
    assert all(c.get_attribute("data-state") == "done" for c in found.values())
    status = found["EXPORT/IM0002"].find_element(By.CSS_SELECTOR, ".status").text
    assert "warning: a grey image sent to a model trained on colour images" in status
    assert "warning" not in found["EXPORT/IM0001"].find_element(By.CSS_SELECTOR, ".status").text


def test_two_tabs_at_once(server, browser):
    first = browser.current_window_handle
    browser.get(server)
    browser.switch_to.new_window("tab")
    second = browser.current_window_handle
    browser.get(server)
    for handle, images in ((first, POLYPS), (second, [BUSI_IMAGE, POLYPS[1]])):
        browser.switch_to.window(handle)
        wait(browser, lambda d: d.find_element(By.ID, "provider").text != "...")
        browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images))
    areas = {}
    for handle in (first, second):
        browser.switch_to.window(handle)
        wait(browser, lambda d: settled(d, 2))
        areas[handle] = [
            (c.find_element(By.CSS_SELECTOR, ".name").text, c.get_attribute("data-area"))
            for c in cards(browser)
        ]
    assert areas[first][0][0] == POLYPS[0].name and areas[second][0][0] == BUSI_IMAGE.name
    assert areas[first][1] == areas[second][1]  # the same image in both tabs, the same answer
    browser.close()
    browser.switch_to.window(first)


def test_live_camera_draws_overlays_and_drops_frames(server, browser):
    browser.get(server)
    wait(browser, lambda d: d.find_element(By.ID, "provider").text != "...")
    browser.find_element(By.ID, "camera").click()
    stats = browser.find_element(By.ID, "live-stats")
    wait(browser, lambda d: int(stats.get_attribute("data-frames") or 0) >= 40, timeout=90)
    fps = float(stats.get_attribute("data-fps"))
    text = stats.text
    drawn = browser.execute_script("return live.mask !== null")
    browser.find_element(By.ID, "camera").click()
    assert drawn and fps > 0, text
    assert "frames dropped" in text and browser.find_element(By.ID, "message").text == ""
    if os.environ.get("LVUNET_LIVE_REPORT"):
        Path(os.environ["LVUNET_LIVE_REPORT"]).write_text(
            json.dumps({"fps": fps, "text": text}) + "\n"
        )

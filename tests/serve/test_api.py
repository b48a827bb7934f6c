"""lvunet-serve's HTTP API, in process (a real uvicorn server on a free port, in a thread): outputs equal
lvunet-infer's files byte for byte, re-thresholding runs no model, bad requests get one line and a 4xx,
concurrent clients get their own results, and nothing is left on disk."""

from __future__ import annotations

import http.client
import io
import json
import re
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

uvicorn = pytest.importorskip(
    "uvicorn", reason="lvunet-runtime[serve] is installed in the main .venv"
)

from lvunet_runtime.model_files import resolve_model  # noqa: E402
from lvunet_runtime.segmenter import SegmenterSpec  # noqa: E402
from lvunet_runtime.serve.app import Settings, create_app  # noqa: E402
from lvunet_runtime.serve.cli import allowed_hosts, bind, server_config  # noqa: E402

from tests.helpers import (  # noqa: E402
    BUSI_IMAGE,
    DATA,
    KVASIR_IMAGE,
    assert_one_line_error,
    cli,
    nan_weights_model,
    no_torch_env,
    run_entry,
    start_serve,
)

IMAGES = sorted((DATA / "images").glob("kvasir-seg__*.jpg"))[:4]


class Client:
    """Raw HTTP (any Host header, any body) against one server."""

    def __init__(self, port: int, service) -> None:
        self.port, self.service = port, service

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def ok(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, head, data = self.request(method, path, body, headers)
        assert status == 200, (status, data[:300])
        return head, data

    def runs(self) -> int:
        return json.loads(self.ok("GET", "/api/health")[1])["model_runs"]


@contextmanager
def running(settings: Settings):
    """A server in a thread on a free port; stopped (and its temporary folder removed) on exit."""
    app = create_app(settings)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app, settings.limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield Client(sock.getsockname()[1], app.state.service)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    shutil.copy(resolve_model("polyp"), folder / "polyp-copy.onnx")
    (folder / "broken.onnx").write_bytes(b"this is not an ONNX file")
    nan_weights_model(resolve_model("polyp"), folder / "nan-weights.onnx")
    return folder


@pytest.fixture(scope="module")
def client(models_dir):
    settings = Settings(models_dir=models_dir, max_pixels=4_000_000, max_upload_bytes=3 << 20)
    with running(settings) as client:
        yield client


@pytest.fixture(scope="module")
def infer_outputs(tmp_path_factory) -> dict:
    """lvunet-infer's files for IMAGES at three thresholds (None = the model's)."""
    out = {}
    for threshold in (None, 0.3, 0.7):
        folder = tmp_path_factory.mktemp("infer")
        extra = [] if threshold is None else ["--threshold", threshold]
        result = cli("infer", *IMAGES, "--out", folder, "--json", "--prob", "--overlay", *extra)
        assert result.exit_code == 0, result.stderr
        out[threshold] = folder
    return out


def _query(threshold, output):
    return f"output={output}" + ("" if threshold is None else f"&threshold={threshold}")


@pytest.mark.parametrize("threshold", [None, 0.3, 0.7])
def test_segment_outputs_equal_lvunet_infer_files(client, infer_outputs, threshold):
    folder = infer_outputs[threshold]
    assert len(IMAGES) == 4
    for image in IMAGES:
        data = image.read_bytes()
        for output, suffix in (
            ("mask", "_mask.png"),
            ("probability", "_prob.png"),
            ("overlay", "_overlay.png"),
        ):
            _, body = client.ok("POST", f"/api/segment?{_query(threshold, output)}", data)
            assert body == (folder / f"{image.stem}{suffix}").read_bytes(), (image.name, output)
        head, body = client.ok(
            "POST",
            f"/api/segment?{_query(threshold, 'json')}",
            data,
            {"X-Image-Name": "a%20b%C3%A9.jpg"},
        )
        served, written = json.loads(body), json.loads((folder / f"{image.stem}.json").read_text())
        assert served.pop("input") == "a bé.jpg" and written.pop("input") == str(image)
        assert served == written
        assert head["x-model"] == "polyp" and head["x-provider"] == "CPUExecutionProvider"
        assert float(head["x-inference-ms"]) > 0 and head[
            "x-image-size"
        ] == "{width}x{height}".format(**served)


def test_stored_results_rethreshold_and_zip_without_a_model_run(client, infer_outputs):
    ids = {}
    for image in IMAGES:
        head, _ = client.ok(
            "POST",
            "/api/segment?output=probability",
            image.read_bytes(),
            {"X-Image-Name": image.name},
        )
        ids[image] = head["x-result-id"]
    runs = client.runs()
    for threshold in (0.3, 0.7):
        folder = infer_outputs[threshold]
        for image, key in ids.items():
            _, mask = client.ok("GET", f"/api/results/{key}?{_query(threshold, 'mask')}")
            assert mask == (folder / f"{image.stem}_mask.png").read_bytes()
            _, stats = client.ok("GET", f"/api/results/{key}?{_query(threshold, 'json')}")
            assert (
                json.loads(stats)["area_px"]
                == json.loads((folder / f"{image.stem}.json").read_text())["area_px"]
            )
        query = "&".join(f"ids={key}" for key in ids.values())
        head, body = client.ok("GET", f"/api/results.zip?{query}&threshold={threshold}")
        assert head["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = set(archive.namelist())
            for image in IMAGES:
                for suffix in ("_mask.png", "_overlay.png", "_prob.png"):
                    assert (
                        archive.read(image.stem + suffix)
                        == (folder / f"{image.stem}{suffix}").read_bytes()
                    )
                zipped = json.loads(archive.read(image.stem + ".json"))
                assert zipped["input"] == image.name and zipped["threshold"] == threshold
        assert len(names) == 4 * len(IMAGES)
    assert client.runs() == runs  # re-thresholding, downloads and zips never ran the model


def test_zip_keeps_results_with_the_same_name_apart(client):
    keys = []
    for image in (KVASIR_IMAGE, BUSI_IMAGE):
        head, _ = client.ok(
            "POST", "/api/segment?output=mask", image.read_bytes(), {"X-Image-Name": "same.png"}
        )
        keys.append(head["x-result-id"])
    _, body = client.ok("GET", f"/api/results.zip?ids={keys[0]}&ids={keys[1]}")
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "same_mask.png" in names and "same-2_mask.png" in names


def _png_of_size(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


JPEG = KVASIR_IMAGE.read_bytes()
BAD_REQUESTS = [
    # (method, path, body, headers, status, words in the one-line error)
    ("POST", "/api/segment", b"", {}, 400, "empty upload"),
    ("POST", "/api/segment", b"hello, not an image", {}, 400, "not an image"),
    ("POST", "/api/segment", JPEG[: len(JPEG) // 3], {}, 400, "corrupt or truncated"),
    ("POST", "/api/segment", _png_of_size(3000, 2000), {}, 400, "over the limit"),
    ("POST", "/api/segment", b"x" * (4 << 20), {}, 413, "over the limit of 3 MB"),
    ("POST", "/api/segment", JPEG, {"Content-Length": "99999999999"}, 413, "over the limit"),
    (
        "POST",
        "/api/segment?threshold=1.5",
        JPEG,
        {},
        422,
        "threshold must be a number strictly between 0 and 1",
    ),
    ("POST", "/api/segment?threshold=nan", JPEG, {}, 422, "threshold"),
    ("POST", "/api/segment?threshold=abc", JPEG, {}, 422, "threshold"),
    ("POST", "/api/segment?output=exe", JPEG, {}, 422, "output must be one of"),
    ("POST", "/api/segment?model=nope", JPEG, {}, 404, "no model named 'nope'"),
    ("POST", "/api/segment?model=..%2F..%2Fetc%2Fpasswd", JPEG, {}, 404, "no model named"),
    ("POST", "/api/segment?model=broken.onnx", JPEG, {}, 422, "not a loadable ONNX model"),
    ("POST", "/api/segment?model=nan-weights.onnx", JPEG, {}, 422, "non-finite"),
    ("GET", "/api/models/broken.onnx", None, {}, 422, "cannot be used"),
    ("GET", "/api/results/not-an-id", None, {}, 404, "expired"),
    ("GET", "/api/results.zip?ids=not-an-id", None, {}, 404, "expired"),
    ("GET", "/api/results.zip", None, {}, 422, "ids"),
    ("GET", "/api/segment", None, {}, 405, "Method Not Allowed"),
    ("GET", "/static/../app.py", None, {}, 404, "Not Found"),
    ("GET", "/static/%2e%2e/app.py", None, {}, 404, "Not Found"),
    ("POST", "/api/segment", JPEG, {"Origin": "http://evil.example"}, 403, "cross-origin"),
    ("POST", "/api/segment", JPEG, {"Origin": "null"}, 403, "cross-origin"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_and_one_line(client, method, path, body, headers, status, words):
    code, head, data = client.request(method, path, body, headers)
    assert code == status, data[:300]
    message = json.loads(data)["error"]
    assert words in message and "\n" not in message and "Traceback" not in message
    assert "lvunet-serve-" not in message  # never the temporary folder's path
    assert client.ok("GET", "/api/health")  # and the server is still there


def test_host_header_other_than_the_bound_address_is_refused(client):
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        status, _, _ = client.request("GET", "/api/health", headers={"Host": host})
        assert status == 400
    for host in (f"127.0.0.1:{client.port}", f"localhost:{client.port}"):
        status, _, _ = client.request("GET", "/", headers={"Host": host})
        assert status == 200
    assert allowed_hosts("127.0.0.1", []) == ["127.0.0.1", "localhost"]
    assert "scope.example" in allowed_hosts("192.168.1.5", ["Scope.example"])
    assert "localhost" not in allowed_hosts("192.168.1.5", [])


def test_models_listing_and_folder_models(client):
    listing = json.loads(client.ok("GET", "/api/models")[1])
    names = {m["name"]: m["source"] for m in listing["models"]}
    assert names["polyp"] == names["breast-ultrasound"] == "bundled"
    assert names["polyp-copy.onnx"] == "folder" and listing["default"] == "polyp"
    info = json.loads(client.ok("GET", "/api/models/breast-ultrasound")[1])
    assert info["input_size"] == [256, 256] and 0 < info["threshold"] < 1
    _, same = client.ok("POST", "/api/segment?output=mask&model=polyp-copy.onnx", JPEG)
    assert same == client.ok("POST", "/api/segment?output=mask", JPEG)[1]
    _, busi = client.ok("POST", "/api/segment?output=mask&model=breast-ultrasound", JPEG)
    assert busi != same


def test_concurrent_clients_get_their_own_results(client):
    images = [*IMAGES, BUSI_IMAGE]
    serial = {
        image: client.ok("POST", "/api/segment?output=mask", image.read_bytes())[1]
        for image in images
    }
    jobs = images * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: client.ok("POST", "/api/segment?output=mask", i.read_bytes())[1], jobs
            )
        )
    assert answers == [serial[image] for image in jobs]


def test_internal_error_is_one_line_and_the_server_survives(client, monkeypatch, capfd):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated fault\nsecond line")

    monkeypatch.setattr(client.service, "render", broken)
    status, _, data = client.request(
        "POST", "/api/segment", JPEG, {"X-Image-Name": "patient-42.jpg"}
    )
    assert status == 500 and "internal error (RuntimeError)" in json.loads(data)["error"]
    monkeypatch.undo()
    assert client.ok("POST", "/api/segment?output=mask", JPEG)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "lvunet-serve" in line]
    assert lines == [
        "lvunet-serve: internal error on /api/segment: RuntimeError: simulated fault"
    ], err
    assert "Traceback" not in err and "patient-42" not in err


def test_uploads_are_decoded_in_memory_and_leave_nothing_on_disk(tmp_path, monkeypatch):
    """No temporary file at all (an upload under descriptor pressure cannot fail on one)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opened = []
    real_open = open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    with running(Settings()) as client:
        client.ok("GET", "/api/health")  # the model is loaded (its file read) before watching
        monkeypatch.setattr("builtins.open", watching_open)
        head, _ = client.ok("POST", "/api/segment", JPEG)
        client.ok("GET", f"/api/results/{head['x-result-id']}?output=overlay")
        client.ok("GET", f"/api/results.zip?ids={head['x-result-id']}")
        assert client.request("POST", "/api/segment", b"broken")[0] == 400
        monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [] and opened == []


def test_store_drops_the_oldest_results_past_its_budget():
    with running(Settings(store_bytes=600_000)) as client:  # a result is ~256 KB of output + upload
        keys = [client.ok("POST", "/api/segment", JPEG)[0]["x-result-id"] for _ in range(4)]
        assert client.request("GET", f"/api/results/{keys[0]}")[0] == 404
        assert client.request("GET", f"/api/results/{keys[-1]}")[0] == 200


def test_openapi_documents_the_api_and_needs_no_cdn(client):
    schema = json.loads(client.ok("GET", "/openapi.json")[1])
    assert {"/api/segment", "/api/results/{key}", "/api/results.zip", "/api/health"} <= set(
        schema["paths"]
    )
    assert (
        "application/octet-stream"
        in schema["paths"]["/api/segment"]["post"]["requestBody"]["content"]
    )
    page = client.ok("GET", "/")[1].decode()
    assert "not a medical device" in page
    # Everything is served locally: no script, style, font or request that names another server.
    remote = re.compile(
        r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import|fetch\(\s*["'`]https?:"""
    )
    for asset in ("/", "/static/app.js", "/static/style.css", "/static/icon.svg"):
        text = client.ok("GET", asset)[1].decode()
        assert not remote.search(text), (asset, remote.search(text))
    assert remote.search('<script src="https://cdn.example/x.js">')  # the check can fail


def test_cli_refusals_are_one_line(tmp_path):
    import tempfile

    def folders():
        return set(Path(tempfile.gettempdir()).glob("lvunet-serve-*"))

    before = folders()
    env = no_torch_env(tmp_path, blocked=("fastapi", "uvicorn", "torch", "onnx"))
    result = run_entry("serve", ["--port", "0"], env=env)
    assert_one_line_error(result.returncode, result.stderr, "needs its extra", "lvunet-serve")
    assert "lvunet-runtime[serve]" in result.stderr
    taken = bind("127.0.0.1", 0)
    try:
        result = cli("serve", "--port", taken.getsockname()[1])
        assert_one_line_error(result.exit_code, result.stderr, "in use", "lvunet-serve")
    finally:
        taken.close()
    result = cli("serve", "--model", "nope", "--port", "0")
    assert_one_line_error(result.exit_code, result.stderr, "no model named", "lvunet-serve")
    result = cli("serve", "--models-dir", tmp_path / "missing", "--port", "0")
    assert_one_line_error(result.exit_code, result.stderr, "not a folder", "lvunet-serve")
    result = cli("serve", "--tta", "sideways", "--port", "0")
    assert_one_line_error(result.exit_code, result.stderr, "--tta must be one of", "lvunet-serve")
    assert folders() <= before  # no refusal leaves the server's temporary folder behind


def test_tta_server_matches_lvunet_infer_with_tta(tmp_path):
    folder = tmp_path / "infer"
    assert (
        cli("infer", KVASIR_IMAGE, "--out", folder, "--tta", "hv", "--threshold", "0.4").exit_code
        == 0
    )
    with running(Settings(segmenter=SegmenterSpec(tta="hv"))) as client:
        _, mask = client.ok("POST", "/api/segment?output=mask&threshold=0.4", JPEG)
    assert mask == (folder / f"{KVASIR_IMAGE.stem}_mask.png").read_bytes()
    plain = tmp_path / "plain"
    assert cli("infer", KVASIR_IMAGE, "--out", plain, "--threshold", "0.4").exit_code == 0
    assert mask != (plain / f"{KVASIR_IMAGE.stem}_mask.png").read_bytes()


@pytest.mark.slow
def test_lvunet_serve_starts_serves_and_stops_cleanly(tmp_path):
    """The real entry point in a torch-free interpreter: first line is the URL; SIGINT stops it with 0."""
    import signal
    import urllib.request

    process, url = start_serve(["--port", "0"], env=no_torch_env(tmp_path))
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "not a medical device" in response.read().decode()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()


def test_health_names_the_provider_and_no_adapter_on_the_cpu(client):
    health = json.loads(client.ok("GET", "/api/health")[1])
    assert health["providers"][0] == "CPUExecutionProvider" and health["adapter"] is None


def test_the_page_comes_with_its_model_list_and_where_it_runs_in_plain_words(client):
    _, html = client.ok("GET", "/")
    page = html.decode()
    assert '<option value="polyp" selected>polyp</option>' in page
    assert '<option value="breast-ultrasound">breast-ultrasound</option>' in page
    assert '<option value="polyp-copy.onnx">polyp-copy.onnx (folder)</option>' in page
    assert 'title="CPUExecutionProvider">this computer&#x27;s processor</span>' in page
    assert "green outline is what the model found" in page  # one line of help under the drop zone
    health = json.loads(client.ok("GET", "/api/health")[1])
    assert health["runs_on"] == "this computer's processor"

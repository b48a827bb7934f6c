"""The server's part of the bad-input corpus: attacks on a real ``lvunet-serve`` process with small limits
(1 s for headers, 2 s for a body, 16 connections, 1 MB uploads), all on 127.0.0.1 and bounded in count
and time. After each attack ``/api/health`` answers 200 within a bound, stderr holds no traceback, and
the attacker's connections were closed by the server. Then: a descriptor limit lowered in the server's
process, SIGTERM with an upload in flight, and the in-process cases (multipart forms, a model file
replaced, streamed zips, the server's own faults as 5xx).

Case classes (cause in each name): silent connections, headers or body trickled, connection floods,
descriptor pressure, shutdown with work in flight, request shapes the API did not read, stale models.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import signal
import socket
import time
import zipfile
from contextlib import closing

import pytest

uvicorn = pytest.importorskip(
    "uvicorn", reason="lvunet-runtime[serve] is installed in the main .venv"
)

from lvunet_runtime.model_files import resolve_model  # noqa: E402
from lvunet_runtime.serve.app import Settings, zip_stream  # noqa: E402
from lvunet_runtime.serve.limits import Limits, LoopFaults, fit_connections  # noqa: E402

from tests.helpers import KVASIR_IMAGE, nan_weights_model, start_serve  # noqa: E402
from tests.serve.test_api import running  # noqa: E402

JPEG = KVASIR_IMAGE.read_bytes()
HEALTH_BOUND_S = 6.0
LIMITS = [
    "--header-timeout",
    "1",
    "--body-timeout",
    "2",
    "--max-connections",
    "16",
    "--max-upload-mb",
    "1",
]


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def healthy_within(port: int, bound: float = HEALTH_BOUND_S) -> float:
    """Seconds until ``/api/health`` answered 200 (fails past ``bound``)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < bound:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/health")
            response = connection.getresponse()
            last = response.status
            response.read()
            connection.close()
            if last == 200:
                return time.monotonic() - start
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"/api/health did not answer 200 within {bound} s (last: {last})")


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\0" * 8)  # no TIME_WAIT pile-up
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``within`` s, and what it sent before."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
        return True, received
    except TimeoutError:
        return False, received
    except OSError:  # reset: closed too
        return True, received


@pytest.fixture(scope="module")
def server():
    process, url = start_serve(["--port", "0", *LIMITS])
    yield process, _port(url)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    finally:
        process.kill()
    stderr = process.stderr.read()
    assert "Traceback" not in stderr, stderr


def test_a_connection_that_sends_nothing_is_answered_408_and_closed(server):
    _, port = server
    with closing(_connect(port)) as sock:
        start = time.monotonic()
        closed, received = _closed_by_server(sock, 5)
        assert closed and 0.8 < time.monotonic() - start < 4
        assert (
            received.startswith(b"HTTP/1.1 408") and b"headers not received within 1 s" in received
        )
    healthy_within(port)


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(server):
    """A deadline from the first byte, not from the last: trickling bytes never extends it."""
    _, port = server
    request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    with closing(_connect(port)) as sock:
        start, closed = time.monotonic(), False
        for byte in request:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 5:
                break
            time.sleep(0.05)
        closed = closed or _closed_by_server(sock, 2)[0]
        assert closed and time.monotonic() - start < 4
    healthy_within(port)


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_body_timeout(server):
    _, port = server
    head = (
        b"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    with closing(_connect(port)) as sock:
        sock.sendall(head)
        start, closed = time.monotonic(), False
        while time.monotonic() - start < 6:
            try:
                sock.send(b"x")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.settimeout(0.01)
            try:
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except OSError:
                closed = True
                break
        assert closed and 1.5 < time.monotonic() - start < 5
    healthy_within(port)


def test_a_flood_of_idle_connections_gets_503_past_the_cap_and_health_recovers(server):
    _, port = server
    socks = [_connect(port) for _ in range(48)]  # 3x the cap of 16
    try:
        time.sleep(0.3)
        refused = 0
        for sock in socks:
            sock.settimeout(0.05)
            try:
                if sock.recv(4096).startswith(b"HTTP/1.1 503"):
                    refused += 1
            except TimeoutError:
                pass
        assert refused >= 48 - 16  # the cap held: the rest answered at once, not queued
        assert healthy_within(port) < HEALTH_BOUND_S  # as the held ones time out, health gets in
    finally:
        for sock in socks:
            sock.close()
    healthy_within(port)


def test_a_client_that_leaves_mid_upload_leaves_no_trace(server):
    _, port = server
    for _ in range(5):
        with closing(_connect(port)) as sock:
            sock.sendall(
                b"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000\r\n\r\n"
                + JPEG[:1000]
            )
    healthy_within(port)


def test_an_upload_over_the_limit_is_413_without_reading_it(server):
    _, port = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/api/segment")
    connection.putheader("Content-Length", str(5 << 20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"over the limit of 1 MB" in response.read()
    connection.close()
    healthy_within(port)


def test_headers_larger_than_h11_allows_are_a_400_not_a_hang(server):
    _, port = server
    with closing(_connect(port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000)  # no end
        closed, received = _closed_by_server(sock, 5)
        assert closed and received.startswith(b"HTTP/1.1 400")
    healthy_within(port)


def test_descriptors_lowered_in_the_server_process_fit_the_cap_and_never_spill_tracebacks():
    """RLIMIT_NOFILE 96 in the server's process: the cap is lowered to fit (one warning line), a flood
    of 150 connections is answered (503 past the cap), never an accept() traceback; health recovers."""
    resource = pytest.importorskip("resource")

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    process, url = start_serve(
        ["--port", "0", "--max-connections", "500", "--header-timeout", "1"], preexec_fn=low_limit
    )
    port = _port(url)
    try:
        socks = []
        for _ in range(150):
            try:
                socks.append(_connect(port))
            except OSError:
                break
        time.sleep(0.5)
        for sock in socks:
            sock.close()
        healthy_within(port)
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        stderr = process.stderr.read()
    finally:
        process.kill()
    assert "Traceback" not in stderr, stderr
    assert "--max-connections lowered to" in stderr and "(ulimit -n)" in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 3, stderr


def test_sigterm_with_an_upload_in_flight_exits_within_the_shutdown_bound():
    process, url = start_serve(["--port", "0", "--body-timeout", "60", "--shutdown-timeout", "1"])
    port = _port(url)
    try:
        sock = _connect(port)
        sock.sendall(
            b"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
            + JPEG[:1000]
        )
        time.sleep(0.3)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        assert time.monotonic() - start < 5
        assert code in (0, 130)
        assert "Traceback" not in process.stderr.read()
        sock.close()
    finally:
        process.kill()


# In process (a server in a thread): request shapes, stale models, zips, the server's own faults.


def _multipart(field: str, filename: str, data: bytes, boundary: str = "b0undary") -> tuple:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_multipart_form_upload_is_the_same_as_the_raw_body():
    with running(Settings()) as client:
        _, raw = client.ok("POST", "/api/segment?output=mask", JPEG)
        body, headers = _multipart("file", "scan-7.jpg", JPEG)
        _, form = client.ok("POST", "/api/segment?output=mask", body, headers)
        assert form == raw
        _, meta = client.ok("POST", "/api/segment", body, headers)
        assert json.loads(meta)["input"] == "scan-7.jpg"  # the form's file name names the image
        other_field, headers = _multipart("image", "a.jpg", JPEG)  # any field name
        assert client.ok("POST", "/api/segment?output=mask", other_field, headers)[1] == raw


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nhello\r\n--x--\r\n",
            "x",
            "found 0",
        ),
        (b"no boundary here", "x", "found 0"),
        (b"", "", "empty upload"),
    ],
    ids=["a form without a file", "a form that is not one", "a form without its boundary"],
)
def test_malformed_forms_are_one_line_400s(body, content_type, words):
    headers = {
        "Content-Type": f"multipart/form-data; boundary={content_type}"
        if content_type
        else "multipart/form-data"
    }
    with running(Settings()) as client:
        status, _, data = client.request("POST", "/api/segment", body, headers)
        assert status == 400, data
        message = json.loads(data)["error"]
        assert "\n" not in message and (words in message or "multipart" in message), message


def test_two_files_in_one_form_are_refused_by_name():
    one, _ = _multipart("file", "a.jpg", JPEG)
    two, headers = _multipart("second", "b.jpg", JPEG)
    body = one.removesuffix(b"--b0undary--\r\n") + two
    with running(Settings()) as client:
        status, _, data = client.request("POST", "/api/segment", body, headers)
        assert status == 400 and "found 2: 'file', 'second'" in json.loads(data)["error"]


def _models_folder(tmp_path, name: str):
    """A --models-dir holding the bundled polyp model as ``name``."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(resolve_model("polyp"), folder / name)
    return folder


def test_a_replaced_model_file_is_served_by_its_new_hash_and_said_so(tmp_path, capfd):
    folder = _models_folder(tmp_path, "clinic.onnx")
    with running(Settings(models_dir=folder)) as client:
        head, before = client.ok("POST", "/api/segment?model=clinic.onnx&output=probability", JPEG)
        old_identity = head["x-model-identity"]
        result_id = head["x-result-id"]
        shutil.copy(resolve_model("breast-ultrasound"), folder / "clinic.onnx")
        head, after = client.ok("POST", "/api/segment?model=clinic.onnx&output=probability", JPEG)
        assert head["x-model-identity"] != old_identity and after != before
        described = json.loads(client.ok("GET", "/api/models/clinic.onnx")[1])
        assert described["identity"] == head["x-model-identity"]
        # the earlier result keeps the weights that made it
        kept = client.ok("GET", f"/api/results/{result_id}?output=probability")[1]
        assert kept == before
        assert json.loads(client.ok("GET", "/api/health")[1])["model_reloads"] == 1
        (folder / "clinic.onnx").unlink()
        status, _, _ = client.request("POST", "/api/segment?model=clinic.onnx", JPEG)
        assert status == 404
    err = capfd.readouterr().err
    assert f"clinic.onnx changed on disk: now serving {head['x-model-identity']}" in err, err


def test_a_model_file_rewritten_with_the_same_bytes_is_not_reloaded(tmp_path):
    folder = _models_folder(tmp_path, "same.onnx")
    with running(Settings(models_dir=folder)) as client:
        client.ok("POST", "/api/segment?model=same.onnx", JPEG)
        (folder / "same.onnx").write_bytes(resolve_model("polyp").read_bytes())  # new mtime
        client.ok("POST", "/api/segment?model=same.onnx", JPEG)
        assert json.loads(client.ok("GET", "/api/health")[1])["model_reloads"] == 0


def test_a_model_file_replaced_by_a_broken_one_is_refused_not_served_stale(tmp_path):
    folder = _models_folder(tmp_path, "m.onnx")
    with running(Settings(models_dir=folder)) as client:
        client.ok("POST", "/api/segment?model=m.onnx", JPEG)
        nan_weights_model(resolve_model("polyp"), folder / "m.onnx")
        status, _, data = client.request("POST", "/api/segment?model=m.onnx", JPEG)
        assert status == 422 and "cannot be used" in json.loads(data)["error"]


def test_a_zip_of_many_results_is_streamed_entry_by_entry():
    with running(Settings(store_bytes=64 << 20)) as client:
        ids = [client.ok("POST", "/api/segment", JPEG)[0]["x-result-id"] for _ in range(6)]
        service = client.service
        results = [service.store.get(key) for key in ids]
        chunks = list(zip_stream(service, results, None))
        largest_entry = max(
            len(service.render(results[0], o, None)[0]) for o in ("mask", "overlay")
        )
        assert len(chunks) == 6 * 4 + 1
        assert max(len(c) for c in chunks) < largest_entry + 1000  # never the whole archive at once
        with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
            assert archive.testzip() is None and len(archive.namelist()) == 24
        query = "&".join(f"ids={key}" for key in ids)
        head, data = client.ok("GET", f"/api/results.zip?{query}")
        assert "content-length" not in {k.lower() for k in head}  # chunked: sent as it is made
        assert zipfile.ZipFile(io.BytesIO(data)).namelist() == archive.namelist()


@pytest.mark.parametrize(
    "fault, status",
    [
        (OSError(24, "Too many open files"), 503),
        (OSError(23, "Too many open files in system"), 503),
        (MemoryError(), 503),
        (OSError(5, "Input/output error"), 500),
    ],
    ids=["EMFILE", "ENFILE", "out of memory", "EIO"],
)
def test_the_servers_own_faults_are_5xx_never_a_bad_upload(monkeypatch, capfd, fault, status):
    import lvunet_runtime.image as image

    def failing(*args, **kwargs):
        raise fault

    with running(Settings()) as client:
        client.ok("GET", "/api/health")
        monkeypatch.setattr(image.Image, "open", failing)
        code, _, data = client.request("POST", "/api/segment", JPEG)
        monkeypatch.undo()
        assert code == status, data
        assert client.ok("GET", "/api/health")
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "lvunet-serve" in line]
    assert "Traceback" not in err and len(lines) == 1, err


def test_connection_cap_is_lowered_to_the_descriptor_limit():
    resource = pytest.importorskip("resource")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fitted, line = fit_connections(Limits(max_connections=soft * 2))
    assert fitted.max_connections < soft and "lowered to" in line
    same, none = fit_connections(Limits(max_connections=4))
    assert same.max_connections == 4 and none is None


def test_loop_faults_are_one_rate_limited_line(capfd):
    faults = LoopFaults(every_s=60)
    for _ in range(1000):
        faults(
            None,
            {
                "message": "socket.accept() out of system resource",
                "exception": OSError(24, "Too many open files"),
            },
        )
    err = capfd.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "accept() out of system resource" in err[0] and faults.suppressed == 999
    )


def test_the_guarded_protocol_is_what_lvunet_serve_runs():
    from lvunet_runtime.serve.cli import server_config

    config = server_config(object(), Limits(shutdown_timeout_s=3))
    assert config.http.__name__ == "GuardedH11Protocol" and config.timeout_graceful_shutdown == 3

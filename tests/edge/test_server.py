"""The real server on a loopback port, spoken to over HTTP."""
import base64
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra")
pytest.importorskip("uvicorn", reason="the server needs the serve extra")

from synthetic import part_image  # noqa: E402

MAX_BODY_MB = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "insightad_edge.cli", "serve", "--model", str(model_path), "--port", str(port),
         "--workers", "2", "--max-body-mb", str(MAX_BODY_MB)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stdout.read())
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("server did not become healthy within 60 s")
    yield url
    process.terminate()
    log = process.communicate(timeout=30)[0]
    assert "Traceback" not in log, log


def post(url: str, body: bytes, path: str = "/infer") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def encoded(image: np.ndarray) -> bytes:
    return json.dumps({"image": base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()}).encode()


def test_original_contract(server):
    image = cv2.resize(part_image(np.random.default_rng(0), 256)[0], (1024, 1024))
    status, answer = post(server, encoded(image))
    assert status == 200
    assert isinstance(answer["Anomaly"], bool)
    assert answer["Anomaly"] == (answer["score"] > answer["threshold"])
    assert {"model", "latency_ms"} <= set(answer)


def test_health_and_model(server):
    with urllib.request.urlopen(server + "/health") as response:
        assert json.loads(response.read())["status"] == "ok"
    with urllib.request.urlopen(server + "/model") as response:
        assert json.loads(response.read())["schema_version"] == 2


@pytest.mark.parametrize("body, status, fragment", [
    (b"this is not json", 400, "not JSON"),
    (b'{"picture": "abc"}', 400, 'no "image" key'),
    (b'["image"]', 400, 'no "image" key'),
    (b'{"image": 42}', 400, "base64 string"),
    (b'{"image": "###not-base64###"}', 400, "not valid base64"),
    (b'{"image": ""}', 400, "empty"),
    (json.dumps({"image": base64.b64encode(b"plain text, not an image").decode()}).encode(), 422, "not a readable image"),
])
def test_bad_requests_get_4xx_with_a_json_reason(server, body, status, fragment):
    got, answer = post(server, body)
    assert got == status and fragment in answer["error"]


def test_oversized_body_is_refused_before_it_is_read(server):
    """The declared length alone is enough to refuse: the server answers without waiting for the body."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {int(MAX_BODY_MB * 1024 * 1024) + 1}\r\n\r\n".encode() + b'{"image": "')
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]


def test_unknown_route_and_method(server):
    assert post(server, b"{}", path="/nowhere")[0] == 404
    request = urllib.request.Request(server + "/infer")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request)
    assert error.value.code == 405 and "error" in json.loads(error.value.read())


def test_hundreds_of_requests_from_several_threads(server):
    rng = np.random.default_rng(1)
    bodies = [encoded(part_image(rng, 128)[0]) for _ in range(8)] + [b"junk"]
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: post(server, bodies[i % len(bodies)])[0], range(270)))
    assert all(s < 500 for s in statuses)
    assert statuses.count(200) == 240 and statuses.count(400) == 30


def test_request_while_another_is_in_flight(server):
    """A slow upload holds one connection open; a second request is answered meanwhile."""
    body = encoded(part_image(np.random.default_rng(2), 128)[0])
    host, port = server.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    status, answer = post(server, body)
    assert status == 200 and isinstance(answer["Anomaly"], bool)
    slow.sendall(body[10:])
    reply = b""
    while b"Anomaly" not in reply:
        chunk = slow.recv(4096)
        if not chunk:
            break
        reply += chunk
    slow.close()
    assert reply.startswith(b"HTTP/1.1 200") and b'"Anomaly"' in reply


def test_data_url_prefix_is_accepted(server):
    png = cv2.imencode(".png", part_image(np.random.default_rng(3), 128)[0])[1].tobytes()
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()}).encode()
    status, answer = post(server, body)
    assert status == 200 and isinstance(answer["Anomaly"], bool)

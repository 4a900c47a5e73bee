"""The real server on a loopback port, spoken to over HTTP."""
import base64
import http.client
import json
import os
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

from loopback import free_port  # noqa: E402
from synthetic import corrupt_header_bmp, part_image  # noqa: E402

MAX_BODY_MB = 0.5


def clean_environment() -> dict:
    """The environment without the user's INSIGHTAD_* settings: each test says what it serves."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTAD_")}


@pytest.fixture(scope="module")
def server(model_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "insightad_edge.cli", "serve", "--model", str(model_path), "--port", str(port),
         "--workers", "2", "--max-body-mb", str(MAX_BODY_MB)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=clean_environment())
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
    (json.dumps({"image": base64.b64encode(corrupt_header_bmp()).decode()}).encode(), 422, "its header is corrupt"),
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
    slow = socket.create_connection((host, int(port)), timeout=30)
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


def start(model_path, *extra, env=None, port=None):
    """A real server on a free loopback port (or PORT); returns (process, url) once /health answers."""
    port = port or free_port()
    process = subprocess.Popen([sys.executable, "-m", "insightad_edge.cli", "serve", "--model", str(model_path),
                                "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**clean_environment(), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return process, url
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stdout.read())
            time.sleep(0.2)
    process.kill()
    pytest.fail("server did not become healthy")


def request(url, body=None, headers=None, method=None):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_api_key(model_path):
    process, url = start(model_path, env={"INSIGHTAD_API_KEY": "s3cret"})
    try:
        body = encoded(part_image(np.random.default_rng(4), 128)[0])
        status, headers, answer = request(url + "/infer", body)
        assert status == 401 and "API key" in json.loads(answer)["error"] and headers["www-authenticate"] == "Bearer"
        assert request(url + "/infer", body, {"X-API-Key": "wrong"})[0] == 401
        assert request(url + "/model")[0] == 401
        assert request(url + "/infer", body, {"Authorization": "Bearer s3cret"})[0] == 200
        assert request(url + "/infer", body, {"X-API-Key": "s3cret"})[0] == 200
        assert request(url + "/health")[0] == 200  # open for orchestrators
        assert request(url + "/health", method="HEAD")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_threshold_can_be_overridden_as_for_score_and_watch(model_path):
    """The model file cannot be edited (its seal would break): a line runs at another threshold by option."""
    process, url = start(model_path, "--threshold", "0")
    try:
        status, _, answer = request(url + "/infer", encoded(part_image(np.random.default_rng(5), 128)[0]))
        answer = json.loads(answer)
        assert status == 200 and answer["threshold"] == 0.0 and answer["Anomaly"] is True
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_another_model_put_where_the_servers_model_was_is_said_on_its_page_and_in_its_log(model_path, tmp_path):
    """A new export put at a running server's --model path is used from its next start; meanwhile the server
    says so, where it said nothing and answered with the old model."""
    import shutil

    model = tmp_path / "part.onnx"
    shutil.copy(model_path, model)
    process, url = start(model)
    try:
        body = encoded(part_image(np.random.default_rng(6), 128)[0])
        assert json.loads(request(url + "/api/summary")[2])["trouble"] == []
        assert b"insightad_model_file_current 1.0" in request(url + "/metrics")[2]
        model.write_bytes(model.read_bytes() + b"\0")  # another file now
        assert b"insightad_model_file_current 0.0" in request(url + "/metrics")[2]  # a scrape looks by itself
        status, _, answer = request(url + "/infer", body)
        assert status == 200  # answered by the model it loaded
        trouble = json.loads(request(url + "/api/summary")[2])["trouble"]
        assert len(trouble) == 1 and "holds another model now: this server still judges with the model it loaded" \
            in trouble[0] and "restart it" in trouble[0]
        shutil.copy(model_path, model)
        assert json.loads(request(url + "/api/summary")[2])["trouble"] == []
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert output.count("holds another model now") == 1 and "holds the model in service again" in output


def test_idle_clients_are_cut_and_a_full_queue_answers_503(model_path):
    process, url = start(model_path, "--client-timeout-s", "1", "--workers", "1", "--max-queue", "0")
    try:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            idle.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            began = time.monotonic()
            assert idle.recv(1024) == b""  # closed by the server
            assert time.monotonic() - began < 5
        body = encoded(cv2.resize(part_image(np.random.default_rng(5), 128)[0], (1024, 1024)))
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: request(url + "/infer", body), range(12)))
        statuses = [a[0] for a in answers]
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        refused = next(a for a in answers if a[0] == 503)
        assert int(refused[1]["retry-after"]) >= 1 and "waiting" in json.loads(refused[2])["error"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_frame_without_a_part_gets_422_with_the_reason(server):
    empty = np.clip(200 + np.random.default_rng(6).normal(0, 3, (128, 128)), 0, 255).astype(np.uint8)
    status, answer = post(server, encoded(empty))
    assert status == 422 and answer["error"].startswith("not inspectable")


def test_an_image_bomb_is_refused_before_it_is_decoded(server):
    """A 0.2 MB PNG that claims 13000x13000 pixels is refused by the decoder's limit (the message says so: the
    check after decoding words it otherwise), and the server answers the next part as before."""
    bomb = cv2.imencode(".png", np.zeros((13000, 13000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    status, answer = post(server, json.dumps({"image": base64.b64encode(bomb).decode()}).encode())
    assert status == 422 and "refused before decoding" in answer["error"], answer
    status, answer = post(server, encoded(cv2.resize(part_image(np.random.default_rng(0), 256)[0], (1024, 1024))))
    assert status == 200 and answer["Anomaly"] is False


def test_a_model_that_fails_on_a_frame_answers_500_with_the_reason_never_a_verdict(model_path, tmp_path):
    from models import write_fragile_model

    from insightad_edge import Detector

    fragile = write_fragile_model(tmp_path / "fragile.onnx", Detector(model_path).metadata)
    process, url = start(fragile)
    try:
        status, _, answer = request(url + "/infer", encoded(part_image(np.random.default_rng(5), 128)[0]))
        assert status == 500 and "NaN or infinity" in json.loads(answer)["error"] and b"Anomaly" not in answer
        _, _, health = request(url + "/health")
        assert json.loads(health)["drift"]["statistics"]["error_rate"] == 1.0  # counted as an error, not a part
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_busy_port_is_exit_2(model_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "insightad_edge.cli", "serve", "--model", str(model_path),
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot listen" in done.stderr and "Traceback" not in done.stderr


def raw_request(url: str, body: bytes, content_type: str, path: str = "/infer") -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "----insightad-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nline 3\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_what_clients_actually_send_gets_the_same_verdict(server):
    png = cv2.imencode(".png", part_image(np.random.default_rng(21), 128, defect=True)[0])[1].tobytes()
    status, original = post(server, json.dumps({"image": base64.b64encode(png).decode()}).encode())
    assert status == 200
    wrapped = base64.encodebytes(png).decode()  # what `base64 part.png` prints: lines of 76
    assert "\n" in wrapped
    answers = [post(server, json.dumps({"image": wrapped}).encode()),
               raw_request(server, *multipart("image", "part.png", png)),
               raw_request(server, png, "image/png"),
               raw_request(server, png, "application/octet-stream")]
    for status, answer in answers:
        assert status == 200, answer
        assert answer["Anomaly"] == original["Anomaly"] and answer["score"] == original["score"]
    assert raw_request(server, *multipart("other", "", b""))[0] == 400
    assert raw_request(server, b"", "image/png")[0] == 400
    assert raw_request(server, *multipart("upload", "part.png", png))[0] == 200  # the form's only file
    body, kind = multipart("front", "front.png", png)
    boundary = kind.split("boundary=")[1]
    two = body.replace(f"--{boundary}--".encode(), (  # two files, neither named image: which is the part?
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"back\"; filename=\"back.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--".encode())
    status, answer = raw_request(server, two, kind)
    assert status == 400 and "no image field" in answer["error"]


def test_overlay_on_request(server):
    png = cv2.imencode(".png", part_image(np.random.default_rng(22), 128)[0])[1].tobytes()
    status, answer = raw_request(server, png, "image/png", path="/infer?overlay=1")
    assert status == 200
    overlay = cv2.imdecode(np.frombuffer(base64.b64decode(answer["overlay"]), np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (128, 128, 3)
    assert "overlay" not in raw_request(server, png, "image/png")[1]
    assert "overlay" in raw_request(server, png, "image/png", path="/infer?overlay=true")[1]
    assert "overlay" not in raw_request(server, png, "image/png", path="/infer?overlay=0")[1]
    status, answer = raw_request(server, png, "image/png", path="/infer?overlay=please")
    assert status == 400 and "query overlay" in answer["error"]


def test_metrics_parse_and_count_what_was_sent(model_path):
    from prometheus_client.parser import text_string_to_metric_families

    process, url = start(model_path)
    try:
        rng = np.random.default_rng(23)
        good = [encoded(part_image(rng, 128)[0]) for _ in range(5)]
        empty = encoded(np.clip(200 + rng.normal(0, 3, (128, 128)), 0, 255).astype(np.uint8))
        sent = [request(url + "/infer", body)[0] for body in good + [empty, b"junk"]]
        assert sent == [200] * 5 + [422, 400]
        status, headers, text = request(url + "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text.decode()) for s in family.samples}
        assert samples[("insightad_requests_total", (("code", "200"), ("route", "/infer")))] == 5
        assert samples[("insightad_requests_total", (("code", "422"), ("route", "/infer")))] == 1
        assert samples[("insightad_requests_total", (("code", "400"), ("route", "/infer")))] == 1
        verdicts = {k[1][0][1]: v for k, v in samples.items() if k[0] == "insightad_verdicts_total"}
        assert verdicts["ok"] + verdicts["defect"] == 5 and verdicts["not_inspectable"] == 1
        assert samples[("insightad_score_count", ())] == 5
        assert samples[("insightad_stage_seconds_count", (("stage", "reconstruct"),))] == 5
        assert samples[("insightad_drift_level", ())] == 0
        info = next(k for k in samples if k[0] == "insightad_model_info")
        assert dict(info[1])["sha256"] == __import__("insightad_edge").Detector(model_path).sha256
        health = json.loads(request(url + "/health")[2])
        assert health["status"] == "ok" and health["drift"]["level"] == "ok" and health["drift"]["reference"]
    finally:
        process.terminate()
        process.wait(timeout=30)

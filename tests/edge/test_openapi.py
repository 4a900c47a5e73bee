"""`/openapi.json` says what the server does: schemathesis reads it from a real server on loopback, sends what it
describes and what it forbids, and checks every answer against it (status, content type, body, headers)."""
import json
import subprocess
import sys
from pathlib import Path

from test_server import request, start  # skips this module without the serve extra

# a schema-valid /infer body is rarely an image: 422 (no verdict) is its right answer there, and schemathesis's warning
# that the operation "mostly rejected" its data is expected. Any warning elsewhere fails the run
CONFIG = """
warnings = { fail-on = true }

[[operations]]
include-path = "/infer"
checks.positive_data_acceptance.expected-statuses = [200, 422]
warnings = false
"""


def test_the_server_keeps_the_api_it_publishes(model_path, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    process, url = start(model_path)
    try:
        schema = json.loads(request(url + "/openapi.json")[2])
        infer = schema["paths"]["/infer"]["post"]
        assert set(infer["requestBody"]["content"]) == {"application/json", "multipart/form-data", "image/*",
                                                        "application/octet-stream"}
        assert infer["responses"]["422"]["content"]["application/json"]["schema"]["required"] == ["error"]
        assert "head" not in schema["paths"]["/health"]  # one operation id per operation: HEAD is GET without a body
        status, headers, _ = request(url + "/infer", method="GET")
        assert status == 405 and headers["allow"] == "POST"  # RFC 9110: a 405 names the methods the resource takes
        status, headers, _ = request(url + "/health", body=b"", method="POST")
        assert status == 405 and set(headers["allow"].split(", ")) == {"GET", "HEAD"}

        done = subprocess.run([str(Path(sys.executable).with_name("schemathesis")), "--no-color", "--config-file",
                               str(config), "run", url + "/openapi.json", "--max-examples", "40", "--seed", "7"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert "7/7" in done.stdout  # every operation tested: infer, health, model, metrics, page, last, summary
    finally:
        process.terminate()
        process.wait(timeout=30)


"""Defaults the command line and the server share, defined once: the CLI's options are generated from these."""
from __future__ import annotations

import os
from dataclasses import dataclass

API_KEY_ENV = "INSIGHTAD_API_KEY"
PORT_ENV = "INSIGHTAD_PORT"
SOURCE_ENV = "INSIGHTAD_SOURCE"  # `watch`'s SOURCE when not typed: kept out of the command line `ps` shows
DEFAULT_LOG = "inspections.db"  # `watch` writes its inspection log here unless told otherwise
SCORE_KEYS = ("path", "score", "threshold", "anomaly", "error")  # `score`'s rows: users' scripts read them; add, never rename
# The largest frame judged: above the largest area-scan sensors (151 MP); beyond it a frame is a mistake or a
# decompression bomb (a PNG of 20000x20000 zeros is 0.4 MB and decodes to 400 MB, 2 GB once in float).
MAX_FRAME_PIXELS = 160_000_000


@dataclass(frozen=True)
class ServeOptions:
    """How `serve` runs. ``api_key`` None leaves the API open (fine on 127.0.0.1); ``client_timeout_s`` cuts
    a client that has not sent a whole request within that time; past ``max_queue`` waiting requests the
    server answers 503 with Retry-After instead of queueing without limit."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = os.cpu_count() or 1
    max_body_mb: float = 32.0
    api_key: str | None = None
    client_timeout_s: float = 10.0
    max_queue: int = 8

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


SERVE_DEFAULTS = ServeOptions()
DRIFT_DEFAULTS = {"expected_defect_rate": 0.05}  # the drift monitor's view of a normal line


def before_libraries_load() -> None:
    """Settings OpenCV and onnxruntime read once, as they load; made at ``import insightad_edge``, so they hold
    unless a program loaded either library first or set them itself.

    OpenCV's decoder refuses encoded images over MAX_FRAME_PIXELS before it allocates them (without it, the edge
    still refuses such a frame once decoded, before converting it). onnxruntime (1.32, Linux) collects telemetry
    on each process, session and run (the program's path, the machine, the graph's name, run counts and times,
    errors), queues it for Microsoft's collector in ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` and, with
    no home to write to (a systemd station), warns at each start: a line PC writes nothing, and sends nothing, that
    nobody asked for. ``ORT_DISABLE_TELEMETRY=0`` in the environment turns it back on.
    """
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def install_hint(extra: str) -> str:
    """How to add an extra, the same words wherever one is missing."""
    torch_first = "install torch's CPU build first (README: Installing torch), then " if extra == "train" else ""
    return f"{torch_first}pip install '.[{extra}]' in a clone of insightad (or 'insightad[{extra}]' from a wheel)"

"""Defaults the command line and the server share, defined once: the CLI's options are generated from these."""
from __future__ import annotations

import os
from dataclasses import dataclass

API_KEY_ENV = "INSIGHTAD_API_KEY"
PORT_ENV = "INSIGHTAD_PORT"
DEFAULT_LOG = "inspections.db"  # `watch` writes its inspection log here unless told otherwise


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


def install_hint(extra: str) -> str:
    """How to add an extra, the same words wherever one is missing."""
    torch_first = "install torch's CPU build first (README: Installing torch), then " if extra == "train" else ""
    return f"{torch_first}pip install '.[{extra}]' in a clone of insightad (or 'insightad[{extra}]' from a wheel)"

"""The HTTP service: `POST /infer` with `{"image": "<base64>"}` answers `{"Anomaly": true|false, ...}`.

This keeps the original deployment's contract (the key is spelled `Anomaly`) and adds fields that do not
break it. One loaded Detector serves every request; inference runs in worker threads so the event loop
stays free, at most `workers` at a time, and past `max_queue` waiting requests the answer is 503 with
Retry-After. A client's mistake gets a 4xx with a JSON reason, never a trace. With an API key set, every
route but /health wants it (`Authorization: Bearer KEY` or `X-API-Key: KEY`).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import socket
import time

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .config import ServeOptions
from .detector import Detector
from .errors import ImageError

log = logging.getLogger(__name__)


class ClientError(Exception):
    """A request the server refuses, with the status and the reason to send back."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed),
    and with 408 when it has not arrived within ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ClientError(413, f"request body passes the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ClientError(408, f"request body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


def check_api_key(request: Request, key: str | None) -> None:
    """401 unless the request carries the key (constant-time comparison); no key set, nothing to check."""
    if key is None:
        return
    given = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if given is None and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), key.encode()):
        raise ClientError(401, "missing or wrong API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                          {"WWW-Authenticate": "Bearer"})


def parse_image(body: bytes) -> bytes:
    """The encoded image bytes from a `{"image": "<base64>"}` body."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ClientError(400, 'body is not JSON; send {"image": "<base64 of an encoded image>"}') from None
    if not isinstance(document, dict) or "image" not in document:
        raise ClientError(400, 'JSON body has no "image" key; send {"image": "<base64 of an encoded image>"}')
    if not isinstance(document["image"], str):
        raise ClientError(400, '"image" must be a base64 string')
    text = document["image"]
    if text.startswith("data:") and "," in text:  # tolerate a data URL prefix
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(400, '"image" is not valid base64') from None
    if not data:
        raise ClientError(400, '"image" is empty')
    return data


def create_app(detector: Detector, options: ServeOptions) -> FastAPI:
    """The ASGI app around an already loaded detector (so it is ready as soon as it accepts connections)."""
    app = FastAPI(title="insightad", version=__version__, docs_url=None, redoc_url=None)
    limiter = anyio.CapacityLimiter(options.workers)
    meta = detector.metadata
    model_id = f"{detector.path.name}@{meta.created or 'unknown'}"
    recent_ms = [50.0]  # a running estimate of one request's model time, for Retry-After

    def admit() -> None:
        waiting = limiter.statistics().tasks_waiting
        if limiter.borrowed_tokens >= limiter.total_tokens and waiting >= options.max_queue:
            wait_s = math.ceil((waiting + 1) * recent_ms[0] / 1000.0 / options.workers)
            raise ClientError(503, f"{waiting} requests are already waiting; try again shortly",
                              {"Retry-After": str(max(1, wait_s))})

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError):
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return JSONResponse({"error": "invalid request"}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception):
        log.exception("unexpected failure while serving a request")
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    @app.post("/infer")
    async def infer(request: Request):
        began = time.perf_counter()
        check_api_key(request, options.api_key)
        data = parse_image(await read_body(request, options.max_body_bytes, options.client_timeout_s))
        admit()
        try:
            result = await anyio.to_thread.run_sync(detector, data, limiter=limiter)
        except ImageError as exc:
            raise ClientError(422, str(exc)) from None
        recent_ms[0] = 0.9 * recent_ms[0] + 0.1 * sum(result.timings_ms.values())
        return {"Anomaly": result.anomaly, "score": result.score, "threshold": result.threshold,
                "model": model_id, "latency_ms": round((time.perf_counter() - began) * 1000.0, 3)}

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health():
        return {"status": "ok", "model": model_id}

    @app.get("/model")
    async def model(request: Request):
        check_api_key(request, options.api_key)
        return json.loads(meta.to_json())

    return app


def client_timeout_protocol(timeout_s: float):
    """uvicorn's h11 protocol, cutting a connection that has sent no complete request within ``timeout_s``
    of opening (or of its last answer): idle and slow clients cannot hold connections forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ClientTimeoutProtocol(H11Protocol):
        _cut = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc):
            if self._cut is not None:
                self._cut.cancel()
            super().connection_lost(exc)

        def _arm(self):
            if self._cut is not None:
                self._cut.cancel()
            self._cut = self.loop.call_later(timeout_s, self._cut_if_waiting)

        def _cut_if_waiting(self):
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return ClientTimeoutProtocol


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts, so a busy port is reported before anything runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def run(detector: Detector, options: ServeOptions, sock: socket.socket) -> None:
    """Serve on an already bound socket until interrupted."""
    import uvicorn

    config = uvicorn.Config(create_app(detector, options), log_level="info", access_log=False,
                            http=client_timeout_protocol(options.client_timeout_s),
                            timeout_keep_alive=max(1, int(options.client_timeout_s)))
    uvicorn.Server(config).run(sockets=[sock])

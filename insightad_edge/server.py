"""The HTTP service: `POST /infer` with `{"image": "<base64>"}` answers `{"Anomaly": true|false, ...}`.

This keeps the original deployment's contract (the key is spelled `Anomaly`) and adds fields that do not
break it. One loaded Detector serves every request; inference runs in worker threads so the event loop
stays free, at most `workers` at a time. A client's mistake gets a 4xx with a JSON reason, never a trace.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .detector import Detector
from .errors import ImageError

log = logging.getLogger(__name__)


class ClientError(Exception):
    """A request the server refuses, with the status and the reason to send back."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"request body passes the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


def create_app(detector: Detector, *, workers: int = 2, max_body_bytes: int = 32 * 1024 * 1024) -> FastAPI:
    """The ASGI app around an already loaded detector (so it is ready as soon as it accepts connections)."""
    app = FastAPI(title="insightad", version=__version__, docs_url=None, redoc_url=None)
    limiter = anyio.CapacityLimiter(workers)
    meta = detector.metadata
    model_id = f"{detector.path.name}@{meta.created or 'unknown'}"

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError):
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

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
        data = parse_image(await read_body(request, max_body_bytes))
        try:
            result = await anyio.to_thread.run_sync(detector, data, limiter=limiter)
        except ImageError as exc:
            raise ClientError(422, str(exc)) from None
        return {"Anomaly": result.anomaly, "score": result.score, "threshold": result.threshold,
                "model": model_id, "latency_ms": round((time.perf_counter() - began) * 1000.0, 3)}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id}

    @app.get("/model")
    async def model():
        return json.loads(meta.to_json())

    return app


def run(detector: Detector, *, host: str, port: int, workers: int, max_body_bytes: int) -> None:
    """Serve until interrupted."""
    import uvicorn

    app = create_app(detector, workers=workers, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)

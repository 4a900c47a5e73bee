"""The HTTP service: `POST /infer` with `{"image": "<base64>"}` answers `{"Anomaly": true|false, ...}`.

This keeps the original deployment's contract (the key is spelled `Anomaly`) and adds fields that do not
break it; it also takes what clients actually send: a multipart form (`curl -F image=@part.png`), a raw
`image/*` body, and base64 with line breaks. One loaded Detector serves every request; inference runs in
worker threads so the event loop stays free, at most `workers` at a time, and past `max_queue` waiting
requests the answer is 503 with Retry-After. A client's mistake gets a 4xx with a JSON reason, never a
trace. With an API key set, every route but /health and the page's own file wants it (`Authorization:
Bearer KEY` or `X-API-Key: KEY`). `/health` carries the drift state, `/metrics` the Prometheus text,
`/` the operator's page, `/openapi.json` all of it (``api_doc``). A station (`watch --http`) serves the same app
without /infer.
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
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import anyio
import cv2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, api_doc, modelfile
from .board import Board
from .config import ServeOptions
from .detector import ERROR, NOT_INSPECTABLE, Detector
from .errors import ImageError, ModelError, NotInspectable
from .inspections import utc_now
from .metrics import Metrics
from .monitor import DriftMonitor
from .overlay import render_overlay
from .preprocess import load, to_float

STATIC = Path(__file__).with_name("static")
ROUTES = ("/infer", "/health", "/model", "/metrics", "/", "/api/last", "/api/summary")

log = logging.getLogger(__name__)


class Answer(JSONResponse):
    """Every JSON answer: characters outside ASCII escaped, so any text makes a valid answer. A file name that is not
    UTF-8 (shown in a station's `ignored` event, a verdict's frame) failed to encode, and the page got a 500 for as
    long as the name stood on it."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


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


def parse_image(body: bytes, content_type: str) -> bytes:
    """The encoded image bytes from a JSON `{"image": "<base64>"}` body, a multipart form's `image` field, or a
    raw image body."""
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("image/") or kind == "application/octet-stream":
        if not body:
            raise ClientError(400, "the request body is empty")
        return body
    if kind == "multipart/form-data":
        return _form_image(body, content_type)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ClientError(400, 'body is not JSON; send {"image": "<base64 of an encoded image>"}, a multipart form '
                               'with an image field, or the image itself as image/*') from None
    if not isinstance(document, dict) or "image" not in document:
        raise ClientError(400, 'JSON body has no "image" key; send {"image": "<base64 of an encoded image>"}')
    if not isinstance(document["image"], str):
        raise ClientError(400, '"image" must be a base64 string')
    text = document["image"]
    if text.startswith("data:") and "," in text:  # tolerate a data URL prefix
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)  # `base64 part.png` wraps its lines
    except (binascii.Error, ValueError):
        raise ClientError(400, '"image" is not valid base64') from None
    if not data:
        raise ClientError(400, '"image" is empty')
    return data


def _form_image(body: bytes, content_type: str) -> bytes:
    """The file in a multipart/form-data body's `image` field (or its only file), read with the standard library."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    parts = [part for part in message.iter_parts() if part.get_content_disposition() == "form-data"]
    named = [p for p in parts if p.get_param("name", header="content-disposition") == "image"]
    chosen = named or [p for p in parts if p.get_filename()]
    if len(chosen) != 1:  # none, or several files and none of them named: which one is the part?
        raise ClientError(400, "the form has no image field; send it as -F image=@part.png")
    data = chosen[0].get_payload(decode=True)
    if not data:
        raise ClientError(400, "the form's image field is empty")
    return data


def overlay_png(image, result, threshold: float) -> str:
    """The overlay an operator reads (heat map and threshold contour over the part), base64 PNG."""
    picture = render_overlay(to_float(image, 3), result.anomaly_map, threshold)
    return base64.b64encode(cv2.imencode(".png", picture)[1].tobytes()).decode()


def create_app(detector: Detector, options: ServeOptions, *, monitor: DriftMonitor | None = None,
               board: Board | None = None, metrics: Metrics | None = None, infer: bool = True) -> FastAPI:
    """The ASGI app around an already loaded detector (so it is ready as soon as it accepts connections).

    A station passes its own monitor, board and metrics (fed by its verdicts) and ``infer=False``.
    """
    app = FastAPI(title="insightad", version=__version__, docs_url=None, redoc_url=None, default_response_class=Answer)
    limiter = anyio.CapacityLimiter(options.workers)
    meta = detector.metadata
    model_id = f"{detector.path.name}@{meta.created or 'unknown'}"
    monitor = monitor or DriftMonitor(meta)
    board = board or Board(monitor)
    metrics = metrics or Metrics(detector)
    recent_ms = [50.0]  # a running estimate of one request's model time, for Retry-After
    model_file = modelfile.FileWatch(detector.path, detector.sha256, holder="server")

    def model_changes() -> list[str]:
        """A look at the model's file (a stat): a new model put there is used from the next start, so a change is
        logged once, and shown on the page while it lasts."""
        if (change := model_file.look()) is not None:
            log.warning("%s", change)
        return [] if model_file.state == "same" else [model_file.words()]

    if infer:  # serving alone (a station tells its page and metrics of its model's file itself)
        board.trouble = model_changes
        metrics.model_file(lambda: not model_changes())

    def admit() -> None:
        waiting = limiter.statistics().tasks_waiting
        if limiter.borrowed_tokens >= limiter.total_tokens and waiting >= options.max_queue:
            wait_s = math.ceil((waiting + 1) * recent_ms[0] / 1000.0 / options.workers)
            raise ClientError(503, f"{waiting} requests are already waiting; try again shortly",
                              {"Retry-After": str(max(1, wait_s))})

    def record(status: str, score, error, image=None, result=None) -> None:
        state = monitor.feed(status, score, None if result is None else result.stats)
        board.add(time_utc=utc_now(), status=status, score=score, threshold=detector.threshold, error=error,
                  image=image, anomaly_map=None if result is None else result.anomaly_map)
        metrics.verdict(status, score, {} if result is None else dict(result.timings_ms), state)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.url.path if request.url.path in ROUTES else "other"
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError):
        return Answer({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return Answer({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)  # 405's Allow

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        reasons = "; ".join(f"{' '.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())  # "query overlay: ..."
        return Answer({"error": f"invalid request: {reasons}"}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception):
        log.exception("unexpected failure while serving a request")
        return Answer({"error": "internal error; see the server log"}, status_code=500)

    if infer:
        @app.post("/infer", **api_doc.INFER)
        async def infer_route(request: Request, overlay: bool = False):  # 1, true, yes, on
            began = time.perf_counter()
            check_api_key(request, options.api_key)
            body = await read_body(request, options.max_body_bytes, options.client_timeout_s)
            data = parse_image(body, request.headers.get("content-type", "application/json"))
            admit()
            model_changes()  # logged at the first request after it, whether or not anyone looks at the page
            try:
                image = load(data)
                result = await anyio.to_thread.run_sync(lambda: detector(image, with_map=True), limiter=limiter)
            except NotInspectable as exc:
                record(NOT_INSPECTABLE, None, str(exc))
                raise ClientError(422, str(exc)) from None
            except ImageError as exc:
                record(ERROR, None, str(exc))
                raise ClientError(422, str(exc)) from None
            except ModelError as exc:  # the model failed on this frame: no verdict, and the reason, not a bare 500
                record(ERROR, None, str(exc))
                raise ClientError(500, str(exc)) from None
            record(result.status, result.score, None, image, result)
            recent_ms[0] = 0.9 * recent_ms[0] + 0.1 * sum(result.timings_ms.values())
            seconds = time.perf_counter() - began
            metrics.request_seconds.observe(seconds)
            answer = {"Anomaly": result.anomaly, "score": result.score, "threshold": result.threshold,
                      "status": result.status, "model": model_id, "latency_ms": round(seconds * 1000.0, 3)}
            if overlay:
                answer["overlay"] = overlay_png(image, result, detector.threshold)
            return answer

    @app.api_route("/health", methods=["GET", "HEAD"], **api_doc.HEALTH)
    async def health():
        return {"status": "ok", "model": model_id, "drift": monitor.state.as_dict(), "source": board.source_state}

    @app.get("/model", **api_doc.MODEL)
    async def model(request: Request):
        check_api_key(request, options.api_key)
        return json.loads(meta.to_json())

    @app.get("/metrics", **api_doc.METRICS)
    async def metrics_route(request: Request):
        check_api_key(request, options.api_key)
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/last", **api_doc.LAST)
    async def last(request: Request):
        check_api_key(request, options.api_key)
        return {"model": model_id, "last": await anyio.to_thread.run_sync(board.last)}

    @app.get("/api/summary", **api_doc.SUMMARY)
    async def summary(request: Request):
        check_api_key(request, options.api_key)
        return {"model": model_id, "threshold": detector.threshold, **board.summary()}

    @app.get("/", **api_doc.PAGE)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = api_doc.described(app)
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


def server_for(app: FastAPI, options: ServeOptions):
    """A uvicorn server for the app, with the client timeout applied."""
    import uvicorn

    config = uvicorn.Config(app, log_level="info", access_log=False,
                            http=client_timeout_protocol(options.client_timeout_s),
                            timeout_keep_alive=max(1, int(options.client_timeout_s)))
    return uvicorn.Server(config)


def run(detector: Detector, options: ServeOptions, sock: socket.socket) -> None:
    """Serve on an already bound socket until interrupted."""
    server_for(create_app(detector, options), options).run(sockets=[sock])

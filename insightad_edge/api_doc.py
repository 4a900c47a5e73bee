"""The HTTP API as `/openapi.json` describes it: what `POST /infer` takes and the shape of every answer.

FastAPI can only guess what routes that read their own body answer: it described no request body for /infer and
documented its own `{"detail": [...]}` 422 where the server answers `{"error": "..."}`, so a client generated from
the document, or a tester reading it, met a contract the server does not keep. Descriptions only: no answer is
validated against them on its way out (schemathesis checks them against the real server in the tests).
"""
from __future__ import annotations

import warnings
from typing import Callable

from .detector import DEFECT, NOT_INSPECTABLE, OK, STATUSES

TEXT, NUMBER, BOOLEAN, OBJECT = {"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "object"}
BINARY = {"type": "string", "format": "binary", "minLength": 1}
BASE64 = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/*",
          "pattern": "^(data:[^,]*,)?([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$"}
PROBLEM = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "description": "why"}}}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    return {**answer, "headers": headers} if headers else answer


def _object(required: dict, optional: dict | None = None) -> dict:
    """An object with these keys (more may be added later: clients must ignore keys they do not know)."""
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


KEY_REFUSED = {401: _json(PROBLEM, "an API key is set and the request does not carry it",
                          {"WWW-Authenticate": {"schema": TEXT}})}

VERDICT = _object(
    {"Anomaly": {**BOOLEAN, "description": "the original deployment's key: the part is defective"},
     "score": NUMBER, "threshold": NUMBER,
     "status": {"type": "string", "enum": [OK, DEFECT]}, "model": TEXT, "latency_ms": NUMBER},
    {"overlay": {**TEXT, "description": "with ?overlay=true: the heat map over the part, base64 PNG"}})

INFER_BODY = {"required": True, "content": {
    "application/json": {"schema": _object({"image": {
        **BASE64, "description": "base64 of an encoded image (PNG, JPEG, ...); a data: URL prefix is allowed, and "
                                 "line breaks (what `base64 part.png` prints)"}})},
    "multipart/form-data": {"schema": _object({"image": BINARY})},
    "image/*": {"schema": BINARY},
    "application/octet-stream": {"schema": BINARY},
}}

INFER = {
    "summary": "Judge one image",
    "openapi_extra": {"requestBody": INFER_BODY},
    "responses": {
        200: _json(VERDICT, "the verdict"),
        400: _json(PROBLEM, "the body is not JSON, has no image key, holds invalid base64, or a query parameter "
                            "cannot be read"),
        **KEY_REFUSED,
        408: _json(PROBLEM, "the body did not arrive in time"),
        413: _json(PROBLEM, "the body is larger than --max-body-mb"),
        422: _json(PROBLEM, f"no verdict: the bytes are not a readable image, or the frame is {NOT_INSPECTABLE} "
                            "(the reason says why)"),
        500: _json(PROBLEM, "the model failed on this frame"),
        503: _json(PROBLEM, "the queue is full", {"Retry-After": {"schema": {"type": "integer"}}}),
    },
}

HEALTH = {"summary": "Whether the model is loaded, with the drift state", "responses": {200: _json(_object(
    {"status": TEXT, "model": TEXT, "drift": _object({"level": {"type": "string", "enum": ["ok", "warn", "alarm"]},
                                                      "reasons": {"type": "array", "items": TEXT}}),
     "source": {"type": ["string", "null"], "description": "a station's source: live, lost, stalled or ended"}}),
    "the model is loaded")}}

MODEL = {"summary": "The model's metadata document", "responses": {200: _json(OBJECT, "the metadata"), **KEY_REFUSED}}

METRICS = {"summary": "Prometheus metrics", "responses": {
    200: {"description": "the Prometheus text format", "content": {"text/plain": {"schema": TEXT}}}, **KEY_REFUSED}}

LAST = {"summary": "The latest verdict, as the page shows it", "responses": {200: _json(_object(
    {"model": TEXT, "last": {"type": ["object", "null"], "properties": {"status": {"enum": list(STATUSES)}}}}),
    "the latest verdict, or null before the first"), **KEY_REFUSED}}

SUMMARY = {"summary": "The last hour's counts, as the page shows them", "responses": {
    200: _json(_object({"model": TEXT, "threshold": NUMBER, "last_hour": OBJECT}), "the counts"), **KEY_REFUSED}}

PAGE = {"summary": "The operator's page", "responses": {
    200: {"description": "the page", "content": {"text/html": {"schema": TEXT}}}}}


def described(app) -> Callable[[], dict]:
    """``app.openapi`` with HEAD left out where GET stands: FastAPI gives a route's methods one operation id, which
    OpenAPI forbids (and warns of it), and HEAD is GET without the body (RFC 9110), so GET's description covers it."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Duplicate Operation ID")
                schema = generate()
            for operations in schema["paths"].values():
                if "get" in operations:
                    operations.pop("head", None)
        return app.openapi_schema

    return openapi

"""Every error leaves as ``{"error": {"code", "message"}}`` with the right HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agents.errors import (
    AdapterMismatch,
    BackendUnavailable,
    CheckpointError,
    GenerationError,
    InvalidPrompt,
    MissingExtra,
    ModelNotPrepared,
    ReaderError,
    UnknownAdapter,
)
from retrieval.copilot_store import RecordConflict, RecordNotFound
from retrieval.errors import KnowledgeBaseNotFound, RagnetError, StoreError, StoreLocked
from retrieval.knowledge import InvalidName, ItemNotFound, KnowledgeBaseExists

log = logging.getLogger("ragnet.api")

# Most specific first: the first isinstance match wins.
_MAP: list[tuple[type[Exception], int, str]] = [
    (KnowledgeBaseNotFound, 404, "kb_not_found"),
    (ItemNotFound, 404, "not_found"),
    (RecordNotFound, 404, "not_found"),
    (RecordConflict, 409, "conflict"),
    (KnowledgeBaseExists, 409, "conflict"),
    (InvalidName, 422, "invalid_request"),
    (UnknownAdapter, 400, "unknown_adapter"),
    (InvalidPrompt, 422, "invalid_prompt"),
    (AdapterMismatch, 503, "adapter_mismatch"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (ModelNotPrepared, 503, "model_not_prepared"),
    (MissingExtra, 503, "missing_extra"),
    (ReaderError, 503, "reader_unavailable"),
    (CheckpointError, 503, "support_model_unavailable"),
    (StoreLocked, 503, "store_locked"),
    (StoreError, 503, "store_unavailable"),
    (GenerationError, 500, "generation_failed"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


class RequestError(RagnetError):
    """A request that is well-formed but not acceptable (limits from settings); 422 over HTTP."""

    def __init__(
        self, message: str, status: int = 422, code: str = "invalid_request", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


#: Routes whose errors take OpenAI's shape, so OpenAI clients raise their own exception types.
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")

_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(status: int, code: str, message: str, param: str | None = None) -> dict[str, dict[str, Any]]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI's API sends it."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _body(request: Request, status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    if request.url.path.startswith(OPENAI_PATHS):
        return openai_error(status, code, message, param)
    return error_body(code, message)


def classify(exc: Exception) -> tuple[int, str]:
    for kind, status, code in _MAP:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal_error"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts, params = [], []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
            params.append(where)
        param = params[0] if params and params[0] else None
        return JSONResponse(_body(request, 422, "invalid_request", "; ".join(parts), param), status_code=422)

    @app.exception_handler(RequestError)
    async def _request(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(_body(request, exc.status, exc.code, str(exc), exc.param), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        body = _body(request, exc.status_code, code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(RagnetError)
    async def _ragnet(request: Request, exc: RagnetError) -> JSONResponse:
        status, code = classify(exc)
        if status >= 500:
            log.error("request failed: %s", exc, exc_info=exc)
        return JSONResponse(_body(request, status, code, str(exc)), status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        body = _body(request, 500, "internal_error", "internal error; see the server log")
        return JSONResponse(body, status_code=500)

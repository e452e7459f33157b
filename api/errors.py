"""Every error leaves as ``{"error": {"code", "message"}}`` with the right HTTP status."""

from __future__ import annotations

import logging

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
from retrieval.errors import KnowledgeBaseNotFound, RagnetError, StoreError, StoreLocked
from retrieval.knowledge import InvalidName, ItemNotFound, KnowledgeBaseExists

log = logging.getLogger("ragnet.api")

# Most specific first: the first isinstance match wins.
_MAP: list[tuple[type[Exception], int, str]] = [
    (KnowledgeBaseNotFound, 404, "kb_not_found"),
    (ItemNotFound, 404, "not_found"),
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

    def __init__(self, message: str, status: int = 422, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.code = status, code


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def classify(exc: Exception) -> tuple[int, str]:
    for kind, status, code in _MAP:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal_error"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return JSONResponse(error_body("invalid_request", "; ".join(parts)), status_code=422)

    @app.exception_handler(RequestError)
    async def _request(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc)), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(RagnetError)
    async def _ragnet(_: Request, exc: RagnetError) -> JSONResponse:
        status, code = classify(exc)
        if status >= 500:
            log.error("request failed: %s", exc, exc_info=exc)
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "internal error; see the server log"), status_code=500
        )

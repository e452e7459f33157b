from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api import qa
from api.auth import PrincipalDep
from api.deps import ServicesDep
from api.errors import RequestError, classify, error_body
from api.schemas import AnswerRequest, AnswerResponse, ErrorResponse
from retrieval.errors import RagnetError

router = APIRouter(prefix="/v1/search", tags=["search"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key"},
    403: {"model": ErrorResponse, "description": "The key may not use this knowledge base"},
    400: {"model": ErrorResponse, "description": "Unknown adapter"},
    404: {"model": ErrorResponse, "description": "Unknown knowledge base"},
    422: {"model": ErrorResponse, "description": "Empty, oversized or malformed request"},
    503: {"model": ErrorResponse, "description": "Model not prepared or index unavailable"},
}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/answer", response_model=AnswerResponse, responses=_ERRORS)
def search_answer(body: AnswerRequest, services: ServicesDep, who: PrincipalDep) -> Any:
    """Answer a question from a knowledge base, with numbered citations (or SSE when stream=true)."""
    who.check(body.kb)
    options: dict[str, Any] = {"mode": body.mode, "strict": body.strict, "adapter": body.adapter}
    if not body.stream:
        return qa.answer(services, body.kb, body.question, body.top_k, **options)

    # Validation (limits, unknown kb, unknown adapter) raises here, before the stream starts.
    events = qa.answer_events(services, body.kb, body.question, body.top_k, **options)

    def stream() -> Iterator[str]:
        try:
            for event, data in events:
                yield _sse(event, data)
        except RagnetError as exc:
            _, code = classify(exc)
            yield _sse("error", error_body(code, str(exc)))

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/traces/{request_id}", responses=_ERRORS)
def get_trace(request_id: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """What an answer did, step by step (from the SQLite checkpointer), by the response's `id`."""
    if not request_id.isalnum() or len(request_id) > 64:
        raise RequestError("a trace id is the `id` of an answer: 32 hexadecimal characters")
    found = qa.trace(services, request_id)
    who.check(str(found["kb"]))
    return found

"""Answering a question through the search-QA graph: whole, or as a stream of events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from api.errors import RequestError
from api.services import Services
from retrieval.errors import KnowledgeBaseNotFound


def _inputs(services: Services, kb: str, question: str, top_k: int | None) -> dict[str, Any]:
    limit = services.settings.max_question_chars
    if len(question) > limit:
        raise RequestError(f"question is {len(question)} characters; the limit is {limit}")
    if not services.metadata.kb_exists(kb):
        raise KnowledgeBaseNotFound(kb)
    return {"kb": kb, "question": question, "top_k": top_k or services.settings.top_k}


def _response(request_id: str, state: dict[str, Any], started: float) -> dict[str, Any]:
    timings = dict(state.get("timings", {}))
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return {
        "id": request_id,
        "answer": state.get("answer", ""),
        "grounded": bool(state.get("grounded", False)),
        "citations": state.get("citations", []),
        "timings": timings,
    }


def answer(services: Services, kb: str, question: str, top_k: int | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    inputs = _inputs(services, kb, question, top_k)
    state = services.search_graph.invoke(inputs, context=services.search_context())
    return _response(uuid.uuid4().hex, state, started)


def answer_events(
    services: Services, kb: str, question: str, top_k: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs: ``retrieval``, ``token``…, then ``done`` with the whole response.

    Validation (unknown kb) happens before the first event, so callers can still answer 404.
    """
    started = time.perf_counter()
    inputs = _inputs(services, kb, question, top_k)
    context = services.search_context()
    request_id = uuid.uuid4().hex

    def run() -> Iterator[tuple[str, dict[str, Any]]]:
        state: dict[str, Any] = {}
        for mode, chunk in services.search_graph.stream(
            inputs, context=context, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                data = dict(chunk)
                yield str(data.pop("event")), data
            else:
                state = chunk
        yield "done", _response(request_id, state, started)

    return run()

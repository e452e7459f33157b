"""Answering a question through the search-QA graph: whole, as a stream of events, or its trace later.

Every request runs the agentic graph (graph/search_qa.py) under the SQLite checkpointer with the
request id as its thread, so ``trace(id)`` can return what happened afterwards. ``mode`` picks the
path: ``single`` (single-shot RAG), ``agentic`` (always decompose) or ``auto`` (the analyser decides).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from api.errors import RequestError
from api.services import Services
from graph.search_qa import RECURSION_LIMIT
from retrieval.errors import KnowledgeBaseNotFound
from retrieval.knowledge import ItemNotFound

Mode = Literal["auto", "single", "agentic"]


def _inputs(
    services: Services, kb: str, question: str, top_k: int | None, mode: Mode | None, strict: bool | None
) -> dict[str, Any]:
    s = services.settings
    if len(question) > s.max_question_chars:
        raise RequestError(f"question is {len(question)} characters; the limit is {s.max_question_chars}")
    info = services.metadata.get_kb(kb)
    if info is None:
        raise KnowledgeBaseNotFound(kb)
    return {
        "kb": kb,
        "question": question,
        "top_k": top_k or s.top_k,
        "mode": mode or s.answer_mode,
        "strict": strict if strict is not None else (info.strict or s.strict),
        "budgets": {
            "max_hops": s.max_hops,
            "max_backtracks": s.max_backtracks,
            "max_llm_calls": s.max_llm_calls,
            "deadline_s": s.agent_deadline_s,
        },
        "started": time.monotonic(),
        "route": {},
        "trace": [],
        "hops": 0,
        "llm_calls": 0,
    }


def _config(request_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": request_id}, "recursion_limit": RECURSION_LIMIT}


def _trace(state: dict[str, Any]) -> dict[str, Any]:
    analysis = state.get("analysis", {})
    return {
        "pipeline": "agentic" if analysis.get("multi_hop") else "single",
        "route": state.get("route", {}),
        "analysis": analysis,
        "plan": state.get("plan", []),
        "steps": state.get("trace", []),
        "claims": state.get("claims", []),
        "backtracks": state.get("backtracks", 0),
        "budgets": state.get("budgets", {}),
        "used": {"hops": state.get("hops", 0), "llm_calls": state.get("llm_calls", 0)},
        "exhausted": state.get("exhausted"),
    }


def _response(request_id: str, state: dict[str, Any], started: float) -> dict[str, Any]:
    timings = dict(state.get("timings", {}))
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return {
        "id": request_id,
        "answer": state.get("answer", ""),
        "grounded": bool(state.get("grounded", False)),
        "citations": state.get("citations", []),
        "timings": timings,
        "route": state.get("route", {}),
        "trace": _trace(state),
    }


def answer(
    services: Services,
    kb: str,
    question: str,
    top_k: int | None = None,
    *,
    mode: Mode | None = None,
    strict: bool | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    """The whole response: the ``done`` event of :func:`answer_events`."""
    events = answer_events(services, kb, question, top_k, mode=mode, strict=strict, adapter=adapter)
    for event, data in events:
        if event == "done":
            return data
    raise AssertionError("the answer graph ended without a response")  # answer_events always ends with done


def answer_events(
    services: Services,
    kb: str,
    question: str,
    top_k: int | None = None,
    *,
    mode: Mode | None = None,
    strict: bool | None = None,
    adapter: str | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs: ``start`` (id and route), ``step`` (each decision as it happens),
    ``retrieval``, ``token``…, then ``done`` with the whole response. Validation happens before the
    first event (404 / 422 / an unknown adapter's 400 stay plain HTTP errors)."""
    started = time.perf_counter()
    inputs = _inputs(services, kb, question, top_k, mode, strict)
    route = services.route(question, adapter)
    inputs["route"] = route.as_dict()
    context = services.agentic_context(route)
    request_id = uuid.uuid4().hex

    def run() -> Iterator[tuple[str, dict[str, Any]]]:
        state: dict[str, Any] = {}
        yield "start", {"id": request_id, "route": inputs["route"]}
        for kind, chunk in services.agentic_graph.stream(
            inputs, config=_config(request_id), context=context, stream_mode=["custom", "values"]
        ):
            if kind == "custom":
                data = dict(chunk)
                yield str(data.pop("event")), data
            else:
                state = chunk
        yield "done", _response(request_id, state, started)

    return run()


def trace(services: Services, request_id: str) -> dict[str, Any]:
    """What a request did, from the checkpointer; unknown id -> ItemNotFound."""
    snapshot = services.agentic_graph.get_state(_config(request_id))
    state = dict(snapshot.values or {})
    if not state:
        raise ItemNotFound(f"no trace {request_id!r}")
    return {
        "id": request_id,
        "kb": state.get("kb"),
        "question": state.get("question"),
        "answer": state.get("answer", ""),
        "grounded": bool(state.get("grounded", False)),
        "citations": state.get("citations", []),
        "finished": not snapshot.next,
        "trace": _trace(state),
    }

"""One copilot turn end to end: check the request, run the graph, store the exchange, send the webhook.

A turn's history comes from the stored session (server-side mode) or from the request itself
(stateless mode: the client sends every message). Either way the same graph runs on the same
history shape, so handoff rules ("refused twice in a row") behave alike; in stateless mode an
earlier answer that is the assistant's fixed "nothing found" reply counts as a refusal.

The exchange (the customer's message, the answer, the handoff it opened and the webhook's pending
state) is stored in one transaction after the graph ends, so a crash never leaves half of one; a
client that disconnects mid-answer still gets its partial answer stored, marked ``cancelled``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from agents.routing import Route
from api.errors import RequestError
from api.services import Services
from graph.copilot import DEFAULT_HANDOFF, DEFAULT_NO_ANSWER, Assistant
from retrieval.copilot_store import AssistantRecord, RecordNotFound
from retrieval.errors import KnowledgeBaseNotFound

Event = tuple[str, dict[str, Any]]

#: What an assistant's configuration holds when a field is not given.
DEFAULTS: dict[str, Any] = {
    "description": "",
    "strict": True,
    "faq_threshold": None,
    "no_answer_reply": DEFAULT_NO_ANSWER,
    "handoff_reply": DEFAULT_HANDOFF,
    "handoff_confidence": 0.1,
    "adapter": None,
    "top_k": None,
    "system_prompt": None,
    "webhook_url": None,
}

#: The adapter name that pins an assistant to the base model (no routing).
BASE = "base"


def kb_ids(services: Services, names: Sequence[str]) -> list[str]:
    """Knowledge base names -> ids (stored by id, so renaming a knowledge base keeps its assistants);
    an unknown name -> 404."""
    out = []
    for name in names:
        info = services.metadata.get_kb(name)
        if info is None:
            raise KnowledgeBaseNotFound(name)
        out.append(info.id)
    return list(dict.fromkeys(out))


def kb_names(services: Services, record: AssistantRecord) -> list[str]:
    """The current names of an assistant's knowledge bases (a deleted one is left out)."""
    infos = (services.metadata.get_kb_by_id(i) for i in record.config.get("kb_ids", []))
    return [info.name for info in infos if info is not None]


def view(services: Services, record: AssistantRecord) -> dict[str, Any]:
    config = {k: v for k, v in record.config.items() if k != "kb_ids"}
    names = kb_names(services, record)
    return {
        "id": record.id,
        "name": record.name,
        **{**DEFAULTS, **config},
        "kbs": names,
        "missing_kbs": len(record.config.get("kb_ids", [])) - len(names),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def check_adapter(services: Services, adapter: str | None) -> None:
    """An unknown adapter -> 400 (before anything is stored)."""
    if adapter and adapter != BASE:
        services.adapter_registry.get(adapter)  # UnknownAdapter


def get_assistant(services: Services, key: str) -> AssistantRecord:
    found = services.copilot_store.get_assistant(key)
    if found is None:
        raise RecordNotFound(f"no assistant {key!r}")
    return found


def _assistant(services: Services, record: AssistantRecord, system: str | None) -> Assistant:
    cfg = {**DEFAULTS, **record.config}
    prompt = cfg["system_prompt"]
    if system:  # a stateless / OpenAI client's own system message adds to the assistant's
        prompt = f"{prompt}\n\n{system}" if prompt else system
    kbs = kb_names(services, record)
    if len(kbs) < len(cfg.get("kb_ids", [])):
        raise RequestError(
            f"assistant {record.name!r} names a knowledge base that was deleted; PATCH its kbs",
            409,
            "conflict",
        )
    return {
        "name": record.name,
        "kbs": kbs,
        "strict": bool(cfg["strict"]),
        "faq_threshold": cfg["faq_threshold"],
        "no_answer_reply": cfg["no_answer_reply"],
        "handoff_reply": cfg["handoff_reply"],
        "handoff_confidence": cfg["handoff_confidence"],
        "system_prompt": prompt,
        "top_k": int(cfg["top_k"] or services.settings.top_k),
    }


def _route(services: Services, record: AssistantRecord, message: str) -> Route:
    adapter = record.config.get("adapter")
    if adapter == BASE:
        return Route("general", 1.0, {}, "requested")
    return services.route(message, adapter)


def check_message(services: Services, content: str) -> str:
    text = content.strip()
    if not text:
        raise RequestError("the message is empty")
    limit = services.settings.max_question_chars
    if len(content) > limit:
        raise RequestError(
            f"the message is {len(content)} characters; the limit is {limit} (RAGNET_MAX_QUESTION_CHARS)"
        )
    return text


def check_history(services: Services, messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """A stateless request's messages -> (history, the new customer message). System messages are
    the client's instructions; the rest must alternate user / assistant and end with the user."""
    turns = [m for m in messages if m["role"] != "system"]
    limit = services.settings.max_history_turns
    if not turns:
        raise RequestError("messages: send at least one user message")
    if len(turns) > limit:
        raise RequestError(
            f"messages: {len(turns)} turns; the limit is {limit} (RAGNET_MAX_HISTORY_TURNS): "
            "start a new session"
        )
    for i, m in enumerate(turns):
        want = "user" if (len(turns) - 1 - i) % 2 == 0 else "assistant"
        if m["role"] != want:
            raise RequestError(
                f"messages: roles must alternate user/assistant and end with a user message; "
                f"turn {i} is {m['role']!r} where {want!r} was expected"
            )
        if not str(m["content"]).strip():
            raise RequestError(f"messages: turn {i} is empty")
        if len(str(m["content"])) > services.settings.max_question_chars * 4:
            raise RequestError(
                f"messages: turn {i} is longer than {services.settings.max_question_chars * 4} characters"
            )
    message = check_message(services, str(turns[-1]["content"]))
    return [{"role": m["role"], "content": str(m["content"])} for m in turns[:-1]], message


def stored_history(services: Services, session_id: str) -> list[dict[str, Any]]:
    out = []
    for m in services.copilot_store.messages(session_id):
        data = m.get("data") or {}
        entry: dict[str, Any] = {"role": m["role"], "content": m["content"]}
        if m["role"] == "user":
            entry["standalone"] = data.get("standalone")
        else:
            entry["answer_source"] = m.get("answer_source")
            entry["confidence"] = data.get("confidence")
            entry["sources"] = [c["title"] for c in data.get("citations", []) if c.get("cited")]
        out.append(entry)
    return out


def _mark_refusals(history: list[dict[str, Any]], assistant: Assistant) -> list[dict[str, Any]]:
    """Stateless history: an answer that is the fixed "nothing found" reply was a refusal."""
    reply = assistant["no_answer_reply"].strip()
    return [
        {**h, "answer_source": "refusal"} if h["role"] == "assistant" and h["content"].strip() == reply else h
        for h in history
    ]


def turn_events(
    services: Services,
    record: AssistantRecord,
    message: str,
    *,
    session_id: str | None = None,
    history: list[dict[str, Any]] | None = None,
    system: str | None = None,
    today: dt.date | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Event]:
    """(event, data) pairs — ``rewrite``, ``retrieval``, ``token``…, ``citation``…, then ``done``
    with the whole turn. Everything that can be refused is checked before the first event."""
    started = time.perf_counter()
    message = check_message(services, message)
    assistant = _assistant(services, record, system)
    if session_id is not None:
        if services.copilot_store.get_session(session_id) is None:
            raise RecordNotFound(f"no session {session_id!r}")
        history = stored_history(services, session_id)
        if len(history) + 2 > services.settings.max_history_turns:
            raise RequestError(
                f"session {session_id!r} holds {len(history)} messages; the limit is "
                f"{services.settings.max_history_turns} (RAGNET_MAX_HISTORY_TURNS): start a new session"
            )
    else:
        history = _mark_refusals(list(history or []), assistant)
    route = _route(services, record, message)
    stop = stop or threading.Event()
    context = services.copilot_context(route, stop.is_set)
    inputs: dict[str, Any] = {
        "assistant": assistant,
        "message": message,
        "history": history,
        "today": (today or dt.date.today()).isoformat(),
        "llm_calls": 0,
        "trace": [],
        "timings": {},
    }

    def run() -> Iterator[Event]:
        state: dict[str, Any] = {}
        for kind, chunk in services.copilot_graph.stream(
            inputs, context=context, stream_mode=["custom", "values"]
        ):
            if kind == "custom":
                data = dict(chunk)
                yield str(data.pop("event")), data
            else:
                state = chunk
        cancelled = stop.is_set() and bool(state.get("cut_short"))
        yield "done", _finish(services, record, session_id, message, state, route, started, cancelled)

    return run()


def _finish(
    services: Services,
    record: AssistantRecord,
    session_id: str | None,
    message: str,
    state: dict[str, Any],
    route: Route,
    started: float,
    cancelled: bool,
) -> dict[str, Any]:
    timings = dict(state.get("timings", {}))
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    rewrite = state.get("rewrite", {})
    data = {
        "grounded": bool(state.get("grounded")),
        "citations": state.get("citations", []),
        "faq": state.get("faq"),
        "confidence": state.get("confidence"),
        "rewrite": rewrite,
        "route": route.as_dict(),
        "llm_calls": state.get("llm_calls", 0),
        "steps": state.get("trace", []),
        "timings": timings,
        "cancelled": cancelled,
    }
    handoff = _handoff_record(services, record, session_id, state, message)
    store = services.copilot_store
    user_id, answer_id, opened = None, uuid.uuid4().hex, None
    if session_id is not None:
        user_row, answer_row, opened = store.append_exchange(
            session_id,
            {"content": message, "data": {"standalone": state.get("standalone"), "rewrite": rewrite}},
            {"content": state.get("answer", ""), "answer_source": state.get("answer_source"), "data": data},
            handoff,
        )
        user_id, answer_id = user_row["id"], answer_row["id"]
    elif handoff is not None:
        opened = store.open_handoff(record.id, handoff)
    if opened is not None and (opened.get("webhook") or {}).get("status") == "pending":
        services.webhooks.submit(opened["id"])
    shown = opened or (store.open_handoff_for(session_id) if session_id and state.get("handoff") else None)
    return {
        "id": answer_id,
        "session_id": session_id,
        "user_message_id": user_id,
        "assistant": {"id": record.id, "name": record.name},
        "answer": state.get("answer", ""),
        "answer_source": state.get("answer_source"),
        "handoff": None if shown is None else _handoff_view(shown),
        **{k: v for k, v in data.items() if k not in ("steps", "timings", "route", "llm_calls")},
        "timings": timings,
        "trace": {"route": data["route"], "llm_calls": data["llm_calls"], "steps": data["steps"]},
    }


def _handoff_record(
    services: Services, record: AssistantRecord, session_id: str | None, state: dict[str, Any], message: str
) -> dict[str, Any] | None:
    """The handoff to open for this turn (None: none, or the session already has one open)."""
    wanted = state.get("handoff")
    if not wanted:
        return None
    if session_id is not None and services.copilot_store.open_handoff_for(session_id) is not None:
        return None
    handoff: dict[str, Any] = {"reason": wanted["reason"]}
    url = record.config.get("webhook_url")
    if url:
        payload = {
            "event": "handoff.opened",
            "assistant": {"id": record.id, "name": record.name},
            "session_id": session_id,
            "reason": wanted["reason"],
            "message": message,
            "answer": state.get("answer", ""),
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        handoff["webhook"] = {"url": url, "status": "pending", "attempts": 0, "payload": payload}
    return handoff


def _handoff_view(row: dict[str, Any]) -> dict[str, Any]:
    hook = dict(row.get("webhook") or {})
    hook.pop("payload", None)
    return {
        "id": row["id"],
        "assistant_id": row["assistant_id"],
        "session_id": row["session_id"],
        "message_id": row["message_id"],
        "reason": row["reason"],
        "status": row["status"],
        "assignee": row["assignee"],
        "note": row["note"],
        "webhook": hook,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


handoff_view = _handoff_view


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def answer(services: Services, record: AssistantRecord, message: str, **options: Any) -> dict[str, Any]:
    """The whole turn: the ``done`` event of :func:`turn_events`."""
    for event, data in turn_events(services, record, message, **options):
        if event == "done":
            return data
    raise AssertionError("the copilot graph ended without a response")

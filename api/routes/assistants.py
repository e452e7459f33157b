"""The copilot's HTTP API: assistants, their sessions and messages, stateless turns, feedback, export.

An assistant is visible to a key allowed on every one of its knowledge bases, and so are its
sessions; writing an assistant needs an admin key for all of them. A turn answers as JSON, or as
server-sent events with named events (``rewrite``, ``retrieval``, ``token``, ``citation``, ``done``,
``error``) and a heartbeat comment while quiet.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AnyHttpUrl, BaseModel, Field, field_validator

from api import copilot
from api.auth import Principal, PrincipalDep
from api.deps import ServicesDep
from api.errors import RequestError, classify, error_body
from api.schemas import ErrorResponse
from api.services import Services
from api.sse import event_stream, named_event
from graph.copilot import DEFAULT_HANDOFF, DEFAULT_NO_ANSWER
from retrieval.copilot_store import AssistantRecord, RecordNotFound
from retrieval.errors import RagnetError

router = APIRouter(prefix="/v1", tags=["copilot"])

_ERR: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 409, 422)}
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ADAPTER = r"^[a-z][a-z0-9_\-]{0,47}$"
#: A hard ceiling on a message body; the configured limit (RAGNET_MAX_QUESTION_CHARS) is lower.
HARD_LIMIT = 100_000


# --- bodies ----------------------------------------------------------------------------
class _AssistantFields(BaseModel):
    model_config = {"extra": "forbid"}

    description: str | None = Field(default=None, max_length=2000)
    strict: bool | None = Field(
        default=None, description="Nothing relevant found -> the fixed `no_answer_reply` (default true)."
    )
    faq_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="FAQ match score for a verbatim answer (null: the scorer's default).",
    )
    no_answer_reply: str | None = Field(default=None, min_length=1, max_length=2000)
    handoff_reply: str | None = Field(default=None, min_length=1, max_length=2000)
    handoff_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Hand over when two answers in a row are below this (null: never).",
    )
    adapter: str | None = Field(
        default=None,
        pattern=ADAPTER,
        description="A LoRA adapter, 'base' for the base model, null: the router.",
    )
    top_k: int | None = Field(
        default=None, ge=1, le=20, description="Passages per answer (null: RAGNET_TOP_K)."
    )
    system_prompt: str | None = Field(default=None, max_length=8000)
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="POSTed each handoff (off the reply path)."
    )


class AssistantCreate(_AssistantFields):
    name: str = Field(pattern=NAME, examples=["helpdesk"])
    kbs: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")]] = Field(
        min_length=1, max_length=20, examples=[["support"]]
    )


class AssistantPatch(_AssistantFields):
    name: str | None = Field(default=None, pattern=NAME)
    kbs: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")]] | None = Field(
        default=None, min_length=1, max_length=20
    )


class SessionCreate(BaseModel):
    model_config = {"extra": "forbid"}
    title: str = Field(default="", max_length=200)
    user: str = Field(default="", max_length=128, description="Your label for the customer.")


class SessionRename(BaseModel):
    model_config = {"extra": "forbid"}
    title: str = Field(max_length=200)


class MessageCreate(BaseModel):
    model_config = {"extra": "forbid"}
    content: str = Field(max_length=HARD_LIMIT, examples=["How do I reset my password?"])
    stream: bool = Field(default=False, description="Answer as server-sent events.")
    today: dt.date | None = Field(
        default=None, description="The date 'yesterday' resolves against (default: today)."
    )


class ChatTurn(BaseModel):
    model_config = {"extra": "forbid"}
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=HARD_LIMIT)


class CompletionCreate(BaseModel):
    model_config = {"extra": "forbid"}
    messages: list[ChatTurn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    today: dt.date | None = None


class FeedbackCreate(BaseModel):
    model_config = {"extra": "forbid"}
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=4000)


class FaqFromFeedback(BaseModel):
    model_config = {"extra": "forbid"}
    answer: str = Field(min_length=1, max_length=20000, description="The corrected answer, stored verbatim.")
    questions: list[str] | None = Field(
        default=None, min_length=1, max_length=50, description="Default: the customer's question."
    )
    kb: str | None = Field(default=None, description="Default: the assistant's first knowledge base.")

    @field_validator("answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("answer is empty")
        return value.strip()


# --- access ----------------------------------------------------------------------------
def _record(services: Services, who: Principal, key: str, *, write: bool = False) -> AssistantRecord:
    record = copilot.get_assistant(services, key)
    if not can_see(services, who, record, write=write):
        if write and can_see(services, who, record):
            raise RequestError(
                f"changing assistant {record.name!r} needs an admin key for its knowledge bases",
                403,
                "forbidden",
            )
        raise RecordNotFound(f"no assistant {key!r}")  # a key that may not see it learns nothing
    return record


def can_see(services: Services, who: Principal, record: AssistantRecord, *, write: bool = False) -> bool:
    names = copilot.kb_names(services, record)
    if len(names) < len(record.config.get("kb_ids", [])) and not write:
        return who.role == "admin" and who.can_read("*")
    allowed = who.can_write if write else who.can_read
    return all(allowed(kb) for kb in names)


def _session(services: Services, record: AssistantRecord, sid: str) -> dict[str, Any]:
    found = services.copilot_store.get_session(sid)
    if found is None or found["assistant_id"] != record.id:
        raise RecordNotFound(f"no session {sid!r} in assistant {record.name!r}")
    return found


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


def message_view(row: dict[str, Any], rating: dict[str, Any] | None = None) -> dict[str, Any]:
    data = dict(row.get("data") or {})
    out = {
        "id": row["id"],
        "seq": row["seq"],
        "role": row["role"],
        "content": row["content"],
        "created_at": row["created_at"].isoformat()
        if isinstance(row["created_at"], dt.datetime)
        else row["created_at"],
    }
    if row["role"] == "assistant":
        out.update(
            answer_source=row.get("answer_source"),
            citations=data.get("citations", []),
            faq=data.get("faq"),
            confidence=data.get("confidence"),
            cancelled=bool(data.get("cancelled")),
            trace={
                "rewrite": data.get("rewrite"),
                "route": data.get("route"),
                "llm_calls": data.get("llm_calls"),
                "steps": data.get("steps", []),
                "timings": data.get("timings", {}),
            },
            feedback=None if rating is None else {"rating": rating["rating"], "comment": rating["comment"]},
        )
    else:
        out["standalone"] = data.get("standalone")
    return out


def _config(body: _AssistantFields, services: Services) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True, exclude={"name", "kbs"})
    if "webhook_url" in values and values["webhook_url"] is not None:
        values["webhook_url"] = str(values["webhook_url"])
    copilot.check_adapter(services, values.get("adapter"))
    return values


# --- assistants ------------------------------------------------------------------------
@router.get("/assistants", responses=_ERR)
def list_assistants(services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    records = [r for r in services.copilot_store.list_assistants() if can_see(services, who, r)]
    return {"assistants": [copilot.view(services, r) for r in records]}


@router.post("/assistants", status_code=201, responses=_ERR)
def create_assistant(body: AssistantCreate, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """A named copilot: its knowledge bases, strict mode, FAQ threshold, replies, adapter, prompt."""
    for kb in body.kbs:
        who.check(kb, write=True)
    config = {k: v for k, v in _config(body, services).items() if v is not None or k == "handoff_confidence"}
    config.setdefault("no_answer_reply", DEFAULT_NO_ANSWER)
    config.setdefault("handoff_reply", DEFAULT_HANDOFF)
    config["kb_ids"] = copilot.kb_ids(services, body.kbs)
    return copilot.view(services, services.copilot_store.create_assistant(body.name, config))


@router.get("/assistants/{assistant}", responses=_ERR)
def get_assistant(assistant: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """By id or name."""
    return copilot.view(services, _record(services, who, assistant))


@router.patch("/assistants/{assistant}", responses=_ERR)
def update_assistant(
    assistant: str, body: AssistantPatch, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    """Change some fields; a field sent as null goes back to its default."""
    record = _record(services, who, assistant, write=True)
    config = {**record.config, **_config(body, services)}
    if body.kbs is not None:
        for kb in body.kbs:
            who.check(kb, write=True)
        config["kb_ids"] = copilot.kb_ids(services, body.kbs)
    config = {k: v for k, v in config.items() if v is not None or k == "handoff_confidence"}
    updated = services.copilot_store.update_assistant(record.id, name=body.name, config=config)
    return copilot.view(services, updated)


@router.delete("/assistants/{assistant}", status_code=204, responses=_ERR)
def delete_assistant(assistant: str, services: ServicesDep, who: PrincipalDep) -> Response:
    """The assistant and its sessions, messages, feedback and handoffs."""
    record = _record(services, who, assistant, write=True)
    services.copilot_store.delete_assistant(record.id)
    return Response(status_code=204)


# --- sessions --------------------------------------------------------------------------
@router.post("/assistants/{assistant}/sessions", status_code=201, responses=_ERR)
def create_session(
    assistant: str, services: ServicesDep, who: PrincipalDep, body: SessionCreate | None = None
) -> dict[str, Any]:
    record = _record(services, who, assistant)
    body = body or SessionCreate()
    return jsonable(services.copilot_store.create_session(record.id, body.title, body.user))


@router.get("/assistants/{assistant}/sessions", responses=_ERR)
def list_sessions(
    assistant: str,
    services: ServicesDep,
    who: PrincipalDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    record = _record(services, who, assistant)
    rows, total = services.copilot_store.list_sessions(record.id, offset, limit)
    return {"sessions": [jsonable(r) for r in rows], "total": total}


@router.get("/assistants/{assistant}/sessions/{sid}", responses=_ERR)
def get_session(assistant: str, sid: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """The session with its messages (each answer with citations, trace and feedback) and its open handoff."""
    record = _record(services, who, assistant)
    found = _session(services, record, sid)
    store = services.copilot_store
    rows = store.messages(sid)
    ratings = store.feedback_for(r["id"] for r in rows if r["role"] == "assistant")
    handoff = store.open_handoff_for(sid)
    return {
        **jsonable(found),
        "messages": [message_view(r, ratings.get(r["id"])) for r in rows],
        "handoff": None if handoff is None else copilot.handoff_view(handoff),
    }


@router.patch("/assistants/{assistant}/sessions/{sid}", responses=_ERR)
def rename_session(
    assistant: str, sid: str, body: SessionRename, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    record = _record(services, who, assistant)
    _session(services, record, sid)
    return jsonable(services.copilot_store.rename_session(sid, body.title))


@router.delete("/assistants/{assistant}/sessions/{sid}", status_code=204, responses=_ERR)
def delete_session(assistant: str, sid: str, services: ServicesDep, who: PrincipalDep) -> Response:
    """The session, its messages, their feedback and its handoffs."""
    record = _record(services, who, assistant)
    _session(services, record, sid)
    services.copilot_store.delete_session(sid)
    return Response(status_code=204)


def _jsonl(services: Services, session_ids: list[str]) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for entry in services.copilot_store.export(session_ids):
            messages = [
                {**jsonable(m), "feedback": m["feedback"] and jsonable(m["feedback"])}
                for m in entry["messages"]
            ]
            yield (
                json.dumps({**jsonable(entry), "messages": messages}, ensure_ascii=False, default=str) + "\n"
            )

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/assistants/{assistant}/sessions/{sid}/export", responses=_ERR)
def export_session(assistant: str, sid: str, services: ServicesDep, who: PrincipalDep) -> StreamingResponse:
    """One JSON line: the session with its messages and their feedback."""
    record = _record(services, who, assistant)
    _session(services, record, sid)
    return _jsonl(services, [sid])


@router.get("/assistants/{assistant}/export", responses=_ERR)
def export_assistant(assistant: str, services: ServicesDep, who: PrincipalDep) -> StreamingResponse:
    """Every session of the assistant, one JSON line each (streamed in batches)."""
    record = _record(services, who, assistant)
    return _jsonl(services, services.copilot_store.session_ids(record.id))


# --- turns -----------------------------------------------------------------------------
def _reply(
    request: Request, services: Services, events: Iterator[copilot.Event], stop: threading.Event, stream: bool
) -> Any:
    if not stream:
        for event, data in events:
            if event == "done":
                return data
        raise AssertionError("the copilot graph ended without a response")

    def on_error(exc: BaseException) -> str:
        status, code = classify(exc) if isinstance(exc, RagnetError) else (500, "internal_error")
        message = str(exc) if isinstance(exc, RagnetError) else "internal error; see the server log"
        return named_event("error", {**error_body(code, message), "status": status})

    return event_stream(request, events, stop, services.settings.sse_heartbeat_s, named_event, on_error)


@router.post("/assistants/{assistant}/sessions/{sid}/messages", responses=_ERR)
def post_message(
    assistant: str, sid: str, body: MessageCreate, request: Request, services: ServicesDep, who: PrincipalDep
) -> Any:
    """The customer's next message: the answer (FAQ verbatim, grounded with citations, the fixed
    reply, or a handoff), stored in the session with its trace. `stream: true` gives SSE."""
    record = _record(services, who, assistant)
    _session(services, record, sid)
    stop = threading.Event()
    events = copilot.turn_events(services, record, body.content, session_id=sid, today=body.today, stop=stop)
    return _reply(request, services, events, stop, body.stream)


@router.get("/assistants/{assistant}/sessions/{sid}/messages", responses=_ERR)
def list_messages(assistant: str, sid: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    record = _record(services, who, assistant)
    _session(services, record, sid)
    rows = services.copilot_store.messages(sid)
    ratings = services.copilot_store.feedback_for(r["id"] for r in rows if r["role"] == "assistant")
    return {"messages": [message_view(r, ratings.get(r["id"])) for r in rows]}


@router.post("/assistants/{assistant}/completions", responses=_ERR)
def stateless_turn(
    assistant: str, body: CompletionCreate, request: Request, services: ServicesDep, who: PrincipalDep
) -> Any:
    """Stateless mode: the client sends the whole conversation (alternating user / assistant,
    ending with the user; system messages add to the assistant's prompt); nothing is stored but
    a handoff."""
    record = _record(services, who, assistant)
    turns = [m.model_dump() for m in body.messages]
    history, message = copilot.check_history(services, turns)
    system = "\n\n".join(m["content"] for m in turns if m["role"] == "system") or None
    stop = threading.Event()
    events = copilot.turn_events(
        services, record, message, history=history, system=system, today=body.today, stop=stop
    )
    return _reply(request, services, events, stop, body.stream)


# --- feedback --------------------------------------------------------------------------
@router.post("/assistants/{assistant}/sessions/{sid}/messages/{mid}/feedback", responses=_ERR)
def post_feedback(
    assistant: str, sid: str, mid: str, body: FeedbackCreate, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    """Thumbs up or down on an answer, with an optional comment (a second rating replaces the first)."""
    record = _record(services, who, assistant)
    _session(services, record, sid)
    message = services.copilot_store.get_message(mid)
    if message is None or message["session_id"] != sid:
        raise RecordNotFound(f"no message {mid!r} in session {sid!r}")
    if message["role"] != "assistant":
        raise RequestError("only answers can be rated; this message is the customer's")
    return jsonable(services.copilot_store.put_feedback(message, record.id, body.rating, body.comment))

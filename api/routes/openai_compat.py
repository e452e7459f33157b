"""OpenAI-compatible chat: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Any OpenAI client (the ``openai`` package, LangChain, LlamaIndex, Open WebUI, LiteLLM) talks to
ragnet unchanged. ``model`` names an assistant (``copilot/<assistant>``) or search QA over a
knowledge base (``search/<kb>``); ``messages`` carry the history. Errors take OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``).

Extensions (OpenAI clients keep unknown fields; see docs/http-api.md):

- ``citations``: on the response's ``message`` and on the final stream chunk (the one with a
  ``finish_reason``), the numbered sources the ``[n]`` markers of the text refer to;
- ``ragnet``: beside them, ``answer_source`` (faq | documents | model | refusal | handoff), the FAQ
  matched, the handoff opened, confidence, the rewrite, the session and message ids;
- request ``session_id`` (copilot models): store the exchange in that session and take the
  history from it (then only the last user message of ``messages`` is read).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from agents.query_rewrite import Turn
from api import copilot, qa
from api.auth import Principal, PrincipalDep
from api.deps import ServicesDep
from api.errors import RequestError, classify, openai_error
from api.routes.assistants import HARD_LIMIT, can_see
from api.services import Services
from api.sse import event_stream
from retrieval.copilot_store import AssistantRecord
from retrieval.errors import RagnetError

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

COPILOT, SEARCH = "copilot/", "search/"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = Field(default=None)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request; sampling fields ragnet does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(examples=["copilot/helpdesk"], max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="One choice only.")
    session_id: str | None = Field(
        default=None, max_length=64, description="ragnet: store the exchange here."
    )


def _model_list(services: Services, who: Principal) -> list[dict[str, Any]]:
    out = []
    for record in services.copilot_store.list_assistants():
        if can_see(services, who, record):
            out.append(
                {
                    "id": COPILOT + record.name,
                    "object": "model",
                    "created": int(record.created_at.timestamp()),
                    "owned_by": "ragnet",
                }
            )
    for kb in services.metadata.list_kbs():
        if who.can_read(kb.name):
            out.append(
                {
                    "id": SEARCH + kb.name,
                    "object": "model",
                    "created": int(kb.created_at.timestamp()),
                    "owned_by": "ragnet",
                }
            )
    return out


@router.get("/models")
def list_models(services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """The assistants (``copilot/<name>``) and knowledge bases (``search/<kb>``) this key may use."""
    return {"object": "list", "data": _model_list(services, who)}


def _unknown(model: str) -> RequestError:
    return RequestError(
        f"the model {model!r} does not exist: use copilot/<assistant> or search/<kb> (GET /v1/models)",
        404,
        "model_not_found",
        "model",
    )


def _assistant(services: Services, who: Principal, model: str) -> AssistantRecord:
    record = services.copilot_store.get_assistant(model.removeprefix(COPILOT))
    if record is None or not can_see(services, who, record):
        raise _unknown(model)
    return record


@router.post("/chat/completions")
def chat_completions(
    body: ChatCompletionRequest, request: Request, services: ServicesDep, who: PrincipalDep
) -> Any:
    """A chat completion from a copilot assistant or from search QA over a knowledge base."""
    turns = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages
    ]
    for i, t in enumerate(turns):
        if len(t["content"]) > HARD_LIMIT:
            raise RequestError(
                f"messages.{i}.content is over {HARD_LIMIT} characters", param=f"messages.{i}.content"
            )
    stop = threading.Event()
    if body.model.startswith(SEARCH):
        kb = body.model.removeprefix(SEARCH)
        if services.metadata.get_kb(kb) is None or not who.can_read(kb):
            raise _unknown(body.model)
        history, message = copilot.check_history(services, turns)
        events = _search_events(services, kb, history, message)
    else:
        record = _assistant(services, who, body.model)
        if body.session_id is not None:
            users = [t for t in turns if t["role"] == "user"]
            if not users:
                raise RequestError("messages: send a user message", param="messages")
            events = copilot.turn_events(
                services, record, users[-1]["content"], session_id=body.session_id, stop=stop
            )
        else:
            history, message = copilot.check_history(services, turns)
            system = "\n\n".join(t["content"] for t in turns if t["role"] == "system") or None
            events = copilot.turn_events(services, record, message, history=history, system=system, stop=stop)
    prompt_tokens = sum(_tokens(services, t["content"]) for t in turns)
    reply = _Reply(body.model, prompt_tokens)
    if not body.stream:
        for event, data in events:
            if event == "done":
                return reply.completion(services, data)
        raise AssertionError("the graph ended without a response")
    usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunks() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "chunk", reply.chunk({"role": "assistant", "content": ""})
        for event, data in events:
            if event == "token":
                yield "chunk", reply.chunk({"content": data["text"]})
            elif event == "done":
                yield "chunk", reply.final(services, data)
                if usage:
                    yield "chunk", {**reply.head(), "choices": [], "usage": reply.usage}
        yield "done", {}

    def fmt(kind: str, data: dict[str, Any]) -> str:
        return "data: [DONE]\n\n" if kind == "done" else f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def on_error(exc: BaseException) -> str:
        status, code = classify(exc) if isinstance(exc, RagnetError) else (500, "internal_error")
        message = str(exc) if isinstance(exc, RagnetError) else "internal error; see the server log"
        return f"data: {json.dumps(openai_error(status, code, message))}\n\ndata: [DONE]\n\n"

    return event_stream(request, chunks(), stop, services.settings.sse_heartbeat_s, fmt, on_error)


def _tokens(services: Services, text: str) -> int:
    return services.generator.count_tokens(text) if text else 0


class _Reply:
    """The ids, timestamps and usage one completion's response and chunks share."""

    def __init__(self, model: str, prompt_tokens: int) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.usage: dict[str, int] = {}

    def head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **self.head(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _account(self, services: Services, answer: str) -> None:
        completion = _tokens(services, answer)
        self.usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def final(self, services: Services, done: dict[str, Any]) -> dict[str, Any]:
        self._account(services, done["answer"])
        out = self.chunk({}, _finish_reason(done))
        return {**out, "citations": done["citations"], "ragnet": _extension(done)}

    def completion(self, services: Services, done: dict[str, Any]) -> dict[str, Any]:
        self._account(services, done["answer"])
        message = {"role": "assistant", "content": done["answer"], "citations": done["citations"]}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": _finish_reason(done), "logprobs": None}
            ],
            "usage": self.usage,
            "citations": done["citations"],
            "ragnet": _extension(done),
        }


def _finish_reason(done: dict[str, Any]) -> str:
    return "length" if done.get("truncated") else "stop"


def _extension(done: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "answer_source",
        "grounded",
        "faq",
        "handoff",
        "confidence",
        "rewrite",
        "session_id",
        "id",
        "user_message_id",
        "timings",
    )
    out = {k: done.get(k) for k in keys if k in done}
    if "id" in out:
        out["message_id"] = out.pop("id")
    trace = done.get("trace")
    out["llm_calls"] = trace.get("llm_calls") if isinstance(trace, dict) else None
    return out


def _search_events(
    services: Services, kb: str, history: list[dict[str, Any]], message: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Search QA over one knowledge base, the question rewritten from the history first."""
    turns = [Turn("assistant" if h["role"] == "assistant" else "user", h["content"]) for h in history]
    rewrite = services.rewriter.rewrite(turns, message, today=dt.date.today())
    question = rewrite.standalone or message
    events = qa.answer_events(services, kb, question)
    info = {
        "standalone": rewrite.standalone,
        "method": rewrite.method,
        "reason": rewrite.reason,
        "replaced": [list(p) for p in rewrite.replaced],
        "topic_change": rewrite.topic_change,
    }

    def run() -> Iterator[tuple[str, dict[str, Any]]]:
        for event, data in events:
            if event == "done":
                source = "documents" if data["grounded"] else "model"
                yield (
                    "done",
                    {
                        **data,
                        "answer_source": source,
                        "rewrite": info,
                        "citations": [{**c, "kind": "document", "kb": kb} for c in data["citations"]],
                    },
                )
            else:
                yield event, data

    return run()

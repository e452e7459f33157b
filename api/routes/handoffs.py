"""The support team's side of the copilot: handoffs to a person, and feedback turned into FAQs.

A key sees the handoffs and feedback of the assistants it may see (every knowledge base of the
assistant); moving a handoff or turning feedback into a FAQ needs an admin key for them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import copilot
from api.auth import Principal, PrincipalDep
from api.deps import ServicesDep
from api.errors import RequestError
from api.routes.assistants import FaqFromFeedback, can_see, jsonable
from api.schemas import ErrorResponse
from api.services import Services
from retrieval.copilot_store import AssistantRecord, RecordNotFound
from retrieval.faq_records import make_record

router = APIRouter(prefix="/v1", tags=["copilot"])

_ERR: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422)}


class HandoffPatch(BaseModel):
    model_config = {"extra": "forbid"}
    status: Literal["open", "taken", "closed"] | None = Field(
        default=None, description="open -> taken -> closed (taken may go back to open; closed stays closed)."
    )
    assignee: str | None = Field(default=None, max_length=128)
    note: str | None = Field(default=None, max_length=4000)


def _visible(services: Services, who: Principal, assistant: str | None) -> dict[str, AssistantRecord]:
    records = services.copilot_store.list_assistants()
    if assistant is not None:
        records = [r for r in records if assistant in (r.id, r.name)]
    return {r.id: r for r in records if can_see(services, who, r)}


def _owner(
    services: Services, who: Principal, assistant_id: str, what: str, *, write: bool
) -> AssistantRecord:
    record = services.copilot_store.get_assistant(assistant_id)
    if record is None or not can_see(services, who, record):
        raise RecordNotFound(f"no {what}")
    if write and not can_see(services, who, record, write=True):
        raise RequestError(
            f"this needs an admin key for assistant {record.name!r}'s knowledge bases", 403, "forbidden"
        )
    return record


@router.get("/handoffs", responses=_ERR)
def list_handoffs(
    services: ServicesDep,
    who: PrincipalDep,
    status: Literal["open", "taken", "closed"] | None = None,
    assistant: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Handoffs, newest first, each with its assistant and session id."""
    visible = _visible(services, who, assistant)
    rows, total = services.copilot_store.list_handoffs(visible, status, offset, limit)
    return {
        "handoffs": [{**copilot.handoff_view(r), "assistant": visible[r["assistant_id"]].name} for r in rows],
        "total": total,
    }


@router.get("/handoffs/{hid}", responses=_ERR)
def get_handoff(hid: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """A handoff with the messages of its session (the conversation the person takes over)."""
    row = services.copilot_store.get_handoff(hid)
    if row is None:
        raise RecordNotFound(f"no handoff {hid!r}")
    record = _owner(services, who, row["assistant_id"], f"handoff {hid!r}", write=False)
    messages = services.copilot_store.messages(row["session_id"]) if row["session_id"] else []
    return {
        **copilot.handoff_view(row),
        "assistant": record.name,
        "messages": [{"role": m["role"], "content": m["content"], "seq": m["seq"]} for m in messages],
    }


@router.patch("/handoffs/{hid}", responses=_ERR)
def update_handoff(hid: str, body: HandoffPatch, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """Take, close or reopen a handoff; set who has it and a note. A move the status does not allow is 409."""
    row = services.copilot_store.get_handoff(hid)
    if row is None:
        raise RecordNotFound(f"no handoff {hid!r}")
    record = _owner(services, who, row["assistant_id"], f"handoff {hid!r}", write=True)
    updated = services.copilot_store.update_handoff(
        hid, status=body.status, assignee=body.assignee, note=body.note
    )
    return {**copilot.handoff_view(updated), "assistant": record.name}


@router.get("/feedback", responses=_ERR)
def list_feedback(
    services: ServicesDep,
    who: PrincipalDep,
    rating: Literal["up", "down"] | None = None,
    assistant: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Rated answers, newest first, each with the customer's question and the answer."""
    visible = _visible(services, who, assistant)
    rows, total = services.copilot_store.list_feedback(visible, rating, offset, limit)
    out = []
    for r in rows:
        answer, question = r.pop("answer"), r.pop("question")
        out.append(
            {
                **jsonable(r),
                "assistant": visible[r["assistant_id"]].name,
                "question": None if question is None else question["content"],
                "answer": None if answer is None else answer["content"],
                "answer_source": None if answer is None else answer.get("answer_source"),
            }
        )
    return {"feedback": out, "total": total}


@router.post("/feedback/{fid}/faq", status_code=201, responses=_ERR)
def feedback_to_faq(
    fid: str, body: FaqFromFeedback, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    """Turn a rated answer into a FAQ: the customer's question (or the questions given) with the
    corrected answer, written into the knowledge base, so the next customer gets it verbatim."""
    store = services.copilot_store
    row = store.get_feedback(fid)
    if row is None:
        raise RecordNotFound(f"no feedback {fid!r}")
    record = _owner(services, who, row["assistant_id"], f"feedback {fid!r}", write=True)
    kbs = copilot.kb_names(services, record)
    kb = body.kb or (kbs[0] if kbs else None)
    if kb is None or kb not in kbs:
        raise RequestError(f"kb must be one of assistant {record.name!r}'s knowledge bases: {', '.join(kbs)}")
    who.check(kb, write=True)
    questions = body.questions
    if questions is None:
        _, question = store.exchange(row["message_id"])
        if question is None:
            raise RequestError("the rated answer has no question before it; send `questions`")
        questions = [question["content"]]
    faq_id = f"feedback-{fid}"
    try:
        faq = make_record(
            {
                "id": faq_id,
                "questions": questions,
                "answer": body.answer,
                "metadata": {"from_feedback": fid, "assistant": record.name},
            }
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    services.knowledge.put_faq(kb, faq)
    store.mark_feedback_faq(fid, kb, faq_id)
    return {"kb": kb, "id": faq_id, "questions": list(questions), "answer": body.answer}

"""HTTP request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

KB_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
#: A hard ceiling on any question body; the configured limit (RAGNET_MAX_QUESTION_CHARS) is lower.
QUESTION_HARD_LIMIT = 100_000


class AnswerRequest(BaseModel):
    kb: str = Field(description="Knowledge base name.", pattern=KB_PATTERN, examples=["demo"])
    question: str = Field(
        description="The question; 1 to RAGNET_MAX_QUESTION_CHARS characters (default 2000).",
        max_length=QUESTION_HARD_LIMIT,
        examples=["When did Apollo 11 land on the Moon?"],
    )
    stream: bool = Field(default=False, description="Answer as server-sent events.")
    top_k: int | None = Field(
        default=None, ge=1, le=20, description="Sources to retrieve (default RAGNET_TOP_K: 2)."
    )
    mode: Literal["auto", "single", "agentic"] | None = Field(
        default=None,
        description="auto: multi-hop questions are decomposed, the rest answered single-shot; single or "
        "agentic force one (default RAGNET_ANSWER_MODE: auto).",
    )
    strict: bool | None = Field(
        default=None,
        description="true: answer 'not in the knowledge base' instead of the base model when nothing is "
        "found (default: the knowledge base's setting, else RAGNET_STRICT).",
    )

    adapter: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_\-]{0,47}$",
        description="Generate with this LoRA adapter (GET /v1/adapters) instead of the router's choice; "
        "an unknown name is a 400.",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("question is empty")
        return value


class Citation(BaseModel):
    n: int = Field(description="The number the answer cites as [n].")
    doc_id: str
    title: str
    text: str
    score: float
    source: str
    cited: bool = Field(description="Whether the answer text cites this source.")


class AnswerResponse(BaseModel):
    id: str
    answer: str
    grounded: bool = Field(
        description="False when the knowledge base had nothing and the base model answered."
    )
    citations: list[Citation]
    timings: dict[str, float]
    route: dict[str, Any] = Field(
        default_factory=dict,
        description="Where the answer was generated: label, confidence, adapters ({} = the base model), "
        "reason ('classifier', 'below threshold', 'no adapter for domain', 'requested', 'router off'), "
        "scores, ms.",
    )
    trace: dict[str, Any] = Field(
        description="pipeline, analysis, plan, steps (each decision), claims, backtracks, budgets and "
        "what was used, and which budget ran out (if one did). Also at GET /v1/search/traces/{id}."
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    vector_store: str
    generator_ready: bool

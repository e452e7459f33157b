"""Search QA, first version: retrieve -> grounded answer with numbered citations, or fallback.

    START -> retrieve -> (evidence above threshold?) -> answer   -> END
                                                     \\-> fallback -> END

Flow control only: retrieval and generation arrive through the runtime context, prompts come
from agents.answering. Answer tokens are sent on LangGraph's custom stream as they decode.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.answering import attribute, fallback_messages, grounded_messages
from agents.generation.base import ChatMessage, GenerationRequest, Generator
from retrieval.documents import Hit

SearchFn = Callable[[str, str, int], list[Hit]]


def _merge(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    return {**left, **right}


class Citation(TypedDict):
    n: int
    doc_id: str
    title: str
    text: str
    score: float
    source: str
    cited: bool


class SearchState(TypedDict, total=False):
    kb: str
    question: str
    top_k: int
    hits: list[Hit]
    evidence: list[Hit]
    answer: str
    grounded: bool
    citations: list[Citation]
    timings: Annotated[dict[str, float], _merge]
    llm_calls: Annotated[int, operator.add]


@dataclass(frozen=True)
class SearchContext:
    search: SearchFn
    generator: Generator
    score_threshold: float
    max_tokens: int = 192
    temperature: float = 0.0
    repetition_penalty: float = 1.05


def retrieve(state: SearchState, runtime: Runtime[SearchContext]) -> dict[str, Any]:
    ctx = runtime.context
    started = time.perf_counter()
    hits = ctx.search(state["kb"], state["question"], state.get("top_k", 4))
    evidence = [h for h in hits if h.evidence_score >= ctx.score_threshold]
    runtime.stream_writer({"event": "retrieval", "hits": len(hits), "evidence": len(evidence)})
    return {
        "hits": hits,
        "evidence": evidence,
        "timings": {"retrieve_ms": round((time.perf_counter() - started) * 1000, 1)},
    }


def route(state: SearchState) -> Literal["answer", "fallback"]:
    return "answer" if state.get("evidence") else "fallback"


def _generate(messages: Sequence[ChatMessage], runtime: Runtime[SearchContext]) -> tuple[str, float]:
    ctx = runtime.context
    request = GenerationRequest(
        messages=messages,
        max_tokens=ctx.max_tokens,
        temperature=ctx.temperature,
        repetition_penalty=ctx.repetition_penalty,
    )
    started = time.perf_counter()
    pieces: list[str] = []
    for piece in ctx.generator.stream(request):
        pieces.append(piece)
        runtime.stream_writer({"event": "token", "text": piece})
    return "".join(pieces).strip(), round((time.perf_counter() - started) * 1000, 1)


def answer(state: SearchState, runtime: Runtime[SearchContext]) -> dict[str, Any]:
    evidence = state["evidence"]
    text, ms = _generate(grounded_messages(state["question"], evidence), runtime)
    text, numbers = attribute(text, evidence)
    cited = set(numbers)
    citations: list[Citation] = [
        {
            "n": i,
            "doc_id": h.doc_id,
            "title": h.title,
            "text": h.reader_text,
            "score": round(h.score, 4),
            "source": h.source,
            "cited": i in cited,
        }
        for i, h in enumerate(evidence, 1)
    ]
    return {
        "answer": text,
        "grounded": True,
        "citations": citations,
        "timings": {"generate_ms": ms},
        "llm_calls": 1,
    }


def fallback(state: SearchState, runtime: Runtime[SearchContext]) -> dict[str, Any]:
    text, ms = _generate(fallback_messages(state["question"]), runtime)
    return {
        "answer": text,
        "grounded": False,
        "citations": [],
        "timings": {"generate_ms": ms},
        "llm_calls": 1,
    }


def build_search_graph() -> Any:
    """The compiled search-QA graph; run it with ``context=SearchContext(...)``."""
    builder = StateGraph(SearchState, context_schema=SearchContext)
    builder.add_node("retrieve", retrieve)
    builder.add_node("answer", answer)
    builder.add_node("fallback", fallback)
    builder.add_edge(START, "retrieve")
    builder.add_conditional_edges("retrieve", route, {"answer": "answer", "fallback": "fallback"})
    builder.add_edge("answer", END)
    builder.add_edge("fallback", END)
    return builder.compile()

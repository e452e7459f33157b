"""The customer-support copilot: one turn of a conversation, FAQ first, grounded, or handed over.

    START -> understand --asks for a person--> handoff -----------------------------> END
                 \\--> match_faq --a FAQ clears the threshold (verbatim, 0 LLM calls)--> END
                          \\--> retrieve -> generate -> check -> END

- ``understand`` rewrites the turn into a standalone question for retrieval (agents/query_rewrite.py:
  rules first, the model where they do not fit) and reads whether the customer asks for a person.
- ``match_faq`` scores the FAQ candidates of every knowledge base of the assistant
  (agents/faq_match.py); the best one at or above the threshold is the answer, word for word.
- ``retrieve`` searches documents in every knowledge base and keeps passages above the evidence
  threshold; FAQs below the verbatim threshold but above the evidence threshold stay as sources.
- ``generate`` answers from the FAQ entries and passages (in sections of their own), with the
  conversation so far; with no source, strict mode gives the assistant's fixed reply and otherwise
  the base model answers and says so (``answer_source: "model"``).
- ``check`` hands over when strict mode refused twice in a row or confidence stayed low
  (agents/handoff.py).

Custom stream events: ``rewrite``, ``retrieval``, ``token``, ``citation``. The state is plain
dicts and strings, so a turn's trace is stored with its answer.
"""

from __future__ import annotations

import datetime as dt
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.answering import attribute
from agents.copilot_prompt import Source, fallback_messages, grounded_messages, history_window
from agents.faq_match import FaqScorer, rank_matches
from agents.generation.base import ChatMessage, Generator
from agents.handoff import asks_for_human, handoff_reason
from agents.query_rewrite import QueryRewriter, Turn
from graph.common import add_times, generate_text, hit_from_dict, hit_to_dict, ms, request_for
from retrieval.documents import Hit

SearchFn = Callable[[str, str, int], list[Hit]]
AnswerSource = Literal["faq", "documents", "model", "refusal", "handoff"]

DEFAULT_NO_ANSWER = "Sorry, I could not find an answer to that in our help center."
DEFAULT_HANDOFF = "I'm passing you to a member of our team, who will take over this conversation shortly."


class Assistant(TypedDict, total=False):
    """An assistant's configuration as the graph reads it (api/copilot.py fills the defaults)."""

    name: str
    kbs: list[str]
    strict: bool
    faq_threshold: float | None  # None: the FAQ scorer's own default
    no_answer_reply: str
    handoff_reply: str
    handoff_confidence: float | None  # None: no handoff on low confidence
    system_prompt: str | None
    top_k: int


class CopilotState(TypedDict, total=False):
    assistant: Assistant
    message: str
    #: Earlier turns, oldest first: role, content and, on assistant turns, answer_source,
    #: confidence and the titles of the sources they cited; on user turns, their standalone rewrite.
    history: list[dict[str, Any]]
    today: str  # ISO date the relative dates of the turn resolve against
    rewrite: dict[str, Any]
    standalone: str
    faqs: list[dict[str, Any]]  # FAQ matches, best first (hit dicts with "score")
    faq: dict[str, Any] | None  # the verbatim match
    hits: list[dict[str, Any]]
    answer: str
    answer_source: AnswerSource
    grounded: bool
    citations: list[dict[str, Any]]
    confidence: float | None
    handoff: dict[str, Any] | None  # {"reason"} when this turn hands over
    cut_short: bool
    llm_calls: Annotated[int, operator.add]
    trace: Annotated[list[dict[str, Any]], operator.add]
    timings: Annotated[dict[str, float], add_times]


@dataclass(frozen=True)
class CopilotContext:
    search: SearchFn
    search_faqs: SearchFn
    faq_scorer: FaqScorer
    generator: Generator
    rewriter: QueryRewriter
    #: Dense relevance a passage or FAQ needs to be a source (the search QA's evidence threshold).
    score_threshold: float
    max_tokens: int = 192
    temperature: float = 0.0
    repetition_penalty: float = 1.05
    #: Tokens of earlier turns the generator sees (newest first, verbatim).
    history_tokens: int = 768
    faq_candidates: int = 20
    #: FAQ entries below the verbatim threshold kept as sources of a generated answer.
    faq_context: int = 2
    #: True once the client has gone away: generation stops at the next token.
    stopped: Callable[[], bool] = lambda: False


def _event(runtime: Runtime[CopilotContext], kind: str, **data: Any) -> list[dict[str, Any]]:
    runtime.stream_writer({"event": kind, **data})
    return [{"step": kind, **data}]


def _turns(history: Sequence[dict[str, Any]]) -> list[Turn]:
    return [
        Turn(
            role="assistant" if h["role"] == "assistant" else "user",
            content=h["content"],
            standalone=h.get("standalone"),
            sources=tuple(h.get("sources") or ()),
        )
        for h in history
    ]


def _chat(history: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    return [
        {"role": "assistant" if h["role"] == "assistant" else "user", "content": h["content"]}
        for h in history
    ]


def _brief(hit: dict[str, Any], **extra: Any) -> dict[str, Any]:
    rel = hit.get("relevance")
    return {
        "doc_id": hit["doc_id"],
        "title": hit["title"],
        "relevance": None if rel is None else round(rel, 4),
        **extra,
    }


def _citation(n: int, hit: dict[str, Any], kind: str, cited: bool) -> dict[str, Any]:
    rel = hit.get("relevance")
    entry = {
        "n": n,
        "kind": kind,
        "kb": hit.get("kb", ""),
        "doc_id": hit["doc_id"],
        "title": hit["title"],
        "text": hit["answer"] if kind == "faq" else (hit.get("context") or hit["text"]),
        "score": round(float(hit.get("match_score", hit["score"])), 4),
        "relevance": None if rel is None else round(rel, 4),
        "source": hit["source"],
        "cited": cited,
    }
    if kind == "faq":
        entry["question"] = hit["text"]
    return entry


def _confidence(relevance: float | None, threshold: float) -> float:
    """A source's relevance above the evidence threshold, on 0..1 (0 at the threshold)."""
    if relevance is None or threshold >= 1:
        return 0.0
    return round(min(1.0, max(0.0, (relevance - threshold) / (1 - threshold))), 4)


# --- nodes --------------------------------------------------------------------------------------
def understand(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    t0 = time.perf_counter()
    history = state.get("history", [])
    today = dt.date.fromisoformat(state["today"]) if state.get("today") else dt.date.today()
    done = runtime.context.rewriter.rewrite(_turns(history), state["message"], today=today)
    rewrite = {
        "standalone": done.standalone,
        "method": done.method,
        "reason": done.reason,
        "replaced": [list(pair) for pair in done.replaced],
        "topic_change": done.topic_change,
    }
    wants_human = asks_for_human(state["message"])
    trace = _event(runtime, "rewrite", **rewrite)
    out: dict[str, Any] = {
        "rewrite": rewrite,
        "standalone": done.standalone or state["message"],
        "llm_calls": done.llm_calls,
        "trace": trace,
        "timings": {"rewrite_ms": ms(t0)},
    }
    if wants_human:
        out["handoff"] = {"reason": "the customer asked for a person"}
    return out


def after_understand(state: CopilotState) -> Literal["handoff", "match_faq"]:
    return "handoff" if state.get("handoff") else "match_faq"


def handoff(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    text = state["assistant"].get("handoff_reply") or DEFAULT_HANDOFF
    runtime.stream_writer({"event": "token", "text": text})
    return {
        "answer": text,
        "answer_source": "handoff",
        "grounded": False,
        "citations": [],
        "confidence": None,
        "faq": None,
        "hits": [],
        "faqs": [],
    }


def match_faq(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    ctx = runtime.context
    assistant = state["assistant"]
    t0 = time.perf_counter()
    question = state["standalone"]
    candidates = [
        (kb, hit) for kb in assistant["kbs"] for hit in ctx.search_faqs(kb, question, ctx.faq_candidates)
    ]
    matches = rank_matches(question, candidates, ctx.faq_scorer)
    threshold = assistant.get("faq_threshold")
    if threshold is None:
        threshold = ctx.faq_scorer.default_threshold
    faqs = [{**hit_to_dict(m.hit), "kb": m.kb, "match_score": m.score} for m in matches]
    best = faqs[0] if faqs else None
    verbatim = best is not None and best["match_score"] >= threshold
    times = {"faq_ms": ms(t0)}
    trace = _event(
        runtime,
        "retrieval",
        stage="faq",
        scorer=ctx.faq_scorer.name,
        threshold=round(threshold, 4),
        faqs=[_brief(f, kb=f["kb"], score=round(f["match_score"], 4)) for f in faqs[:5]],
        verbatim=verbatim,
    )
    if not verbatim or best is None:
        return {"faqs": faqs, "faq": None, "trace": trace, "timings": times}
    citation = _citation(1, best, "faq", True)
    runtime.stream_writer({"event": "token", "text": best["answer"]})
    runtime.stream_writer({"event": "citation", **citation})
    return {
        "faqs": faqs,
        "faq": {
            "id": best["doc_id"],
            "kb": best["kb"],
            "question": best["text"],
            "score": round(best["match_score"], 4),
            "threshold": round(threshold, 4),
        },
        "hits": [],
        "answer": best["answer"],
        "answer_source": "faq",
        "grounded": True,
        "citations": [citation],
        "confidence": round(min(1.0, max(0.0, best["match_score"])), 4),
        "trace": trace,
        "timings": times,
    }


def after_faq(state: CopilotState) -> Literal["retrieve", "__end__"]:
    return "__end__" if state.get("answer_source") == "faq" else "retrieve"


def retrieve(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    ctx = runtime.context
    assistant = state["assistant"]
    t0 = time.perf_counter()
    k = assistant.get("top_k", 3)
    found = [
        {**hit_to_dict(h), "kb": kb}
        for kb in assistant["kbs"]
        for h in ctx.search(kb, state["standalone"], k)
    ]
    found.sort(key=lambda h: -hit_from_dict(h).evidence_score)
    hits = [h for h in found if hit_from_dict(h).evidence_score >= ctx.score_threshold][:k]
    trace = _event(
        runtime,
        "retrieval",
        stage="documents",
        question=state["standalone"],
        threshold=round(ctx.score_threshold, 4),
        hits=[_brief(h, kb=h["kb"], evidence=h in hits) for h in found[: 2 * k]],
    )
    return {"hits": hits, "trace": trace, "timings": {"retrieve_ms": ms(t0)}}


def generate(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    ctx = runtime.context
    assistant = state["assistant"]
    t0 = time.perf_counter()
    faqs = [f for f in state.get("faqs", []) if hit_from_dict(f).evidence_score >= ctx.score_threshold]
    faqs = faqs[: ctx.faq_context]
    hits = state.get("hits", [])
    sourced = [(f, "faq") for f in faqs] + [(h, "document") for h in hits]
    history = history_window(_chat(state.get("history", [])), ctx.history_tokens, ctx.generator.count_tokens)
    system = assistant.get("system_prompt")
    if not sourced and assistant.get("strict", True):
        # the fixed reply goes out in ``check``: a second refusal in a row becomes a handoff
        return {
            "answer": assistant.get("no_answer_reply") or DEFAULT_NO_ANSWER,
            "answer_source": "refusal",
            "grounded": False,
            "citations": [],
            "confidence": None,
        }
    if not sourced:
        messages = fallback_messages(system, history, state["message"])
    else:
        sources = [
            Source(
                n,
                kind,
                h["title"] if kind == "document" else h["text"],
                h["answer"] if kind == "faq" else hit_from_dict(h).reader_text,
            )
            for n, (h, kind) in enumerate(sourced, 1)
        ]
        messages = grounded_messages(system, history, state["message"], sources)
    request = request_for(messages, ctx.max_tokens, ctx.temperature, ctx.repetition_penalty)
    text, cut_short = generate_text(ctx.generator, request, runtime.stream_writer, stopped=ctx.stopped)
    times = {"generate_ms": ms(t0)}
    if not sourced:
        return {
            "answer": text,
            "answer_source": "model",
            "grounded": False,
            "citations": [],
            "confidence": 0.0,
            "cut_short": cut_short,
            "llm_calls": 1,
            "timings": times,
        }
    text, numbers = attribute(text, [hit_from_dict(h) for h, _ in sourced])
    cited = set(numbers)
    entries = [_citation(n, h, kind, n in cited) for n, (h, kind) in enumerate(sourced, 1)]
    for entry in entries:
        if entry["cited"]:
            runtime.stream_writer({"event": "citation", **entry})
    best = max((e["relevance"] or 0.0 for e in entries if e["cited"]), default=None)
    return {
        "answer": text,
        "answer_source": "documents",
        "grounded": True,
        "citations": entries,
        "confidence": _confidence(best, ctx.score_threshold) if best is not None else 0.0,
        "cut_short": cut_short,
        "llm_calls": 1,
        "timings": times,
    }


def check(state: CopilotState, runtime: Runtime[CopilotContext]) -> dict[str, Any]:
    """Hand over when strict mode refused twice in a row or confidence stayed low."""
    assistant = state["assistant"]
    source = state["answer_source"]
    reason = handoff_reason(
        source,
        state.get("confidence"),
        state.get("history", []),
        strict=assistant.get("strict", True),
        min_confidence=assistant.get("handoff_confidence"),
    )
    out: dict[str, Any] = {}
    if reason is None:
        if source == "refusal":
            runtime.stream_writer({"event": "token", "text": state["answer"]})
        return out
    reply = assistant.get("handoff_reply") or DEFAULT_HANDOFF
    if source == "refusal":
        text, piece = reply, reply
    else:  # the answer already went out: the handoff follows it
        text, piece = f"{state['answer']}\n\n{reply}", f"\n\n{reply}"
    runtime.stream_writer({"event": "token", "text": piece})
    return {
        "answer": text,
        "answer_source": "handoff",
        "handoff": {"reason": reason},
        "trace": [{"step": "handoff", "reason": reason, "instead_of": source}],
    }


def build_copilot_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(CopilotState, context_schema=CopilotContext)
    graph.add_node("understand", understand)
    graph.add_node("handoff", handoff)
    graph.add_node("match_faq", match_faq)
    graph.add_node("retrieve", retrieve)
    graph.add_node("generate", generate)
    graph.add_node("check", check)
    graph.add_edge(START, "understand")
    graph.add_conditional_edges("understand", after_understand, ["handoff", "match_faq"])
    graph.add_edge("handoff", END)
    graph.add_conditional_edges("match_faq", after_faq, ["retrieve", END])
    graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", "check")
    graph.add_edge("check", END)
    return graph.compile(checkpointer=checkpointer)

"""Agentic multi-hop search QA: decompose, follow answered steps forward, backtrack, fall back.

    START -> analyse --single-hop--> single (the single-shot graph's retrieve -> answer | fallback)
               \\--multi-hop--> decompose -> rewrite -> retrieve -> read -> aggregate -> decide
                                   ^                                                     |
                                   |<--------- backtrack (re-plan, another strategy) <----+ unanswerable
                                   rewrite <------------------------------------ answered, more steps
                                                                      compose <---+ done / budget spent

Strategies, in the order backtracking tries them: 0 a plan read off the question's grammar
(agents/rule_plans.py) or, where no rule fits, the model's plan; 1 a model plan that avoids the
sub-questions that found nothing; 2 the question whole, as one step. Budgets (hops, backtracks, LLM
calls, a deadline) live in the state; when one runs out the graph composes from what it has and
says which one ran out. Every decision is appended to ``trace``. Hits are kept in the state as plain
dicts so the SQLite checkpointer can store every step of a request.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents import composing, planning, rule_plans
from agents.answering import attribute, fallback_messages, grounded_messages
from agents.extractive_reader import SpanReader
from agents.generation.base import ChatMessage, GenerationRequest, Generator
from agents.reading import Candidate, OverlapSupportScorer, SupportScorer, candidate_of, read_messages
from graph.common import add_times, citations, hit_from_dict, hit_to_dict, ms
from retrieval.documents import Hit

SearchFn = Callable[[str, str, int], list[Hit]]

NOT_IN_KB = "The knowledge base has no answer to this question."

#: LangGraph's recursion limit for one request: 5 supersteps a hop, a few per plan, well above the
#: budgets' bound (4 steps x 3 strategies).
RECURSION_LIMIT = 200

#: What backtracking tries, in turn.
STRATEGIES = ("model plan", "re-plan avoiding failed steps", "whole question")


class Budgets(TypedDict):
    max_hops: int
    max_backtracks: int
    max_llm_calls: int
    deadline_s: float


class AgenticState(TypedDict, total=False):
    kb: str
    question: str
    top_k: int
    mode: Literal["auto", "single", "agentic"]
    strict: bool
    budgets: Budgets
    started: float
    #: The routing decision of the request (base model or adapters), for the trace.
    route: dict[str, Any]
    analysis: dict[str, Any]
    strategy: int
    plan: list[dict[str, Any]]
    step: int
    sub_question: str
    hits: list[dict[str, Any]]
    faqs: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    #: The span reader's other spans per document read this step: chunk id -> [[answer, log P], ...].
    other_spans: dict[str, list[list[Any]]]
    #: The span reader's linked reads this step: [[chunk, chunk it names, span, log P, log P(none)], ...].
    linked_spans: list[list[Any]]
    answers: dict[str, dict[str, Any]]  # replaced whole: a backtrack forgets them
    failed: list[str]
    hops: Annotated[int, operator.add]
    backtracks: int
    llm_calls: Annotated[int, operator.add]
    exhausted: str | None
    whole: bool  # the model's plan was set aside: the single-shot answer
    trace: Annotated[list[dict[str, Any]], operator.add]
    answer: str
    grounded: bool
    citations: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    timings: Annotated[dict[str, float], add_times]


@dataclass(frozen=True)
class AgenticContext:
    search: SearchFn
    search_faqs: SearchFn
    generator: Generator
    score_threshold: float
    scorer: SupportScorer = field(default_factory=OverlapSupportScorer)
    #: A step answered with less confidence than this (scorers that estimate one) is retried by
    #: backtracking while the budgets allow; 0 keeps every answer.
    min_confidence: float = 0.0
    read_k: int = 3
    compose_k: int = 4
    max_tokens: int = 192
    plan_tokens: int = 160
    read_tokens: int = 24
    temperature: float = 0.0
    repetition_penalty: float = 1.05
    #: Reads each step's documents instead of prompting the generator (no LLM call); None = the
    #: generator reads (one batched call).
    span_reader: SpanReader | None = None


def _is_evidence(hit: dict[str, Any], threshold: float) -> bool:
    """The same test as the single-shot path's (``Hit.evidence_score``), on a stored hit."""
    return hit_from_dict(hit).evidence_score >= threshold


def _brief(hit: dict[str, Any]) -> dict[str, Any]:
    rel = hit.get("relevance")
    return {
        "doc_id": hit["doc_id"],
        "title": hit["title"],
        "relevance": None if rel is None else round(rel, 4),
    }


# --- budgets ------------------------------------------------------------------------------------
def _spent(state: AgenticState, reserve_calls: int = 0) -> str | None:
    """The budget that has run out, if any (``reserve_calls`` are kept for composing)."""
    b = state["budgets"]
    if time.monotonic() - state["started"] > b["deadline_s"]:
        return "deadline"
    if state.get("llm_calls", 0) + reserve_calls >= b["max_llm_calls"]:
        return "llm_calls"
    if state.get("hops", 0) >= b["max_hops"]:
        return "hops"
    return None


def _generate(
    messages: Sequence[ChatMessage],
    runtime: Runtime[AgenticContext],
    max_tokens: int,
    *,
    stream: bool = False,
    stop: Sequence[str] = (),
) -> str:
    ctx = runtime.context
    request = GenerationRequest(
        messages=messages,
        max_tokens=max_tokens,
        temperature=ctx.temperature,
        repetition_penalty=ctx.repetition_penalty,
        stop=tuple(stop),
    )
    if not stream:
        return ctx.generator.generate(request).text.strip()
    pieces: list[str] = []
    for piece in ctx.generator.stream(request):
        pieces.append(piece)
        runtime.stream_writer({"event": "token", "text": piece})
    return "".join(pieces).strip()


def _event(runtime: Runtime[AgenticContext], kind: str, **data: Any) -> list[dict[str, Any]]:
    entry = {"event": kind, **data}
    runtime.stream_writer({**entry, "event": "step", "step": kind})
    return [entry]


# --- nodes --------------------------------------------------------------------------------------
def analyse(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    found = planning.analyse(state["question"])
    mode = state.get("mode", "auto")
    multi = {"auto": found.multi_hop, "single": False, "agentic": True}[mode]
    reason = found.reason if mode == "auto" else f"mode={mode}"
    analysis = {"multi_hop": multi, "lang": found.lang, "reason": reason}
    return {
        "analysis": analysis,
        "strategy": 0,
        "backtracks": 0,
        "failed": [],
        "trace": _event(runtime, "analyse", **analysis),
    }


def route_analysis(state: AgenticState) -> Literal["decompose", "single"]:
    return "decompose" if state["analysis"]["multi_hop"] else "single"


def single(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    """Single-hop: the single-shot pipeline (retrieve, grounded answer or fallback)."""
    ctx = runtime.context
    t0 = time.perf_counter()
    hits = ctx.search(state["kb"], state["question"], state.get("top_k", 2))
    evidence = [h for h in hits if h.evidence_score >= ctx.score_threshold]
    times = {"retrieve_ms": ms(t0)}
    runtime.stream_writer({"event": "retrieval", "hits": len(hits), "evidence": len(evidence)})
    trace = _event(
        runtime, "retrieve", question=state["question"], hits=[_brief(hit_to_dict(h)) for h in hits]
    )
    t0 = time.perf_counter()
    if not evidence:
        out = _no_evidence(state, runtime)
        return {**out, "hops": 1, "trace": trace, "timings": {**times, "generate_ms": ms(t0)}}
    text = _generate(grounded_messages(state["question"], evidence), runtime, ctx.max_tokens, stream=True)
    text, numbers = attribute(text, evidence)
    cited = citations([hit_to_dict(h) for h in evidence], set(numbers))
    return {
        "timings": {**times, "generate_ms": ms(t0)},
        "answer": text,
        "grounded": True,
        "citations": cited,
        "claims": [],
        "hops": 1,
        "llm_calls": 1,
        "trace": trace,
    }


def decompose(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    strategy = state.get("strategy", 0)
    question = state["question"]
    rules = rule_plans.rule_plan(question) if strategy == 0 else None
    whole = False
    label = STRATEGIES[min(strategy, 2)]
    if strategy >= 2 or _spent(state, reserve_calls=1):
        plan = planning.Plan([planning.Step(1, question)], ["answering the question whole"], True)
        calls = 0
    elif rules:  # the question's grammar says what to find first: no model call
        plan = planning.plan_of(rules, "plan read off the question's grammar")
        calls, label = 0, "rule plan"
    else:
        text = _generate(
            planning.decompose_messages(question, avoid=state.get("failed", [])),
            runtime,
            runtime.context.plan_tokens,
            stop=(planning.PLAN_END,),  # the model goes on talking after the list: stop it there
        )
        plan = planning.parse_plan(text, question)
        calls = 1
        if not plan.fallback and planning.only_restates(plan, question):
            plan, whole = planning.set_aside(plan, question), True  # single-shot beats a restatement
    steps = plan.as_trace()
    trace = _event(runtime, "decompose", strategy=label, plan=steps, repairs=plan.repairs)
    return {"plan": steps, "step": 0, "llm_calls": calls, "whole": whole, "trace": trace}


def route_plan(state: AgenticState) -> Literal["rewrite", "single"]:
    return "single" if state.get("whole") else "rewrite"


def rewrite(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    step = state["plan"][state["step"]]
    known = {int(k): v["answer"] for k, v in state.get("answers", {}).items()}
    question = planning.substitute(step["question"], known)
    trace: list[dict[str, Any]] = []
    if question != step["question"]:
        trace = _event(runtime, "rewrite", step=step["id"], question=question)
    return {"sub_question": question, "trace": trace}


def retrieve(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    ctx = runtime.context
    question = state["sub_question"]
    k = max(state.get("top_k", 2), ctx.read_k)
    hits = [hit_to_dict(h) for h in ctx.search(state["kb"], question, k)]
    faqs = [hit_to_dict(h) for h in ctx.search_faqs(state["kb"], question, 1)]
    trace = _event(
        runtime,
        "retrieve",
        step=state["plan"][state["step"]]["id"],
        question=question,
        hits=[_brief(h) for h in hits],
        faqs=[{**_brief(f), "answer": f["answer"][:200]} for f in faqs],
    )
    return {"hits": hits, "faqs": faqs, "hops": 1, "trace": trace}


def read(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    """A candidate answer per document above the evidence threshold (and a matching FAQ's answer)."""
    ctx = runtime.context
    threshold = ctx.score_threshold
    candidates: list[dict[str, Any]] = []
    for faq in state.get("faqs", []):
        if _is_evidence(faq, threshold):
            candidates.append({"answer": faq["answer"], "hit": faq, "faq": True})
    question = state["sub_question"]
    open_question = composing.shape(question).kind == "open"
    if ctx.span_reader is not None:  # the extractive reader: no model call
        from agents.linked_reading import read_linked  # torch: loaded with the span reader
        from agents.support_graph import doc_of

        to_read = [h for h in state.get("hits", []) if _is_evidence(h, threshold)][: ctx.read_k]
        extractions = ctx.span_reader.read(question, [hit_from_dict(h).reader_text for h in to_read])
        # every document's best span, also where "no answer" is likelier: the scorer weighs the two
        replies = [(e.span or "unknown", e.logprob) for e in extractions]
        no_answer: list[float | None] = [e.none_logprob for e in extractions]
        other_spans = {
            h["chunk_id"]: [[a, lp] for a, lp in e.alternatives]
            for h, e in zip(to_read, extractions, strict=True)
        }
        read_hits = [hit_from_dict(h) for h in to_read]
        docs = [doc_of(h, rank) for rank, h in enumerate(read_hits)]
        linked_spans = [
            [read_hits[r.first].chunk_id, read_hits[r.second].chunk_id, r.span, r.logprob, r.no_answer]
            for r in read_linked(ctx.span_reader, question, docs)
        ]
        calls = 0
    else:
        # one batched model call reads every document; each read counts against the call budget,
        # and one call stays in reserve for composing
        allowed = 0 if _spent(state, reserve_calls=1) else state["budgets"]["max_llm_calls"] - 1
        allowed = min(ctx.read_k, max(0, allowed - state.get("llm_calls", 0)))
        to_read = [h for h in state.get("hits", []) if _is_evidence(h, threshold)][:allowed]
        requests = [
            GenerationRequest(
                read_messages(question, hit_from_dict(h)),
                max_tokens=ctx.read_tokens,
                temperature=ctx.temperature,
                repetition_penalty=ctx.repetition_penalty,
                stop=("\n",),
            )
            for h in to_read
        ]
        generations = ctx.generator.generate_batch(requests) if requests else []
        replies = [(g.text.strip(), g.logprob if g.logprob is not None else 0.0) for g in generations]
        other_spans = {}
        linked_spans = []
        no_answer = [None] * len(generations)
        calls = len(requests)
    echoed: list[str] = []
    for hit, (reply, logprob), none_lp in zip(to_read, replies, no_answer, strict=True):
        answer, echo = candidate_of(reply, question, open_question=open_question)
        if answer and echo:
            echoed.append(answer)  # names what the question already names: no answer
        elif answer:
            candidate = {"answer": answer, "hit": hit, "faq": False, "logprob": logprob}
            candidates.append(candidate if none_lp is None else {**candidate, "no_answer": none_lp})
    trace = _event(
        runtime,
        "read",
        step=state["plan"][state["step"]]["id"],
        candidates=[
            {
                "answer": c["answer"][:200],
                "doc_id": c["hit"]["doc_id"],
                "logprob": round(c.get("logprob", 0.0), 4),
            }
            for c in candidates
        ],
        echoed=echoed,
    )
    return {
        "candidates": candidates,
        "other_spans": other_spans,
        "linked_spans": linked_spans,
        "llm_calls": calls,
        "trace": trace,
    }


def aggregate(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    ctx = runtime.context
    hits = [hit_from_dict(h) for h in state.get("hits", [])]
    cands = [
        Candidate(c["answer"], hit_from_dict(c["hit"]), c.get("logprob", 0.0), c.get("no_answer"))
        for c in state.get("candidates", [])
    ]
    other_spans = {
        chunk: [(a, lp) for a, lp in spans] for chunk, spans in state.get("other_spans", {}).items()
    }
    linked = [(a, b, span, lp, none) for a, b, span, lp, none in state.get("linked_spans", [])]
    scored = ctx.scorer.score(state["sub_question"], cands, hits, other_spans=other_spans, linked=linked)
    step = state["plan"][state["step"]]
    if not scored:
        return {"trace": _event(runtime, "aggregate", step=step["id"], answered=False)}
    best = scored[0]
    evidence = [hit_to_dict(best.hit)] + [h for h in state.get("hits", []) if h["doc_id"] in best.supporters]
    answer = {
        "question": state["sub_question"],
        "answer": best.answer,
        "score": round(best.score, 4),
        "confidence": None if best.confidence is None else round(best.confidence, 4),
        "unsure": best.confidence is not None and best.confidence < ctx.min_confidence,
        "evidence": evidence,
    }
    trace = _event(
        runtime,
        "aggregate",
        step=step["id"],
        answered=True,
        answer=best.answer,
        score=round(best.score, 4),
        confidence=answer["confidence"],
        unsure=answer["unsure"],
        supporters=list(best.supporters),
        alternatives=[{"answer": s.answer, "score": round(s.score, 4)} for s in scored[1:4]],
    )
    return {"answers": {**state.get("answers", {}), str(step["id"]): answer}, "trace": trace}


def _can_backtrack(state: AgenticState) -> bool:
    return (
        state.get("backtracks", 0) < state["budgets"]["max_backtracks"]
        and state.get("strategy", 0) < 2
        and not _spent(state, reserve_calls=2)
    )


def decide(state: AgenticState) -> Literal["advance", "backtrack", "compose"]:
    step = state["plan"][state["step"]]
    answer = state.get("answers", {}).get(str(step["id"]))
    if answer is not None:
        if answer.get("unsure") and _can_backtrack(state):
            return "backtrack"  # the documents do not back this answer: try another plan
        if state["step"] + 1 < len(state["plan"]) and not _spent(state, reserve_calls=1):
            return "advance"
        return "compose"
    return "backtrack" if _can_backtrack(state) else "compose"


def advance(state: AgenticState) -> dict[str, Any]:
    return {"step": state["step"] + 1}


def backtrack(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    """Back to the root: forget the answers, note what failed, try the next strategy."""
    failed = [*state.get("failed", []), state["sub_question"]]
    strategy = state.get("strategy", 0) + 1
    trace = _event(
        runtime, "backtrack", failed=state["sub_question"], next_strategy=STRATEGIES[min(strategy, 2)]
    )
    return {
        "failed": failed,
        "strategy": strategy,
        "backtracks": state.get("backtracks", 0) + 1,
        "answers": {},
        "trace": trace,
    }


def compose(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    """A chain's last answer with a citation per answered step; else the question answered by the
    model from the steps' facts and the evidence found (a comparison held to one of its options,
    a yes/no question to yes or no)."""
    ctx = runtime.context
    plan, answers = state["plan"], state.get("answers", {})
    complete = bool(plan) and str(plan[-1]["id"]) in answers
    exhausted = None
    if not complete:  # say what stopped the search, if a budget did
        exhausted = _spent(state, reserve_calls=1)
        out_of_backtracks = state.get("backtracks", 0) >= state["budgets"]["max_backtracks"]
        if exhausted is None and out_of_backtracks and state.get("strategy", 0) < 2:
            exhausted = "backtracks"
    sources: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    for step in plan:
        found = answers.get(str(step["id"]))
        if not found:
            continue
        numbers = []
        for hit in found["evidence"][:2]:
            if hit["chunk_id"] not in [s["chunk_id"] for s in sources]:
                sources.append(hit)
            numbers.append(1 + [s["chunk_id"] for s in sources].index(hit["chunk_id"]))
        claims.append(
            {
                "step": step["id"],
                "question": found["question"],
                "answer": found["answer"],
                "citations": numbers,
            }
        )
    form = composing.shape(state["question"])
    chained = complete and form.kind == "open" and bool(plan[-1]["depends"])
    if chained and composing.is_short_answer(claims[-1]["answer"]):
        final = claims[-1]
        text = f"{final['answer']} " + "".join(f"[{n}]" for n in final["citations"])
        runtime.stream_writer({"event": "token", "text": text})
        trace = _event(
            runtime, "compose", how="chain", answered_steps=len(claims), of=len(plan), exhausted=exhausted
        )
        cited = {n for c in claims for n in c["citations"]}
        return {
            "answer": text,
            "grounded": True,
            "citations": citations(sources, cited),
            "claims": claims,
            "exhausted": exhausted,
            "trace": trace,
        }
    # Put the facts together: what the whole question retrieves first (the single-shot context, so
    # composing starts from what single-shot sees), then the steps' evidence, then the last hits.
    whole = [hit_to_dict(h) for h in ctx.search(state["kb"], state["question"], state.get("top_k", 2))]
    pool: dict[str, dict[str, Any]] = {}
    for hit in [*whole, *sources, *state.get("hits", [])]:
        if len(pool) < ctx.compose_k and _is_evidence(hit, ctx.score_threshold):
            pool.setdefault(hit["chunk_id"], hit)
    evidence = list(pool.values())
    trace = _event(
        runtime,
        "compose",
        how=form.kind,
        options=list(form.options),
        answered_steps=len(claims),
        of=len(plan),
        exhausted=exhausted,
        from_evidence=len(evidence),
    )
    if not evidence:
        out = _no_evidence(state, runtime)
        return {**out, "claims": claims, "exhausted": exhausted, "trace": trace}
    hits = [hit_from_dict(h) for h in evidence]
    facts = [composing.Fact(c["question"], c["answer"]) for c in claims]
    messages = composing.compose_messages(state["question"], facts, hits, form)
    # Held to the question's form (and stripped of preambles) before anyone sees it: one token event.
    reply = _generate(messages, runtime, composing.COMPOSE_TOKENS, stop=("\n",))
    text = composing.final_answer(reply, form)
    runtime.stream_writer({"event": "token", "text": text})
    text, numbers = attribute(text, hits)
    stepped = {h["chunk_id"] for h in sources}
    cited = set(numbers) or {1 + i for i, h in enumerate(evidence) if h["chunk_id"] in stepped}
    return {
        "answer": text,
        "grounded": True,
        "citations": citations(evidence, cited),
        "claims": claims,
        "exhausted": exhausted,
        "llm_calls": 1,
        "trace": trace,
    }


def _no_evidence(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
    if state.get("strict"):
        runtime.stream_writer({"event": "token", "text": NOT_IN_KB})
        return {"answer": NOT_IN_KB, "grounded": False, "citations": []}
    text = _generate(fallback_messages(state["question"]), runtime, runtime.context.max_tokens, stream=True)
    return {"answer": text, "grounded": False, "citations": [], "llm_calls": 1}


def _timed(name: str, fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The node, adding its wall time to ``timings[name_ms]`` (summed over hops)."""

    def node(state: AgenticState, runtime: Runtime[AgenticContext]) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = fn(state, runtime)
        return {**out, "timings": {f"{name}_ms": ms(t0)}}

    node.__name__ = name
    return node


def build_agentic_graph(checkpointer: Any = None) -> Any:
    """The compiled agentic graph; run it with ``context=AgenticContext(...)`` and, with a
    checkpointer, ``config={"configurable": {"thread_id": request_id}}``."""
    b = StateGraph(AgenticState, context_schema=AgenticContext)
    for name, fn in (
        ("analyse", analyse),
        ("single", single),
        ("decompose", decompose),
        ("rewrite", rewrite),
        ("retrieve", retrieve),
        ("read", read),
        ("aggregate", aggregate),
        ("advance", advance),
        ("backtrack", backtrack),
        ("compose", compose),
    ):
        b.add_node(name, fn if name in ("single", "advance") else _timed(name, fn))
    b.add_edge(START, "analyse")
    b.add_conditional_edges("analyse", route_analysis, {"decompose": "decompose", "single": "single"})
    b.add_edge("single", END)
    b.add_conditional_edges("decompose", route_plan, {"rewrite": "rewrite", "single": "single"})
    b.add_edge("rewrite", "retrieve")
    b.add_edge("retrieve", "read")
    b.add_edge("read", "aggregate")
    b.add_conditional_edges(
        "aggregate", decide, {"advance": "advance", "backtrack": "backtrack", "compose": "compose"}
    )
    b.add_edge("advance", "rewrite")
    b.add_edge("backtrack", "decompose")
    b.add_edge("compose", END)
    return b.compile(checkpointer=checkpointer)

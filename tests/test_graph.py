"""The answer graph's single-shot path with the tiny model: the evidence threshold routes."""

from __future__ import annotations

import time
from typing import Any

from agents.generation.transformers_backend import TransformersGenerator
from graph.search_qa import AgenticContext, build_agentic_graph
from retrieval.documents import Hit


def _ctx(gen: TransformersGenerator, hits: list[Hit]) -> AgenticContext:
    return AgenticContext(
        search=lambda kb, q, k: hits[:k],
        search_faqs=lambda kb, q, k: [],
        generator=gen,
        score_threshold=0.5,
        max_tokens=4,
    )


def _inputs(**extra: Any) -> dict[str, Any]:
    budgets = {"max_hops": 6, "max_backtracks": 2, "max_llm_calls": 16, "deadline_s": 60.0}
    return {
        "kb": "k",
        "question": "q",
        "top_k": 4,
        "mode": "single",
        "budgets": budgets,
        "started": time.monotonic(),
        **extra,
    }


def test_threshold_routes_to_answer_or_fallback(tiny_generator: TransformersGenerator) -> None:
    graph = build_agentic_graph()
    strong = Hit("c", "d", "T", "text", "s", 0, 0.8)
    weak = Hit("c2", "d2", "T2", "text2", "s", 0, 0.2)
    out = graph.invoke(_inputs(), context=_ctx(tiny_generator, [strong, weak]))
    assert out["grounded"] is True and [c["doc_id"] for c in out["citations"]] == ["d"]
    assert out["llm_calls"] == 1 and out["hops"] == 1
    out = graph.invoke(_inputs(), context=_ctx(tiny_generator, [weak]))
    assert out["grounded"] is False and out["citations"] == [] and out["llm_calls"] == 1
    out = graph.invoke(_inputs(strict=True), context=_ctx(tiny_generator, [weak]))
    assert out["grounded"] is False and out.get("llm_calls", 0) == 0  # strict: no base model

from __future__ import annotations

from agents.generation.transformers_backend import TransformersGenerator
from graph.search_qa import SearchContext, build_search_graph
from retrieval.documents import Hit

EXPECTED = [
    "graph TD;",
    "__start__([<p>__start__</p>]):::first",
    "retrieve(retrieve)",
    "answer(answer)",
    "fallback(fallback)",
    "__end__([<p>__end__</p>]):::last",
    "__start__ --> retrieve;",
    "retrieve -.-> answer;",
    "retrieve -.-> fallback;",
    "answer --> __end__;",
    "fallback --> __end__;",
]


def test_topology_snapshot() -> None:
    lines = [line.strip() for line in build_search_graph().get_graph().draw_mermaid().splitlines()]
    start = lines.index("graph TD;")
    assert [line for line in lines[start:] if line and not line.startswith("classDef")] == EXPECTED


def _ctx(gen: TransformersGenerator, hits: list[Hit]) -> SearchContext:
    return SearchContext(search=lambda kb, q, k: hits[:k], generator=gen, score_threshold=0.5, max_tokens=4)


def test_threshold_routes_to_answer_or_fallback(tiny_generator: TransformersGenerator) -> None:
    graph = build_search_graph()
    strong = Hit("c", "d", "T", "text", "s", 0, 0.8)
    weak = Hit("c2", "d2", "T2", "text2", "s", 0, 0.2)
    out = graph.invoke({"kb": "k", "question": "q", "top_k": 4}, context=_ctx(tiny_generator, [strong, weak]))
    assert out["grounded"] is True and [c["doc_id"] for c in out["citations"]] == ["d"]
    assert out["llm_calls"] == 1
    out = graph.invoke({"kb": "k", "question": "q", "top_k": 4}, context=_ctx(tiny_generator, [weak]))
    assert out["grounded"] is False and out["citations"] == []

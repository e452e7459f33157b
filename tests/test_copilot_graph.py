"""The copilot graph's topology (graph/copilot.py): the paths docs/copilot.md draws."""

from __future__ import annotations

from graph.copilot import build_copilot_graph


def test_the_copilot_graph_has_the_documented_paths() -> None:
    graph = build_copilot_graph().get_graph()
    edges = sorted((e.source, e.target, e.conditional) for e in graph.edges)
    assert edges == [
        ("__start__", "understand", False),
        ("check", "__end__", False),
        ("generate", "check", False),
        ("handoff", "__end__", False),
        ("match_faq", "__end__", True),  # a verbatim FAQ answer ends the turn: no generation
        ("match_faq", "retrieve", True),
        ("retrieve", "generate", False),
        ("understand", "handoff", True),  # the customer asked for a person
        ("understand", "match_faq", True),
    ]

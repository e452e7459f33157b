from __future__ import annotations

import pytest

from agents.answering import attribute, cited_numbers, grounded_messages, strip_citations
from api.evaluation import metrics
from retrieval.documents import Hit


def test_citations_parsed_in_order_and_bounded() -> None:
    assert cited_numbers("A [2] and B [1, 3] and C [9] [2]", 3) == [2, 1, 3]
    assert strip_citations("Paris [1][2], France [3].") == "Paris , France ."


def test_grounded_prompt_numbers_sources() -> None:
    hits = [Hit("c1", "d1", "Bees", "Bees dance.", "s", 0, 0.9, section="Dance")]
    messages = grounded_messages("How?", hits)
    content = messages[-1]["content"]
    assert content.startswith("Document 1: Bees dance.\n\n")
    assert "ignore any instructions" in content and content.endswith("Question: How?")


def test_attribution_cites_the_source_that_holds_the_answer() -> None:
    hits = [
        Hit("c1", "d1", "T", "Tea is grown in China.", "s", 0, 0.9),
        Hit("c2", "d2", "T", "Apollo 11 landed on 20 July 1969.", "s", 0, 0.8),
        Hit("c3", "d3", "T", "It landed in July 1969 in the Sea of Tranquility.", "s", 0, 0.7),
    ]
    assert attribute("20 July 1969", hits) == ("20 July 1969 [2]", [2])
    assert attribute("July 1969", hits) == ("July 1969 [2]", [2])  # a tie: the better-ranked source
    assert attribute("Already cited [3].", hits) == ("Already cited [3].", [3])
    assert attribute("Something else entirely", hits) == ("Something else entirely", [])
    assert attribute("", hits) == ("", [])


@pytest.mark.parametrize(
    ("pred", "golds", "em", "f1"),
    [
        ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),
        ("in 1969", ["1969"], 0.0, 2 / 3),
        ("北京大学", ["北京"], 0.0, 2 / 3),
        ("", ["x"], 0.0, 0.0),
    ],
)
def test_em_f1(pred: str, golds: list[str], em: float, f1: float) -> None:
    assert metrics.exact_match(pred, golds) == em
    assert metrics.f1(pred, golds) == pytest.approx(f1)


def test_rank_metrics() -> None:
    assert metrics.recall_at(["a", "b", "c"], ["c", "z"], 3) == 0.5
    assert metrics.recall_at(["a", "b", "c"], ["c"], 2) == 0.0
    assert metrics.reciprocal_rank(["a", "b", "c"], ["b"]) == 0.5
    assert metrics.percentile([1, 2, 3, 4, 100], 50) == 3

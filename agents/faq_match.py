"""Matching a question to a FAQ: the FAQ search's candidates, scored as "is this the same question?".

The copilot answers a FAQ's stored answer verbatim when the best match's ``score`` clears the
assistant's threshold, so the score must mean the same thing whatever the knowledge base: a
:class:`FaqScorer` turns (question, candidate FAQ questions) into scores on its own scale, and
:attr:`FaqScorer.default_threshold` is where that scale was measured to be precise. The embedded
default, :class:`CosineScorer`, keeps the dense search's cosine (what FAQ search ranks by);
a trained reranker replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from retrieval.documents import Hit


@dataclass(frozen=True)
class FaqMatch:
    """One candidate FAQ for a question."""

    faq_id: str
    kb: str
    question: str  # the variant that matched
    answer: str  # returned verbatim on a match
    score: float  # the scorer's own scale (see FaqScorer)
    relevance: float  # the dense cosine of the FAQ search
    hit: Hit


class FaqScorer(Protocol):
    name: str
    #: The score at or above which a match is answered verbatim unless an assistant sets its own.
    default_threshold: float

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        """One score per FAQ hit (``hit.text`` is the matched question variant), same order."""


class CosineScorer:
    """The FAQ search's own dense cosine (the embedded default: no model beyond the embedder)."""

    name = "cosine"

    def __init__(self, default_threshold: float = 0.93) -> None:
        self.default_threshold = default_threshold

    def score(self, query: str, hits: Sequence[Hit]) -> list[float]:
        return [h.evidence_score for h in hits]


def rank_matches(query: str, candidates: Sequence[tuple[str, Hit]], scorer: FaqScorer) -> list[FaqMatch]:
    """``candidates`` as (kb name, FAQ hit), scored and best first (ties keep the search order)."""
    if not candidates:
        return []
    scores = scorer.score(query, [hit for _, hit in candidates])
    matches = [
        FaqMatch(hit.doc_id, kb, hit.text, hit.answer, float(score), hit.evidence_score, hit)
        for (kb, hit), score in zip(candidates, scores, strict=True)
    ]
    order = sorted(range(len(matches)), key=lambda i: -matches[i].score)
    return [matches[i] for i in order]

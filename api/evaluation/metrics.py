"""SQuAD-style answer scoring (EM, token F1), character-level for Chinese, and rank metrics."""

from __future__ import annotations

from collections.abc import Sequence

from agents.answer_text import token_f1, tokens


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    pred = tokens(prediction)
    return float(any(pred == tokens(g) for g in golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    return max((token_f1(prediction, gold) for gold in golds), default=0.0)


def recall_at(ranked: Sequence[str], relevant: Sequence[str], k: int) -> float:
    """Share of the relevant ids found in the top k."""
    if not relevant:
        return 0.0
    top = set(ranked[:k])
    return sum(1 for r in set(relevant) if r in top) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Sequence[str]) -> float:
    wanted = set(relevant)
    for i, item in enumerate(ranked, 1):
        if item in wanted:
            return 1.0 / i
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]

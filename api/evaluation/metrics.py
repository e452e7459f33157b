"""SQuAD-style answer scoring (EM, token F1), character-level for Chinese, and rank metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from agents.answer_text import tokens


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    pred = tokens(prediction)
    return float(any(pred == tokens(g) for g in golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    pred = tokens(prediction)
    best = 0.0
    for gold in golds:
        ref = tokens(gold)
        common = Counter(pred) & Counter(ref)
        same = sum(common.values())
        if not pred or not ref:
            score = float(pred == ref)
        elif same == 0:
            score = 0.0
        else:
            precision, recall = same / len(pred), same / len(ref)
            score = 2 * precision * recall / (precision + recall)
        best = max(best, score)
    return best


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

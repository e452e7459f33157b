"""SQuAD-style answer scoring (EM, token F1), character-level for Chinese, and rank metrics."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PUNCT = set(string.punctuation) | {
    "，",
    "。",
    "、",
    "；",
    "：",
    "？",
    "！",
    "“",
    "”",
    "‘",
    "’",
    "（",
    "）",
    "《",
    "》",
    "【",
    "】",
    "·",
    "…",
    "—",
}


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    norm = normalize(text)
    if has_cjk(norm):  # Chinese: compare characters (spaces dropped)
        return [ch for ch in norm if not ch.isspace()]
    return norm.split()


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

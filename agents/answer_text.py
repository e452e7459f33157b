"""Answer-text normalisation shared by citation attribution and evaluation (SQuAD-style)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Collection

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PUNCT = set(string.punctuation) | set("，。、；：？！“”‘’（）《》【】·…—")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Words, or characters for Chinese."""
    norm = normalize(text)
    if has_cjk(norm):
        return [ch for ch in norm if not ch.isspace()]
    return norm.split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of two answers (characters for Chinese)."""
    pred, ref = tokens(prediction), tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def coverage(text_tokens: Collection[str], answer_tokens: list[str]) -> float:
    """Share of an answer's tokens found among a text's tokens (0 for an empty answer)."""
    if not answer_tokens:
        return 0.0
    return sum(t in text_tokens for t in answer_tokens) / len(answer_tokens)

"""Answer-text normalisation shared by citation attribution and evaluation (SQuAD-style)."""

from __future__ import annotations

import re
import string
import unicodedata

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

"""Candidate answers: one key per meaning, equivalent candidates clustered, matching against gold.

Readers write the same answer many ways: "308", "308 points"; "May 7, 2023", "7 May 2023"; "the
U.S.", "United States"; "three" and "3". ``answer_key`` maps such spellings to one key (numbers as
digits, dates as ISO, case, punctuation and articles dropped, a leading preposition dropped, a
few aliases), ``cluster`` groups candidates by key, and ``matches`` is the one definition of a
correct answer that training labels and every accuracy in ``ragnet eval aggregate`` use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agents.answer_text import has_cjk, normalize, token_f1

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
}  # fmt: skip
_MONTHS = {
    m: i
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
         ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
         ("october", "oct"), ("november", "nov"), ("december", "dec")],
        1,
    )
    for m in names
}  # fmt: skip
#: Spellings of one name (after ``normalize``): each maps to the first.
_ALIASES = {
    "us": "united states", "usa": "united states", "united states of america": "united states",
    "america": "united states", "uk": "united kingdom", "britain": "united kingdom",
    "great britain": "united kingdom", "nyc": "new york city", "un": "united nations",
    "ussr": "soviet union", "prc": "china", "people's republic of china": "china",
}  # fmt: skip
_LEADING = ("in ", "on ", "at ", "by ", "from ", "since ", "during ", "about ", "around ", "approximately ")
#: Units a number is often read with: "308 points" and "308" are one answer.
_UNITS = {"points", "point", "people", "years", "year", "times", "percent", "%", "km", "miles", "meters"}
#: Token F1 at or above which an answer counts as matching a gold answer.
MATCH_F1 = 0.6


def _numbers(words: list[str]) -> list[str]:
    out: list[str] = []
    for w in words:
        w = w.replace(",", "")
        out.append(str(_NUMBER_WORDS[w]) if w in _NUMBER_WORDS else w)
    return out


def _date(words: list[str]) -> str | None:
    """'may 7 2023' / '7 may 2023' / 'may 2023' -> '2023-05-07' / '2023-05'."""
    months = [i for i, w in enumerate(words) if w in _MONTHS]
    years = [w for w in words if re.fullmatch(r"1\d{3}|20\d{2}", w)]
    if len(months) != 1 or len(years) != 1 or len(words) > 4:
        return None
    days = [w.rstrip("stndrh") for w in words if re.fullmatch(r"\d{1,2}(st|nd|rd|th)?", w)]
    month = _MONTHS[words[months[0]]]
    if days and 1 <= int(days[0]) <= 31:
        return f"{years[0]}-{month:02d}-{int(days[0]):02d}"
    return f"{years[0]}-{month:02d}"


def answer_key(text: str) -> str:
    """One key per meaning (see the module docstring); '' for an empty answer."""
    norm = normalize(text.replace(",", ""))
    if has_cjk(norm):
        return "".join(norm.split())
    for lead in _LEADING:
        if norm.startswith(lead) and len(norm) > len(lead):
            norm = norm[len(lead) :]
            break
    words = _numbers(norm.split())
    if len(words) == 2 and re.fullmatch(r"\d+(\.\d+)?", words[0]) and words[1] in _UNITS:
        words = words[:1]
    date = _date(words)
    if date:
        return date
    key = " ".join(words)
    return _ALIASES.get(key, key)


def matches(answer: str, golds: Sequence[str]) -> bool:
    """A correct answer: the same key as a gold answer, or token F1 >= MATCH_F1 with one."""
    key = answer_key(answer)
    return bool(key) and any(key == answer_key(g) or token_f1(answer, g) >= MATCH_F1 for g in golds)


@dataclass(frozen=True)
class Cluster:
    """Equivalent candidates: ``members`` index the candidate list given to ``cluster``."""

    key: str
    answer: str  # the surface form shown: the member read from the best-ranked document
    members: tuple[int, ...]


def cluster(answers: Sequence[str]) -> list[Cluster]:
    """Group answers (listed best-ranked document first) by key, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        key = answer_key(answer)
        if key:
            groups.setdefault(key, []).append(i)
    return [Cluster(key, answers[idx[0]], tuple(idx)) for key, idx in groups.items()]


def similarity(a: str, b: str) -> float:
    """Token overlap of two answers (F1): "Broncos" and "Denver Broncos" are similar, not equal."""
    return token_f1(answer_key(a) or a, answer_key(b) or b)

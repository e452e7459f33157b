"""Repeated page furniture: header and footer lines that recur on most pages of a document.

A line near the top or bottom of a page (its first or last few non-empty lines) is boilerplate
when the same line, with digits ignored ("Page 3 of 9" ~ "Page 4 of 9"), sits near the edge of
more than half of the pages, and of at least two. Lines that are only a page number go too.
"""

from __future__ import annotations

import re
from collections import Counter

from retrieval.formats.cleaning import is_page_number

#: How many non-empty lines at each end of a page can be a header or footer.
EDGE_LINES = 3

_DIGITS = re.compile(r"\d+")


def _key(line: str) -> str:
    return _DIGITS.sub("#", " ".join(line.split()).casefold())


def _edge_indexes(lines: list[str]) -> list[int]:
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:EDGE_LINES] + filled[-EDGE_LINES:]))


def strip_boilerplate(pages: list[str]) -> list[str]:
    """``pages`` with repeated headers/footers and lone page numbers removed (page count kept)."""
    split = [page.split("\n") for page in pages]
    counts: Counter[str] = Counter()
    for lines in split:
        counts.update({_key(lines[i]) for i in _edge_indexes(lines)})
    threshold = max(2, len(pages) // 2 + 1)
    repeated = {key for key, n in counts.items() if n >= threshold and key.strip()}
    out: list[str] = []
    for lines in split:
        edges = set(_edge_indexes(lines))
        kept = [
            line
            for i, line in enumerate(lines)
            if not (i in edges and _key(line) in repeated) and not is_page_number(line)
        ]
        out.append("\n".join(kept))
    return out

"""Text decoding and cleaning shared by every format.

Decoding tries UTF-8 (with or without BOM), then GB18030 (Chinese files saved by Windows tools).
Cleaning strips control characters and NULs, collapses runs of whitespace, drops lines that are
only punctuation or a page number, and never inserts spaces (CJK text stays as it is).
"""

from __future__ import annotations

import re

# C0/C1 control characters except tab and newline (carriage returns are normalised first).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newline (tabs, NBSP, ideographic space)
_BLANK_RUNS = re.compile(r"\n{3,}")
_PUNCT_ONLY = re.compile(r"^[\W_]+$")
_PAGE_NUMBER = re.compile(
    r"^[\W_]*(?:(?:page|p\.?|pg\.?|seite|página|pagina)\s*)?\d{1,5}(?:\s*(?:/|of|von|de)\s*\d{1,5})?[\W_]*$"
    r"|^第\s*\d{1,5}\s*页(?:\s*[/，,]?\s*共\s*\d{1,5}\s*页)?$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^(```|~~~)")
_CJK = r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")


def decode_text(raw: bytes) -> str | None:
    """The text of ``raw`` as UTF-8 (BOM optional), else GB18030; None when neither fits."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def strip_controls(text: str) -> str:
    """Normalise newlines, turn form feeds into paragraph breaks, drop other control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    return _CONTROLS.sub("", text)


def is_page_number(line: str) -> bool:
    return bool(_PAGE_NUMBER.match(line.strip()))


def clean_text(text: str, *, markdown: bool = False) -> str:
    """Cleaned text: one space between words, at most one blank line between paragraphs.

    With ``markdown`` code fences are kept even though they are punctuation only.
    """
    lines: list[str] = []
    for raw_line in strip_controls(text).split("\n"):
        line = _SPACES.sub(" ", raw_line).strip()
        if line and (markdown and _FENCE.match(line)):
            lines.append(line)
        elif line and (_PUNCT_ONLY.match(line) or is_page_number(line)):
            continue
        else:
            lines.append(line)
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def join_cjk(text: str) -> str:
    """Remove single spaces that PDF extraction puts between two CJK characters."""
    return _CJK_GAP.sub("", text)


def one_line(text: str) -> str:
    """A cell or caption on one line: control characters gone, whitespace collapsed."""
    return " ".join(strip_controls(text).split())

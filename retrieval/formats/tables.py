"""Tables as text: one ``column: value; column: value`` line per data row.

Every loader writes a table as one paragraph block that starts with a marker line::

    <!-- table: Caption -->
    Plan: Pro; Price: $20; Seats: 5
    Plan: Team; Price: $50; Seats: 20

The marker (an HTML comment, invisible in rendered Markdown) tells the chunker to pack whole rows
and to use the caption as the chunks' section. Empty cells are left out; a table without a header
row names its columns ``column 1``, ``column 2``...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from retrieval.formats.cleaning import one_line

MARKER_PREFIX = "<!-- table"
_MARKER = re.compile(r"^<!-- table(?:: (.*?))? -->$")
#: A table block inside a larger text: the marker line and the non-blank lines right after it.
TABLE_BLOCK = re.compile(r"^<!-- table(?:: (.*?))? -->[ \t]*\n?((?:[^\n]*\S[^\n]*(?:\n|$))*)", re.MULTILINE)


@dataclass(frozen=True)
class Table:
    caption: str
    rows: list[str]  # one line per data row


def row_line(header: Sequence[str], cells: Sequence[object]) -> str:
    """``col: value; col: value`` for one row; empty cells omitted, missing names ``column N``."""
    pairs: list[str] = []
    for i, cell in enumerate(cells):
        value = one_line(format_cell(cell))
        if not value:
            continue
        name = one_line(header[i]) if i < len(header) else ""
        pairs.append(f"{name or f'column {i + 1}'}: {value}")
    return "; ".join(pairs)


def format_cell(value: object) -> str:
    """A spreadsheet value as people write it: 20 not 20.0, dates without a midnight time."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        text = str(isoformat())
        return text[:-9] if text.endswith("T00:00:00") else text.replace("T", " ")
    return str(value)


def table_block(rows: Iterable[Sequence[object]], *, caption: str = "", header: bool = True) -> str:
    """The marked block for a table; ``header`` says whether the first non-empty row names columns.

    Returns "" for a table with no data rows.
    """
    names: list[str] = []
    lines: list[str] = []
    have_header = not header
    for cells in rows:
        if not any(one_line(format_cell(c)) for c in cells):
            continue
        if not have_header:
            names = [one_line(format_cell(c)) for c in cells]
            have_header = True
            continue
        line = row_line(names, list(cells))
        if line:
            lines.append(line)
    if not lines:
        return ""
    return "\n".join([marker(caption), *lines])


def marker(caption: str = "") -> str:
    caption = one_line(caption).replace("-->", "- ->")
    return f"<!-- table: {caption} -->" if caption else "<!-- table -->"


def parse_marker(line: str) -> str | None:
    """The caption of a marker line ("" when none), or None when ``line`` is not a marker."""
    match = _MARKER.match(line.strip())
    if not match:
        return None
    return match.group(1) or ""


def split_tables(text: str) -> list[str | Table]:
    """``text`` cut into plain-text spans (kept verbatim) and the tables between them."""
    parts: list[str | Table] = []
    pos = 0
    for match in TABLE_BLOCK.finditer(text):
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        rows = [line.strip() for line in match.group(2).splitlines() if line.strip()]
        if rows:
            parts.append(Table(caption=match.group(1) or "", rows=rows))
        pos = match.end()
    if pos < len(text):
        parts.append(text[pos:])
    return [p for p in parts if isinstance(p, Table) or p.strip()]


# --- Markdown pipe tables ------------------------------------------------------------------------

_PIPE_ROW = re.compile(r"^\s*\|?.*\|.*$")
_PIPE_RULE = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")


def _pipe_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_pipe_tables(text: str) -> str:
    """Replace GitHub-style pipe tables (header, ``---`` rule, rows) with marked row blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if (
            not in_fence
            and i + 1 < len(lines)
            and "|" in line
            and _PIPE_ROW.match(line)
            and _PIPE_RULE.match(lines[i + 1])
            and "-" in lines[i + 1]
        ):
            header = _pipe_cells(line)
            body: list[list[str]] = []
            j = i + 2
            while j < len(lines) and lines[j].strip() and "|" in lines[j]:
                body.append(_pipe_cells(lines[j]))
                j += 1
            block = table_block([header, *body])
            if block:
                out.extend(["", block, ""])
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)

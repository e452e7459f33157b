"""DOCX (python-docx) and XLSX (openpyxl) to Markdown.

DOCX: paragraphs in document order; ``Title``/``Heading N`` styles become ``#`` lines, list styles
``- `` items, tables marked row blocks (a ``Caption``-styled paragraph next to a table is its
caption). XLSX: each sheet is a ``## Sheet name`` section holding one table whose header is the
sheet's first non-empty row; values are the cached results of formulas (``data_only``).
Callers check the ZIP with :mod:`retrieval.formats.safety` first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from retrieval.formats.cleaning import clean_text, one_line
from retrieval.formats.errors import FormatError
from retrieval.formats.tables import table_block

_HEADING = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_NUMBERISH = re.compile(r"^[\d\s.,%$€£¥+-]+$")


def read_docx(path: Path) -> tuple[str, str]:
    """(title, Markdown) of a DOCX file. Raises :class:`FormatError`."""
    import docx
    from docx.table import Table as DocxTable

    try:
        document = docx.Document(str(path))
        items = list(document.iter_inner_content())
        title = one_line(document.core_properties.title or "")
        parts: list[str] = []
        used_captions: set[int] = set()
        for index, item in enumerate(items):
            if isinstance(item, DocxTable):
                caption = _caption(items, index, used_captions)
                block = table_block(_docx_rows(item), caption=caption, header=_has_header(item))
                if block:
                    parts.append(block)
                continue
            if index in used_captions:
                continue
            text = one_line(item.text)
            if not text:
                continue
            style = _style_name(item)
            heading = _HEADING.match(style)
            if style.casefold() == "title":
                parts.append(f"# {text}")
                title = title or text
            elif heading:
                parts.append("#" * int(heading.group(1)) + " " + text)
                if not title and heading.group(1) == "1":
                    title = text
            elif style.casefold().startswith("list"):
                parts.append(f"- {text}")
            elif style.casefold() == "caption" and _next_is_table(items, index):
                continue  # the next table's caption
            else:
                parts.append(text)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"not a readable DOCX file: {exc}") from exc
    return title, clean_text("\n\n".join(parts), markdown=True)


def _style_name(paragraph: Any) -> str:
    try:
        return str(paragraph.style.name or "") if paragraph.style is not None else ""
    except Exception:
        return ""


def _next_is_table(items: list[Any], index: int) -> bool:
    from docx.table import Table as DocxTable

    return index + 1 < len(items) and isinstance(items[index + 1], DocxTable)


def _caption(items: list[Any], index: int, used: set[int]) -> str:
    """A ``Caption`` paragraph right before the table (or right after it, Word's default)."""
    from docx.table import Table as DocxTable

    for near in (index - 1, index + 1):
        if (
            0 <= near < len(items)
            and not isinstance(items[near], DocxTable)
            and _style_name(items[near]).casefold() == "caption"
            and one_line(items[near].text)
        ):
            used.add(near)
            return one_line(items[near].text)
    return ""


def _docx_rows(table: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A horizontally merged cell comes back once per grid column it spans.
            cells.append("" if cell._tc is previous else cell.text)
            previous = cell._tc
        rows.append(cells)
    return rows


def _has_header(table: Any) -> bool:
    """Word does not say; a first row of distinct, non-numeric labels is taken as the header."""
    rows = list(table.rows)
    if len(rows) < 2:
        return False
    first = [one_line(c.text) for c in rows[0].cells]
    labels = [c for c in first if c]
    return (
        len(labels) == len(first)
        and len(set(labels)) == len(labels)
        and not any(_NUMBERISH.match(c) for c in labels)
    )


def read_xlsx(path: Path) -> tuple[str, str]:
    """(title, Markdown) of an XLSX workbook: one ``## sheet`` section and table per sheet."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:
        raise FormatError(f"not a readable XLSX file: {exc}") from exc
    try:
        title = one_line(workbook.properties.title or "") if workbook.properties else ""
        parts: list[str] = []
        for sheet in workbook.worksheets:
            name = one_line(sheet.title)
            block = table_block(
                (_trim(row) for row in sheet.iter_rows(values_only=True)), caption=name, header=True
            )
            if block:
                parts.append(f"## {name}\n\n{block}")
    except Exception as exc:
        raise FormatError(f"not a readable XLSX file: {exc}") from exc
    finally:
        workbook.close()
    return title, clean_text("\n\n".join(parts), markdown=True)


def _trim(row: tuple[Any, ...]) -> tuple[Any, ...]:
    end = len(row)
    while end and (row[end - 1] is None or str(row[end - 1]).strip() == ""):
        end -= 1
    return row[:end]

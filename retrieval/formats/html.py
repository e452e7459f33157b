"""HTML to Markdown: headings become ``#`` lines, blocks paragraphs, tables marked row blocks.

Page chrome (scripts, styles, nav, header, footer, aside) is dropped. A ``<table>`` becomes one
row per ``<tr>``; its header is the first row when that row is all ``<th>`` (or in ``<thead>``),
its caption the ``<caption>`` element.
"""

from __future__ import annotations

from typing import Any

from retrieval.formats.tables import table_block

_BLOCKS = (
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "table",
)  # fmt: skip


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, markdown): headings become ``#`` lines, blocks become paragraphs; chrome is dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "nav", "footer", "header", "aside", "noscript", "template"]):
        tag.decompose()
    body = soup.body or soup
    parts: list[str] = []
    for el in body.find_all(_BLOCKS):
        if el.find_parent(_BLOCKS) is not None:  # nested block: its text is in the parent's
            continue
        if el.name == "table":
            parts.append(_table(el))
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name and el.name[0] == "h" and el.name[1:].isdigit():
            parts.append("#" * int(el.name[1:]) + " " + text)
            if not title and el.name == "h1":
                title = text
        elif el.name == "li":
            parts.append(f"- {text}")
        else:
            parts.append(text)
    if not parts:  # no block tags at all: keep whatever text there is
        parts = [" ".join(body.get_text(" ", strip=True).split())]
    return title, "\n\n".join(p for p in parts if p)


def _table(table: Any) -> str:
    caption_el = table.find("caption")
    caption = caption_el.get_text(" ", strip=True) if caption_el else ""
    rows: list[list[str]] = []
    header = False
    for i, tr in enumerate(r for r in table.find_all("tr") if r.find_parent("table") is table):
        cells = [c for c in tr.find_all(["td", "th"]) if c.find_parent("tr") is tr]
        row: list[str] = []
        for cell in cells:
            text = " ".join(cell.get_text(" ", strip=True).split())
            try:
                span = max(1, min(int(cell.get("colspan", 1)), 50))
            except (TypeError, ValueError):
                span = 1
            row.extend([text] + [""] * (span - 1))
        if i == 0:
            header = bool(cells) and (
                all(c.name == "th" for c in cells) or tr.find_parent("thead") is not None
            )
        rows.append(row)
    return table_block(rows, caption=caption, header=header)

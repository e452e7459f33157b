"""Read files, folders and ``corpus.jsonl`` into :class:`Document` objects.

Formats: ``.txt``, ``.md``/``.markdown``, ``.html``/``.htm`` and ``.jsonl`` (the corpus format of
shared/data/FORMATS.md). HTML is turned into Markdown (headings kept) so one heading-aware chunker
serves both. A file that cannot be read is reported as a :class:`LoadFailure` and the rest go on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document

SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
CORPUS_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class LoadFailure:
    source: str
    reason: str


def iter_documents(paths: Sequence[Path], *, max_bytes: int) -> Iterator[Document | LoadFailure]:
    """Documents from each path in order; folders are walked in sorted order, hidden files skipped."""
    for root in paths:
        if not root.exists():
            yield LoadFailure(str(root), "no such file or folder")
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = path.relative_to(root)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if path.suffix.lower() in SUFFIXES or path.suffix.lower() == CORPUS_SUFFIX:
                    yield from _load_file(path, rel.as_posix(), max_bytes)
        else:
            yield from _load_file(root, root.name, max_bytes)


def _load_file(path: Path, doc_id: str, max_bytes: int) -> Iterator[Document | LoadFailure]:
    suffix = path.suffix.lower()
    if suffix != CORPUS_SUFFIX and suffix not in SUFFIXES:
        yield LoadFailure(
            str(path), f"unsupported file type {suffix or '(none)'}; use .txt, .md, .html or .jsonl"
        )
        return
    try:
        size = path.stat().st_size
        if size > max_bytes:
            yield LoadFailure(str(path), f"file is {size} bytes, over the {max_bytes}-byte limit")
            return
        if suffix == CORPUS_SUFFIX:
            yield from _load_corpus(path)
            return
        raw = path.read_bytes()
    except OSError as exc:
        yield LoadFailure(str(path), f"cannot read: {exc.strerror or exc}")
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield LoadFailure(str(path), "not UTF-8 text")
        return
    kind = SUFFIXES[suffix]
    if kind == "html":
        title, text = html_to_markdown(text)
        kind = "markdown"
    else:
        title = _markdown_title(text) if kind == "markdown" else _text_title(text)
    if not text.strip():
        yield LoadFailure(str(path), "file has no text")
        return
    yield Document(
        doc_id=doc_id,
        title=title or path.stem,
        text=text,
        source=str(path),
        metadata={"format": kind},
    )


def _load_corpus(path: Path) -> Iterator[Document | LoadFailure]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield LoadFailure(where, f"invalid JSON: {exc.msg}")
                continue
            if (
                not isinstance(record, dict)
                or not record.get("id")
                or not isinstance(record.get("text"), str)
            ):
                yield LoadFailure(where, 'a corpus line needs "id" and "text" (and optionally "title")')
                continue
            if not record["text"].strip():
                yield LoadFailure(where, "empty text")
                continue
            yield Document(
                doc_id=str(record["id"]),
                title=str(record.get("title") or ""),
                text=record["text"],
                source=where,
                metadata={"format": "text"},
            )


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def _text_title(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 120 else ""
    return ""


_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "th", "dt", "dd")


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

"""Read files, folders and ``corpus.jsonl`` into :class:`Document` objects.

Formats: ``.txt``, ``.md``/``.markdown``, ``.html``/``.htm``, ``.pdf``, ``.docx``, ``.xlsx``,
``.csv``/``.tsv`` and ``.jsonl`` (the corpus format of shared/data/FORMATS.md). Everything with
structure is turned into Markdown (headings kept, tables as marked ``column: value`` row blocks, see
:mod:`retrieval.formats.tables`) so one heading-aware chunker serves all. A file that cannot be
read is reported as a :class:`LoadFailure` and the rest go on; no exception from a parser escapes.

``iter_documents`` walks files and folders (the CLI); ``load_file`` reads one uploaded file (HTTP).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import Document
from retrieval.formats.cleaning import clean_text, decode_text, strip_controls
from retrieval.formats.errors import FormatError
from retrieval.formats.html import html_to_markdown
from retrieval.formats.tables import markdown_pipe_tables

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LoadFailure",
    "html_to_markdown",
    "iter_documents",
    "load_file",
]

CORPUS_SUFFIX = ".jsonl"

#: Suffix -> format name (the converter below). ``.jsonl`` is the multi-document corpus format.
SUFFIXES = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".tsv": "tsv",
}

#: Every suffix :func:`load_file` reads (lower case, with the dot): the HTTP layer's 415 check.
SUPPORTED_SUFFIXES: tuple[str, ...] = (*SUFFIXES, CORPUS_SUFFIX)

#: Not text: the file is not UTF-8 (nor GB18030). Kept short and stable; the CLI tests read it.
NOT_TEXT = "not UTF-8 text"


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
                if path.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield from _load(path, rel.as_posix(), max_bytes, str(path))
        else:
            yield from _load(root, root.name, max_bytes, str(root))


def load_file(
    path: Path, *, doc_id: str, max_bytes: int, source: str | None = None
) -> list[Document | LoadFailure]:
    """The document(s) in one file: one for most formats, many for a ``.jsonl`` corpus.

    ``doc_id`` names the document (and its fallback title: ``Path(doc_id).stem``); ``source``
    defaults to ``str(path)`` (pass the uploaded file name when ``path`` is a temporary file).
    The format is chosen by ``path``'s suffix; anything not in :data:`SUPPORTED_SUFFIXES` is a
    failure. Never raises for a bad file.
    """
    return list(_load(path, doc_id, max_bytes, source or str(path)))


def _load(path: Path, doc_id: str, max_bytes: int, source: str) -> Iterator[Document | LoadFailure]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        yield LoadFailure(
            source,
            f"unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
        return
    try:
        size = path.stat().st_size
    except OSError as exc:
        yield LoadFailure(source, f"cannot read: {exc.strerror or exc}")
        return
    if size > max_bytes:
        yield LoadFailure(source, f"file is {size} bytes, over the {max_bytes}-byte limit")
        return
    if suffix == CORPUS_SUFFIX:
        yield from _load_corpus(path, source)
        return
    fallback_title = Path(doc_id).stem or path.stem
    try:
        title, text, kind = _CONVERTERS[SUFFIXES[suffix]](path, max_bytes, fallback_title)
    except FormatError as exc:
        yield LoadFailure(source, exc.reason)
        return
    except OSError as exc:
        yield LoadFailure(source, f"cannot read: {exc.strerror or exc}")
        return
    except Exception as exc:  # a parser bug on a hostile file must not stop an ingest
        yield LoadFailure(source, f"cannot read {suffix} file: {type(exc).__name__}: {exc}")
        return
    if not text.strip():
        yield LoadFailure(source, "file has no text")
        return
    yield Document(
        doc_id=doc_id,
        title=title or fallback_title,
        text=text,
        source=source,
        metadata={"format": kind},
    )


# --- converters: (path, max_bytes, fallback title) -> (title, text, "text" | "markdown") ---------


def _read_text(path: Path) -> str:
    text = decode_text(path.read_bytes())
    if text is None:
        raise FormatError(NOT_TEXT)
    return text


def _text(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    text = clean_text(_read_text(path))
    return _text_title(text), text, "text"


def _markdown(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    text = clean_text(markdown_pipe_tables(strip_controls(_read_text(path))), markdown=True)
    return _markdown_title(text), text, "markdown"


def _html(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    title, text = html_to_markdown(_read_text(path))
    return title, clean_text(text, markdown=True), "markdown"


def _pdf(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    from retrieval.formats.pdf import read_pdf

    title, text = read_pdf(path)
    return title or _text_title(text), text, "text"


def _docx(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    from retrieval.formats.office import read_docx
    from retrieval.formats.safety import zip_problem

    problem = zip_problem(path, max_bytes=max_bytes, kind="DOCX")
    if problem:
        raise FormatError(problem)
    title, text = read_docx(path)
    return title or _markdown_title(text), text, "markdown"


def _xlsx(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    from retrieval.formats.office import read_xlsx
    from retrieval.formats.safety import zip_problem

    problem = zip_problem(path, max_bytes=max_bytes, kind="XLSX")
    if problem:
        raise FormatError(problem)
    title, text = read_xlsx(path)
    return title, text, "markdown"


def _csv(path: Path, max_bytes: int, fallback: str, delimiter: str | None = None) -> tuple[str, str, str]:
    from retrieval.formats.sheets import csv_to_markdown

    text = csv_to_markdown(strip_controls(_read_text(path)), caption=fallback, delimiter=delimiter)
    return "", clean_text(text, markdown=True), "markdown"


def _tsv(path: Path, max_bytes: int, fallback: str) -> tuple[str, str, str]:
    return _csv(path, max_bytes, fallback, delimiter="\t")


_CONVERTERS: dict[str, Callable[[Path, int, str], tuple[str, str, str]]] = {
    "text": _text,
    "markdown": _markdown,
    "html": _html,
    "pdf": _pdf,
    "docx": _docx,
    "xlsx": _xlsx,
    "csv": _csv,
    "tsv": _tsv,
}


def _load_corpus(path: Path, source: str) -> Iterator[Document | LoadFailure]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{source}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                yield LoadFailure(where, "not UTF-8 text")
                continue
            if not line.strip():
                continue
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
            text = strip_controls(record["text"])  # corpora are kept as written, bar control bytes
            if not text.strip():
                yield LoadFailure(where, "empty text")
                continue
            yield Document(
                doc_id=str(record["id"]),
                title=str(record.get("title") or ""),
                text=text,
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

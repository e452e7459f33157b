"""PDF to text with pypdf: per-page text, repeated headers/footers and page numbers removed.

Pages are joined by blank lines. A PDF that pypdf cannot parse, or that is encrypted with a real
password, is "not a readable PDF"; one whose pages carry no text (scanned images) is refused with
a hint to OCR it; more than :data:`MAX_PAGES` pages is refused before any text is extracted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from retrieval.formats.boilerplate import strip_boilerplate
from retrieval.formats.cleaning import clean_text, join_cjk, one_line
from retrieval.formats.errors import FormatError

MAX_PAGES = 2_000

_JUNK_TITLES = ("microsoft word - ", "untitled")

# Malformed files make pypdf log warnings by the dozen; the LoadFailure says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def read_pdf(path: Path, *, max_pages: int | None = None) -> tuple[str, str]:
    """(title from the PDF's metadata or "", cleaned text). Raises :class:`FormatError`."""
    from pypdf import PdfReader

    limit = MAX_PAGES if max_pages is None else max_pages
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise FormatError("not a readable PDF: it is encrypted with a password")
        count = len(reader.pages)
    except FormatError:
        raise
    except Exception as exc:  # pypdf raises many kinds on broken input
        raise FormatError(f"not a readable PDF: {_describe(exc)}") from exc
    if count == 0:
        raise FormatError("not a readable PDF: it has no pages")
    if count > limit:
        raise FormatError(f"PDF has {count} pages, over the {limit}-page limit")
    pages: list[str] = []
    errors = 0
    for page in reader.pages:
        try:
            pages.append(page.extract_text() or "")
        except Exception:  # one broken page does not sink the rest
            errors += 1
            pages.append("")
    if errors == count:
        raise FormatError("not a readable PDF: no page could be read")
    pages = [clean_text(join_cjk(p)) for p in strip_boilerplate([clean_text(p) for p in pages])]
    text = "\n\n".join(p for p in pages if p)
    if not any(ch.isalnum() for ch in text):
        raise FormatError(
            "PDF has no extractable text (scanned images?); run OCR on it first and upload the result"
        )
    return _title(reader), text


def _title(reader: object) -> str:
    try:
        meta = getattr(reader, "metadata", None)
        title = one_line(str(meta.title)) if meta is not None and meta.title else ""
    except Exception:
        return ""
    low = title.casefold()
    if not title or low.startswith(_JUNK_TITLES) or low.endswith((".doc", ".docx", ".pdf", ".tex")):
        return ""
    return title if len(title) <= 200 else ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."

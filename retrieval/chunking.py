"""Chunking strategies, counted in embedder tokens; tables are never cut between rows.

``heading`` (the default): Markdown (and every format the loaders turn into Markdown) is first
cut at headings by llama-index's ``MarkdownNodeParser``; each section's prose is then cut by
``SentenceSplitter`` at paragraph, then sentence boundaries into chunks of at most
``chunk_tokens`` tokens, consecutive chunks sharing ``chunk_overlap`` tokens. The default
sizes (200/32, api/settings.py) keep a chunk inside all-MiniLM-L6-v2's 256-token window with room
for the title line.

``fixed``: windows of ``chunk_tokens`` tokens over the whole document, ``chunk_overlap`` shared,
ignoring headings and paragraphs (a window's section is the one it starts in).

``parent_child``: the ``heading`` chunks are parents; each is cut into small windows
(``chunk_tokens // 4``, at least 32 tokens) that are embedded as ``Chunk.text`` while
``Chunk.context`` carries the parent's text for the reader.

Tables (marked blocks, see :mod:`retrieval.formats.tables`) are packed whole row by whole row in
every strategy, take the table's caption as their section, and never share a chunk with prose in
``heading``; only a single row longer than ``chunk_tokens`` is cut. No strategy sets
``Chunk.version`` (the ingestor does).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from llama_index.core import Document as LlamaDocument
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

from retrieval.documents import Chunk, Document
from retrieval.formats.tables import Table, split_tables

Strategy = Literal["heading", "fixed", "parent_child"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

#: Document metadata that steers loading/chunking and is not copied onto chunks.
INTERNAL_METADATA = frozenset({"format"})

#: Children of parent-child chunking: this fraction of ``chunk_tokens``, at least MIN_CHILD_TOKENS.
CHILD_DIVISOR = 4
MIN_CHILD_TOKENS = 32
MAX_CHILD_OVERLAP = 8

Tokenize = Callable[[str], list[str]]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_ATOM = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


@dataclass(frozen=True)
class _Piece:
    """A chunk before it becomes a :class:`Chunk`: its section, text, and parent text if any."""

    section: str
    text: str
    table: bool = False
    context: str = ""


@dataclass(frozen=True)
class _Atom:
    """The unit windows are made of: a word, a CJK character, or a whole table row."""

    text: str
    sep: str  # what follows it in the text: "", " ", "\n" or "\n\n"
    tokens: int
    section: str
    row: bool = False


class Chunker:
    def __init__(
        self,
        chunk_tokens: int,
        chunk_overlap: int,
        tokenize: Tokenize,
        strategy: Strategy = "heading",
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown chunking strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if chunk_tokens < 1 or not 0 <= chunk_overlap < chunk_tokens:
            raise ValueError("need chunk_tokens >= 1 and 0 <= chunk_overlap < chunk_tokens")
        self.strategy: Strategy = strategy
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self._tokenize = tokenize
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=chunk_overlap,
            tokenizer=tokenize,
            paragraph_separator="\n\n",
        )
        # Cuts a single over-long table row or word: no overlap, so nothing is repeated.
        self._cutter = SentenceSplitter(
            chunk_size=chunk_tokens, chunk_overlap=0, tokenizer=tokenize, paragraph_separator="\n\n"
        )
        self._sections = MarkdownNodeParser()
        self._child_tokens = max(MIN_CHILD_TOKENS, chunk_tokens // CHILD_DIVISOR)
        self._child_overlap = min(MAX_CHILD_OVERLAP, chunk_overlap, self._child_tokens // 4)
        # Words repeat a lot; bounded, and safe to share between threads.
        self._count: Callable[[str], int] = functools.lru_cache(maxsize=65_536)(lambda t: len(tokenize(t)))

    def chunk(self, kb: str, doc: Document) -> list[Chunk]:
        if self.strategy == "fixed":
            pieces = self._fixed(doc)
        elif self.strategy == "parent_child":
            pieces = self._parent_child(doc)
        else:
            pieces = self._heading(doc)
        metadata = {k: v for k, v in doc.metadata.items() if k not in INTERNAL_METADATA}
        chunks: list[Chunk] = []
        for piece in pieces:
            text = piece.text.strip()
            if not text:
                continue
            chunks.append(
                Chunk(
                    kb=kb,
                    doc_id=doc.doc_id,
                    position=len(chunks),
                    title=doc.title,
                    text=text,
                    source=doc.source,
                    section=piece.section,
                    context=piece.context,
                    metadata=dict(metadata),
                )
            )
        return chunks

    # --- strategies ------------------------------------------------------------------------------

    def _heading(self, doc: Document) -> list[_Piece]:
        pieces: list[_Piece] = []
        for section, body, _ in self._split_sections(doc):
            if not body.strip():  # a heading with nothing under it is not a chunk
                continue
            for part in split_tables(body):
                if isinstance(part, Table):
                    caption = part.caption or section
                    for window in self._windows(self._row_atoms(part, caption), self.chunk_tokens, 0):
                        pieces.append(_Piece(caption, _render(window), table=True))
                else:
                    for text in self._splitter.split_text(part):
                        pieces.append(_Piece(section, text))
        return pieces

    def _fixed(self, doc: Document) -> list[_Piece]:
        atoms: list[_Atom] = []
        for section, body, heading in self._split_sections(doc):
            if heading:
                atoms.extend(self._word_atoms(heading, section, self.chunk_tokens))
            for part in split_tables(body):
                if isinstance(part, Table):
                    atoms.extend(self._row_atoms(part, part.caption or section))
                else:
                    atoms.extend(self._word_atoms(part, section, self.chunk_tokens))
        windows = self._windows(atoms, self.chunk_tokens, self.chunk_overlap)
        return [_Piece(w[0].section, _render(w)) for w in windows]

    def _parent_child(self, doc: Document) -> list[_Piece]:
        children: list[_Piece] = []
        for parent in self._heading(doc):
            text = parent.text.strip()
            if not text:
                continue
            if parent.table:
                atoms = [
                    _Atom(line, "\n", self._count(line), parent.section, row=True)
                    for line in text.split("\n")
                ]
                windows = self._windows(atoms, self._child_tokens, 0)
            else:
                atoms = self._word_atoms(text, parent.section, self._child_tokens)
                windows = self._windows(atoms, self._child_tokens, self._child_overlap)
            for window in windows:
                children.append(_Piece(parent.section, _render(window), context=text))
        return children

    # --- structure -------------------------------------------------------------------------------

    def _split_sections(self, doc: Document) -> list[tuple[str, str, str]]:
        """(section, body, heading line text) per Markdown section; one untitled one for plain text."""
        if doc.metadata.get("format") != "markdown":
            return [("", doc.text, "")]
        nodes = self._sections.get_nodes_from_documents([LlamaDocument(text=doc.text)])
        sections: list[tuple[str, str, str]] = []
        for node in nodes:
            text = node.get_content()
            first, _, rest = text.partition("\n")
            if first.lstrip().startswith("#"):
                heading = first.lstrip("#").strip()
                sections.append((heading, rest, heading))
            else:
                sections.append(("", text, ""))
        return sections

    # --- atoms and windows -----------------------------------------------------------------------

    def _row_atoms(self, table: Table, section: str) -> list[_Atom]:
        """One atom per row; a row over ``chunk_tokens`` (the only cut allowed) becomes several."""
        atoms: list[_Atom] = []
        for row in table.rows:
            tokens = self._count(row)
            if tokens <= self.chunk_tokens:
                atoms.append(_Atom(row, "\n", tokens, section, row=True))
                continue
            for piece in self._cutter.split_text(row):
                atoms.append(_Atom(piece.strip(), "\n", self._count(piece.strip()), section, row=True))
        return atoms

    def _word_atoms(self, text: str, section: str, limit: int) -> list[_Atom]:
        atoms: list[_Atom] = []
        matches = list(_ATOM.finditer(text))
        for i, match in enumerate(matches):
            gap = text[match.end() : matches[i + 1].start()] if i + 1 < len(matches) else "\n\n"
            sep = "\n\n" if gap.count("\n") > 1 else "\n" if "\n" in gap else " " if gap else ""
            word = match.group()
            tokens = self._count(word)
            if tokens <= limit:
                atoms.append(_Atom(word, sep, tokens, section))
                continue
            pieces = [p for p in _cut_chars(word, limit, self._count) if p]
            for j, piece in enumerate(pieces):
                atoms.append(_Atom(piece, sep if j == len(pieces) - 1 else "", self._count(piece), section))
        return atoms

    def _windows(self, atoms: list[_Atom], size: int, overlap: int) -> list[list[_Atom]]:
        """Greedy windows of at most ``size`` tokens; the next one starts up to ``overlap`` tokens
        back, but never on a table row (a row is in exactly one window)."""
        windows: list[list[_Atom]] = []
        start = 0
        while start < len(atoms):
            end, total = start, 0
            while end < len(atoms) and (end == start or total + atoms[end].tokens <= size):
                total += atoms[end].tokens
                end += 1
            # Token counts of the parts need not add up exactly; the joined text must fit.
            while end - start > 1 and len(self._tokenize(_render(atoms[start:end]))) > size:
                end -= 1
            windows.append(atoms[start:end])
            if end >= len(atoms):
                break
            back, carried = end, 0
            while (
                back - 1 > start and not atoms[back - 1].row and carried + atoms[back - 1].tokens <= overlap
            ):
                back -= 1
                carried += atoms[back].tokens
            start = back
        return windows


def _render(atoms: list[_Atom]) -> str:
    return "".join(a.text + a.sep for a in atoms).strip()


def _cut_chars(word: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """A single huge "word" (a URL, a base64 blob) cut into pieces of at most ``limit`` tokens."""
    pieces: list[str] = []
    rest = word
    while rest:
        lo, hi = 1, len(rest)
        while lo < hi:  # the longest prefix that fits
            mid = (lo + hi + 1) // 2
            if count(rest[:mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        pieces.append(rest[:lo])
        rest = rest[lo:]
    return pieces


def make_chunker(strategy: Strategy, chunk_tokens: int, chunk_overlap: int, tokenize: Tokenize) -> Chunker:
    """A :class:`Chunker` for ``strategy`` (one of :data:`STRATEGIES`)."""
    return Chunker(chunk_tokens, chunk_overlap, tokenize, strategy=strategy)

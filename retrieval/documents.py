"""The data that flows through retrieval: documents, chunks, hits."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

# Fixed namespace so that a chunk's point id is a pure function of (kb, doc id, position):
# re-ingesting after a crash overwrites the same points instead of duplicating them.
_POINT_NAMESPACE = uuid.UUID("7c1b6a52-2f0e-4f5a-9d35-5b0f4e8b9a11")

#: Version of the text a chunk is embedded as (Chunk.embed_text); bump it to re-index on change.
EMBED_FORMAT = 3


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.title}\x00{self.text}".encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    kb: str
    doc_id: str
    position: int
    title: str
    text: str
    source: str
    section: str = ""
    #: Text handed to the reader instead of ``text`` (parent-child chunking: the parent section);
    #: empty means ``text`` itself.
    context: str = ""
    #: The document's metadata (searchable with filters); copied into the payload under ``meta``.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: The document version this chunk belongs to (see retrieval/ingest.py); part of the point id,
    #: so a new version is written beside the old one and swapped in at once.
    version: str = ""

    @property
    def point_id(self) -> str:
        key = f"{self.kb}\x00{self.doc_id}\x00{self.version}\x00{self.position}"
        return str(uuid.uuid5(_POINT_NAMESPACE, key))

    @property
    def embed_text(self) -> str:
        """What the embedder sees: title and section give a chunk its context. The ``title:`` form
        measured best on rc/xquad_zh with no loss on rc/xquad_en (README, chunk text variants)."""
        head = f"title: {self.title}\n" if self.title else ""
        if self.section and self.section != self.title:
            head += f"section: {self.section}\n"
        return f"{head}\n{self.text}" if head else self.text

    def payload(self) -> dict[str, Any]:
        return {
            "kb": self.kb,
            "doc_id": self.doc_id,
            "position": self.position,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "context": self.context,
            "source": self.source,
            "meta": dict(self.metadata),
            "version": self.version,
        }


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk (or FAQ question) with its scores.

    ``score`` ranks hits within one search (cosine in dense mode, BM25 in sparse mode, the RRF
    score in hybrid mode); ``relevance`` is always on the dense cosine scale, so one evidence
    threshold works in every mode (see retrieval/search.py); ``retrievers`` says which retriever
    found the hit, at what rank, with what score of its own.
    """

    chunk_id: str
    doc_id: str
    title: str
    text: str
    source: str
    position: int
    score: float
    section: str = ""
    context: str = ""
    relevance: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    retrievers: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    answer: str = ""  # FAQ hits: the stored answer, verbatim

    @property
    def evidence_score(self) -> float:
        """The score an evidence threshold compares: ``relevance`` when set, else ``score``."""
        return self.score if self.relevance is None else self.relevance

    @property
    def reader_text(self) -> str:
        """What a reader or generator should see: the parent context when there is one."""
        return self.context or self.text

    @classmethod
    def from_payload(
        cls,
        chunk_id: str,
        score: float,
        payload: dict[str, Any],
        *,
        relevance: float | None = None,
        retrievers: dict[str, Any] | None = None,
    ) -> Hit:
        return cls(
            chunk_id=chunk_id,
            doc_id=str(payload.get("doc_id", "")),
            title=str(payload.get("title", "")),
            text=str(payload.get("text", "")),
            source=str(payload.get("source", "")),
            position=int(payload.get("position", 0)),
            section=str(payload.get("section", "")),
            context=str(payload.get("context", "") or ""),
            answer=str(payload.get("answer", "") or ""),
            metadata=dict(payload.get("meta") or {}),
            score=float(score),
            relevance=float(score if relevance is None else relevance),
            retrievers=dict(retrievers or {}),
        )

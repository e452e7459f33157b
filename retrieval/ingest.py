"""Ingestion: documents -> chunks -> vectors -> the store, resumable after a crash.

Per batch of documents: unchanged documents (same content hash, already ``indexed``) are
skipped; the rest are marked ``indexing``, chunked, embedded and upserted under deterministic
point ids, their stale tail chunks (from a longer earlier version) deleted, then marked
``indexed``. ``kill -9`` at any point and the same ingest again gives the same index, with no
duplicate chunks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from retrieval.chunking import Chunker
from retrieval.documents import Chunk, Document
from retrieval.embedder import Embedder
from retrieval.loaders import LoadFailure
from retrieval.metadata import INDEXED, INDEXING, MetadataStore
from retrieval.vectorstores.base import VectorStore

#: Documents embedded together: big enough to batch the embedder well, small enough that a
#: crash loses little work.
DOC_BATCH = 32

Progress = Callable[["IngestReport"], None]


@dataclass
class IngestReport:
    kb: str
    documents: int = 0  # documents seen
    indexed: int = 0  # (re)indexed now
    unchanged: int = 0  # skipped: same content already indexed
    chunks: int = 0  # chunks written now
    failures: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "kb": self.kb,
            "documents": self.documents,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "chunks": self.chunks,
            "failed": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_per_second, 1),
        }


class Ingestor:
    """``signature`` names how chunks are made and embedded (embedder, chunk sizes, text format);
    it is part of each document's stored hash, so changing any of them re-indexes on next ingest."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        chunker: Chunker,
        metadata: MetadataStore,
        signature: str = "",
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._chunker = chunker
        self._metadata = metadata
        self._signature = signature

    def _hash(self, doc: Document) -> str:
        return hashlib.sha256(f"{self._signature}\x00{doc.content_hash}".encode()).hexdigest()

    def ingest(
        self, kb: str, items: Iterable[Document | LoadFailure], progress: Progress | None = None
    ) -> IngestReport:
        report = IngestReport(kb=kb)
        started = time.perf_counter()
        self._metadata.ensure_kb(kb)
        batch: dict[str, Document] = {}
        for item in items:
            if isinstance(item, LoadFailure):
                report.failures.append(item)
                continue
            report.documents += 1
            batch[item.doc_id] = item  # a repeated id in one run: the last one wins
            if len(batch) >= DOC_BATCH:
                self._ingest_batch(kb, list(batch.values()), report)
                batch.clear()
                report.seconds = time.perf_counter() - started
                if progress:
                    progress(report)
        if batch:
            self._ingest_batch(kb, list(batch.values()), report)
        report.seconds = time.perf_counter() - started
        if progress:
            progress(report)
        return report

    def _ingest_batch(self, kb: str, docs: list[Document], report: IngestReport) -> None:
        known = self._metadata.document_states(kb, [d.doc_id for d in docs])
        todo = [d for d in docs if known.get(d.doc_id) != (self._hash(d), INDEXED)]
        report.unchanged += len(docs) - len(todo)
        if not todo:
            return
        self._metadata.mark(kb, [self._row(d, 0) for d in todo], INDEXING)
        per_doc = {d.doc_id: self._chunker.chunk(kb, d) for d in todo}
        chunks: list[Chunk] = [c for cs in per_doc.values() for c in cs]
        vectors = self._embedder.embed([c.embed_text for c in chunks], kind="document")
        if chunks:
            self._store.upsert(chunks, vectors.tolist())
        for doc in todo:
            # Drop chunks past the new end: an earlier, longer version of this document.
            self._store.delete(kb, doc_id=doc.doc_id, min_position=len(per_doc[doc.doc_id]))
        self._metadata.mark(kb, [self._row(d, len(per_doc[d.doc_id])) for d in todo], INDEXED)
        report.indexed += len(todo)
        report.chunks += len(chunks)

    def _row(self, doc: Document, chunks: int) -> dict[str, object]:
        return {
            "doc_id": doc.doc_id,
            "title": doc.title,
            "source": doc.source,
            "content_hash": self._hash(doc),
            "chunks": chunks,
        }

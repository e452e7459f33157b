"""Ingestion: documents and FAQs -> chunks -> dense and sparse vectors -> the store.

Per batch: unchanged items (same content hash, already ``indexed``) are skipped, and so is a
document whose exact content is already indexed under another id (content-hash dedup). The rest
are marked ``indexing``, chunked, embedded and written as a new *staged* version next to the
live one; then each is published (its new version made live, the old one dropped in one step)
and marked ``indexed``. Search never sees a half-written document; ``kill -9`` at any point and
the same ingest again gives the same index, with no duplicate chunks (point ids are a pure
function of kb, item, version and position).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from retrieval.chunking import Chunker
from retrieval.documents import Chunk, Document
from retrieval.embedder import Embedder
from retrieval.errors import KnowledgeBaseNotFound
from retrieval.faq_records import FaqRecord
from retrieval.loaders import LoadFailure
from retrieval.locks import KbLocks
from retrieval.metadata import INDEXED, INDEXING, KnowledgeBaseInfo, MetadataStore
from retrieval.sparse import SparseEncoder
from retrieval.vectorstores.base import CHUNK, FAQ, STAGED, IndexPoint, VectorStore

#: Documents embedded together: big enough to batch the embedder well, small enough that a
#: crash or a cancel loses little work.
DOC_BATCH = 32

Progress = Callable[["IngestReport"], None]

#: Document metadata keys that are ragnet's own, not the user's.
INTERNAL_KEYS = frozenset({"format"})


@dataclass
class IngestReport:
    kb: str
    documents: int = 0  # items seen
    indexed: int = 0  # (re)indexed now
    unchanged: int = 0  # skipped: same content already indexed
    chunks: int = 0  # points written now
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, same content as)
    failures: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "kb": self.kb,
            "documents": self.documents,
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "duplicates": [{"doc_id": d, "same_as": s} for d, s in self.duplicates],
            "chunks": self.chunks,
            "failed": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_per_second, 1),
            "cancelled": self.cancelled,
        }


def text_hash(doc: Document) -> str:
    """Dedup key: the text alone, whitespace-normalised (a renamed copy is still a copy)."""
    return hashlib.sha256(" ".join(doc.text.split()).encode()).hexdigest()


def user_metadata(doc: Document) -> dict[str, Any]:
    return {k: v for k, v in doc.metadata.items() if k not in INTERNAL_KEYS}


class Ingestor:
    """``signature`` names how chunks are made and embedded (embedder, sparse encoder, chunk sizes,
    text format); it is part of each item's stored hash, so changing any of them re-indexes."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        chunker_for: Callable[[str], Chunker],
        metadata: MetadataStore,
        signature: str = "",
        locks: KbLocks | None = None,
    ) -> None:
        self.locks = locks or KbLocks()
        self._store = store
        self._embedder = embedder
        self._sparse = sparse
        self._chunker_for = chunker_for
        self._metadata = metadata
        self._signature = signature
        self.points_written = 0  # by this ingestor, ever: tells a run whether to optimise

    def _hash(self, content: str) -> str:
        return hashlib.sha256(f"{self._signature}\x00{content}".encode()).hexdigest()

    def _doc_hash(self, doc: Document) -> str:
        meta = json.dumps(user_metadata(doc), sort_keys=True, ensure_ascii=False)
        return self._hash(f"{doc.content_hash}\x00{meta}")

    # --- documents ---------------------------------------------------------------------
    def _kb(self, kb: KnowledgeBaseInfo | str) -> KnowledgeBaseInfo:
        """A kb given by name is created on first use (the CLI's `ingest --kb NEW`)."""
        return self._metadata.ensure_kb(kb) if isinstance(kb, str) else kb

    def ingest(
        self,
        kb: KnowledgeBaseInfo | str,
        items: Iterable[Document | LoadFailure],
        progress: Progress | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
        dedup: bool = True,
    ) -> IngestReport:
        kb = self._kb(kb)
        report = IngestReport(kb=kb.name)
        started = time.perf_counter()
        written = self.points_written
        batch: dict[str, Document] = {}

        def flush() -> None:
            self._ingest_batch(kb, list(batch.values()), report, dedup)
            batch.clear()
            report.seconds = time.perf_counter() - started
            if progress:
                progress(report)

        for item in items:
            if cancelled is not None and cancelled():
                report.cancelled = True
                break
            if isinstance(item, LoadFailure):
                report.failures.append(item)
                continue
            report.documents += 1
            batch[item.doc_id] = item  # a repeated id in one run: the last one wins
            if len(batch) >= DOC_BATCH:
                flush()
        if batch and not report.cancelled:
            flush()
        self._optimize_if_written(written)
        report.seconds = time.perf_counter() - started
        if progress:
            progress(report)
        return report

    def _ingest_batch(
        self, kb: KnowledgeBaseInfo, docs: list[Document], report: IngestReport, dedup: bool
    ) -> None:
        with self.locks.hold(kb.id):
            self._check_kb(kb)
            self._ingest_locked(kb, docs, report, dedup)

    def _check_kb(self, kb: KnowledgeBaseInfo) -> None:
        if self._metadata.get_kb_by_id(kb.id) is None:  # deleted while we waited for the lock
            raise KnowledgeBaseNotFound(kb.name)

    def _ingest_locked(
        self, kb: KnowledgeBaseInfo, docs: list[Document], report: IngestReport, dedup: bool
    ) -> None:
        hashes = {d.doc_id: self._doc_hash(d) for d in docs}
        known = self._metadata.document_states(kb.id, hashes)
        todo: list[Document] = []
        seen: dict[str, str] = {}
        for doc in docs:
            digest = hashes[doc.doc_id]
            if known.get(doc.doc_id) == (digest, INDEXED):
                report.unchanged += 1
                continue
            text = text_hash(doc)
            twin = seen.get(text) or (self._metadata.find_by_text(kb.id, text) if dedup else None)
            if dedup and twin is not None and twin != doc.doc_id:
                report.duplicates.append((doc.doc_id, twin))
                continue
            seen[text] = doc.doc_id
            todo.append(doc)
        if not todo:
            return
        rows = {d.doc_id: self._doc_row(d, hashes[d.doc_id], 0) for d in todo}
        self._metadata.mark(kb.id, rows.values(), INDEXING)
        chunker = self._chunker_for(kb.chunking)
        per_doc: dict[str, list[Chunk]] = {}
        for doc in todo:
            version = str(rows[doc.doc_id]["version"])
            meta = user_metadata(doc)
            per_doc[doc.doc_id] = [
                replace(c, kb=kb.id, version=version, metadata=meta) for c in chunker.chunk(kb.id, doc)
            ]
        chunks = [c for cs in per_doc.values() for c in cs]
        self._write(
            [(c.point_id, c.embed_text, {**c.payload(), "kind": CHUNK, "state": STAGED}) for c in chunks]
        )
        for doc in todo:
            self._store.publish(kb.id, CHUNK, doc.doc_id, str(rows[doc.doc_id]["version"]))
            rows[doc.doc_id]["chunks"] = len(per_doc[doc.doc_id])
        self._metadata.mark(kb.id, rows.values(), INDEXED)
        report.indexed += len(todo)
        report.chunks += len(chunks)

    def _optimize_if_written(self, before: int) -> None:
        """Index what this run wrote (Edge searches unindexed points by brute force)."""
        if self.points_written > before:
            self._store.optimize()

    def _write(self, items: Sequence[tuple[str, str, dict[str, Any]]], kind: str = "document") -> None:
        if not items:
            return
        self.points_written += len(items)
        texts = [text for _, text, _ in items]
        dense = self._embedder.embed(texts, kind="query" if kind == "query" else "document")
        sparse = self._sparse.encode_documents(texts)
        self._store.upsert(
            [
                IndexPoint(pid, d.tolist(), s, payload)
                for (pid, _, payload), d, s in zip(items, dense, sparse, strict=True)
            ]
        )

    def _doc_row(self, doc: Document, digest: str, chunks: int) -> dict[str, Any]:
        return {
            "doc_id": doc.doc_id,
            "title": doc.title,
            "source": doc.source,
            "content_hash": digest,
            "text_hash": text_hash(doc),
            "version": digest[:16],
            "chunks": chunks,
            "metadata": user_metadata(doc),
        }

    # --- FAQs --------------------------------------------------------------------------
    def ingest_faqs(
        self,
        kb: KnowledgeBaseInfo | str,
        records: Iterable[FaqRecord | LoadFailure],
        progress: Progress | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> IngestReport:
        """Index FAQs: each question variant is a point (embedded as a query: FAQ questions are
        matched against users' questions); the answer rides along in the payload, verbatim."""
        kb = self._kb(kb)
        report = IngestReport(kb=kb.name)
        started = time.perf_counter()
        written = self.points_written
        batch: list[FaqRecord] = []
        for item in records:
            if cancelled is not None and cancelled():
                report.cancelled = True
                break
            if isinstance(item, LoadFailure):
                report.failures.append(item)
                continue
            report.documents += 1
            batch.append(item)
            if len(batch) >= DOC_BATCH * 4:
                self._faq_batch(kb, batch, report)
                batch = []
                report.seconds = time.perf_counter() - started
                if progress:
                    progress(report)
        if batch and not report.cancelled:
            self._faq_batch(kb, batch, report)
        self._optimize_if_written(written)
        report.seconds = time.perf_counter() - started
        if progress:
            progress(report)
        return report

    def _faq_batch(self, kb: KnowledgeBaseInfo, records: list[FaqRecord], report: IngestReport) -> None:
        with self.locks.hold(kb.id):
            self._check_kb(kb)
            self._faq_locked(kb, records, report)

    def _faq_locked(self, kb: KnowledgeBaseInfo, records: list[FaqRecord], report: IngestReport) -> None:
        unique = {r.id: r for r in records}
        hashes = {r.id: self._hash(r.content_key) for r in unique.values()}
        known = self._metadata.faq_states(kb.id, hashes)
        todo = [r for r in unique.values() if known.get(r.id) != (hashes[r.id], INDEXED)]
        report.unchanged += len(unique) - len(todo)
        if not todo:
            return
        rows = {
            r.id: {
                "faq_id": r.id,
                "questions": list(r.questions),
                "answer": r.answer,
                "metadata": dict(r.metadata),
                "content_hash": hashes[r.id],
                "version": hashes[r.id][:16],
            }
            for r in todo
        }
        self._metadata.mark_faqs(kb.id, rows.values(), INDEXING)
        points = [
            (
                r.point_id(kb.id, str(rows[r.id]["version"]), i),
                q,
                r.payload(kb.id, str(rows[r.id]["version"]), i),
            )
            for r in todo
            for i, q in enumerate(r.questions)
        ]
        self._write(points, kind="query")
        for r in todo:
            self._store.publish(kb.id, FAQ, r.id, str(rows[r.id]["version"]))
        self._metadata.mark_faqs(kb.id, rows.values(), INDEXED)
        report.indexed += len(todo)
        report.chunks += len(points)

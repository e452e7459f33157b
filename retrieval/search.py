"""Search over one knowledge base: dense, sparse (BM25) or hybrid (RRF), documents and FAQs apart.

Hits carry a ``relevance`` on the dense cosine scale so that one evidence threshold works in all
modes: the hit's own dense score when the dense retriever ranked it among its candidates,
otherwise the lowest dense score among the returned hits (the keyword match vouches for it about
as much as for the weakest dense hit), and 0 in sparse mode. Parent-child chunks that share a
parent come back once, as the best-ranked child. A rerank stage sits behind :class:`Reranker`;
the default keeps the fused order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrieval.documents import Hit
from retrieval.embedder import Embedder
from retrieval.errors import KnowledgeBaseNotFound
from retrieval.metadata import KnowledgeBaseInfo, MetadataStore
from retrieval.sparse import SparseEncoder
from retrieval.vectorstores.base import CHUNK, FAQ, Filters, Kind, Mode, StoredHit, StoreQuery, VectorStore


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best ``k`` of ``hits`` for ``query``, best first."""


class KeepOrder:
    """The default rerank stage: the retrievers' fused order (a trained reranker may replace it)."""

    name = "none"

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return list(hits[:k])


@dataclass(frozen=True)
class SearchOptions:
    mode: Mode = "hybrid"
    filters: Mapping[str, object] = field(default_factory=dict)


class Retriever:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        metadata: MetadataStore,
        *,
        default_mode: Mode = "hybrid",
        faq_mode: Mode = "dense",
        reranker: Reranker | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._sparse = sparse
        self._metadata = metadata
        self.default_mode: Mode = default_mode
        self.faq_mode: Mode = faq_mode
        self._reranker = reranker or KeepOrder()

    def kb(self, name: str) -> KnowledgeBaseInfo:
        info = self._metadata.get_kb(name)
        if info is None:
            raise KnowledgeBaseNotFound(name)
        return info

    def search(
        self, kb: str, query: str, k: int, *, mode: Mode | None = None, filters: Filters | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks of ``kb`` for ``query``; unknown kb -> KnowledgeBaseNotFound."""
        return self._search(kb, query, k, CHUNK, mode or self.default_mode, filters or {})

    def search_faqs(
        self, kb: str, query: str, k: int, *, mode: Mode | None = None, filters: Filters | None = None
    ) -> list[Hit]:
        """The ``k`` best FAQs (one hit per FAQ, its best-matching question variant)."""
        hits = self._search(kb, query, k * 3, FAQ, mode or self.faq_mode, filters or {})
        best: dict[str, Hit] = {}
        for hit in hits:
            best.setdefault(hit.doc_id, hit)
        return list(best.values())[:k]

    def _search(self, kb: str, query: str, k: int, kind: Kind, mode: Mode, filters: Filters) -> list[Hit]:
        info = self.kb(kb)
        dense = self._embedder.embed([query], kind="query")[0].tolist() if mode != "sparse" else None
        sparse = self._sparse.encode_query(query) if mode != "dense" else None
        request = StoreQuery(
            kb=info.id, k=k, mode=mode, kind=kind, dense=dense, sparse=sparse, filters=filters
        )
        stored = self._store.search(request)
        hits: list[Hit] = []
        parents: set[tuple[str, str]] = set()
        for h in stored:
            hit = _to_hit(h, stored, mode)
            if hit.context:
                if (hit.doc_id, hit.context) in parents:
                    continue
                parents.add((hit.doc_id, hit.context))
            hits.append(hit)
        return self._reranker.rerank(query, hits, k) if kind == CHUNK else hits


def _to_hit(hit: StoredHit, all_hits: list[StoredHit], mode: Mode) -> Hit:
    dense = hit.retrievers.get("dense")
    if mode == "dense":
        relevance = hit.score
    elif dense is not None:
        relevance = dense.score
    else:
        scores = [h.retrievers["dense"].score for h in all_hits if "dense" in h.retrievers]
        relevance = min(scores) if scores else 0.0
    retrievers = {name: {"rank": r.rank, "score": round(r.score, 4)} for name, r in hit.retrievers.items()}
    return Hit.from_payload(hit.id, hit.score, hit.payload, relevance=relevance, retrievers=retrievers)


def top_documents(hits: list[Hit], k: int) -> list[Hit]:
    """The best hit per document, documents in rank order, at most ``k`` of them."""
    seen: dict[str, Hit] = {}
    for hit in hits:
        if hit.doc_id not in seen:
            seen[hit.doc_id] = hit
            if len(seen) == k:
                break
    return list(seen.values())

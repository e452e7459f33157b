"""Dense search over one knowledge base."""

from __future__ import annotations

from retrieval.documents import Hit
from retrieval.embedder import Embedder
from retrieval.errors import KnowledgeBaseNotFound
from retrieval.metadata import MetadataStore
from retrieval.vectorstores.base import VectorStore


class Retriever:
    def __init__(self, store: VectorStore, embedder: Embedder, metadata: MetadataStore) -> None:
        self._store = store
        self._embedder = embedder
        self._metadata = metadata

    def search(self, kb: str, query: str, k: int) -> list[Hit]:
        """The ``k`` best chunks of ``kb`` for ``query``; unknown kb -> KnowledgeBaseNotFound."""
        if not self._metadata.kb_exists(kb):
            raise KnowledgeBaseNotFound(kb)
        vector = self._embedder.embed([query], kind="query")[0]
        return self._store.search(kb, vector.tolist(), k)


def top_documents(hits: list[Hit], k: int) -> list[Hit]:
    """The best hit per document, documents in rank order, at most ``k`` of them."""
    seen: dict[str, Hit] = {}
    for hit in hits:
        if hit.doc_id not in seen:
            seen[hit.doc_id] = hit
            if len(seen) == k:
                break
    return list(seen.values())

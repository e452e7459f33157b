"""The vector-store interface. Backends: Qdrant Edge (embedded default) and qdrant-client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from retrieval.documents import Chunk, Hit

#: Payload fields that get a keyword/integer index: every search filters by kb.
KEYWORD_FIELDS = ("kb", "doc_id")
INTEGER_FIELDS = ("position",)


class VectorStore(Protocol):
    """Chunks with a dense vector and a payload, searched by kb."""

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or overwrite chunks (their point id is deterministic)."""

    def delete(self, kb: str, doc_id: str | None = None, min_position: int | None = None) -> None:
        """Delete a kb's chunks, one document's, or a document's chunks from ``min_position`` on."""

    def search(self, kb: str, vector: Sequence[float], k: int) -> list[Hit]:
        """The ``k`` nearest chunks of ``kb`` by cosine similarity, best first."""

    def count(self, kb: str | None = None, doc_id: str | None = None) -> int:
        """Exact number of chunks, optionally of one kb or one document."""

    def close(self) -> None:
        """Flush and release the store (and its folder lock)."""

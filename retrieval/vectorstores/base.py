"""The vector-store interface. Backends: Qdrant Edge (embedded default) and qdrant-client.

A store holds *points*: a dense vector, a sparse (BM25-style) vector and a payload. Every point
belongs to a knowledge base (``kb``), is a document chunk or a FAQ question (``kind``), and to one
*version* of its document or FAQ (``doc_id`` + ``version``). New versions are written ``staged``
(invisible to search) and made ``live`` by :meth:`VectorStore.publish`, which also drops the old
versions: search never sees a half-written document, and an update replaces all of a document's
chunks at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: Payload fields that get a keyword/integer index: every search filters by kb, kind and state.
KEYWORD_FIELDS = ("kb", "kind", "doc_id", "version", "state")
INTEGER_FIELDS = ("position",)

DENSE = "dense"
SPARSE = "sparse"

Kind = Literal["chunk", "faq"]
CHUNK: Kind = "chunk"
FAQ: Kind = "faq"

LIVE = "live"
STAGED = "staged"

Mode = Literal["dense", "sparse", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "sparse", "hybrid")

#: Metadata filters: ``{"product": "pro"}`` or ``{"product": ["pro", "team"]}`` (any of).
Scalar = str | int | bool
Filters = Mapping[str, Scalar | Sequence[Scalar]]

#: Reciprocal-rank-fusion constant: the usual 60 (the README's retrieval table measures hybrid).
RRF_K = 60
#: Extra fused hits asked for, so that hits tied at the k-th place are ordered by us, not by chance.
TIE_SLACK = 4


@dataclass(frozen=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class IndexPoint:
    id: str
    dense: Sequence[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class RetrieverScore:
    """Where one retriever ranked a hit (1-based) and its own score."""

    rank: int
    score: float


@dataclass(frozen=True)
class StoredHit:
    id: str
    score: float
    payload: dict[str, Any]
    retrievers: dict[str, RetrieverScore] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreQuery:
    kb: str
    k: int
    mode: Mode = "hybrid"
    kind: Kind = "chunk"
    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None
    filters: Filters = field(default_factory=dict)
    #: How many candidates each retriever brings to the fusion (default: 4k, at least 20).
    candidates: int = 0

    @property
    def prefetch(self) -> int:
        return self.candidates or max(4 * self.k, 20)


class VectorStore(Protocol):
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or overwrite points (ids are deterministic, so a retry duplicates nothing)."""

    def publish(self, kb: str, kind: Kind, doc_id: str, version: str) -> None:
        """Make ``version`` of a document (or FAQ) live and delete its other versions, in one step
        as far as this store's readers can tell."""

    def delete(
        self, kb: str, *, kind: Kind | None = None, doc_id: str | None = None, state: str | None = None
    ) -> None:
        """Delete a kb's points, optionally only of one kind, one document, or one state."""

    def search(self, query: StoreQuery) -> list[StoredHit]:
        """The best ``k`` live points of ``kb``/``kind``; each hit says which retrievers found it."""

    def count(
        self,
        kb: str | None = None,
        *,
        kind: Kind | None = None,
        doc_id: str | None = None,
        state: str | None = None,
    ) -> int:
        """Exact number of points matching every given field."""

    def optimize(self) -> None:
        """Build the search indexes for what was written (HNSW, segment merges, vacuum). Qdrant Edge
        does it only when asked, and until then searches new points by brute force; a Qdrant server
        does it in the background. Cheap when there is nothing to do."""

    def close(self) -> None:
        """Flush and release the store (and its folder lock)."""


def annotate(fused: list[StoredHit], lists: Mapping[str, list[StoredHit]]) -> list[StoredHit]:
    """Attach each retriever's rank and score to the fused hits (the fused query only returns the
    fused score)."""
    positions = {
        name: {hit.id: RetrieverScore(rank, hit.score) for rank, hit in enumerate(hits, 1)}
        for name, hits in lists.items()
    }
    out = []
    for hit in fused:
        found = {name: pos[hit.id] for name, pos in positions.items() if hit.id in pos}
        out.append(StoredHit(hit.id, hit.score, hit.payload, found))
    return out


def settle_ties(fused: list[StoredHit], k: int) -> list[StoredHit]:
    """The best ``k`` of annotated fused hits in a reproducible order. Reciprocal-rank fusion ties
    whenever two hits' ranks are swapped (dense 2nd + sparse 3rd vs dense 3rd + sparse 2nd), and
    the engine returns tied points in no fixed order: ties go to the better dense rank, then the
    better sparse rank, then the point id."""

    def key(hit: StoredHit) -> tuple[float, int, int, str]:
        dense, sparse = hit.retrievers.get("dense"), hit.retrievers.get("sparse")
        never = 1 << 30
        dense_rank, sparse_rank = dense.rank if dense else never, sparse.rank if sparse else never
        return (-round(hit.score, 9), dense_rank, sparse_rank, hit.id)

    return sorted(fused, key=key)[:k]

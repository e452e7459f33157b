"""qdrant-client: a Qdrant server or cluster (``url=``), or local mode in a folder (``path=``).

Local mode is qdrant-client's own pure-Python engine; it stands in for a server in tests
(same client API) but is slow to write (~440 points/s) and filters in Python.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.documents import Chunk, Hit
from retrieval.errors import StoreError, StoreLocked
from retrieval.vectorstores.base import INTEGER_FIELDS, KEYWORD_FIELDS

VECTOR = "dense"


class QdrantClientVectorStore:
    def __init__(
        self,
        collection: str,
        dim: int,
        *,
        url: str | None = None,
        path: Path | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (url is None) == (path is None):
            raise StoreError("give exactly one of url= (a Qdrant server) or path= (local mode)")
        from qdrant_client import QdrantClient, models

        self._m = models
        self._collection = collection
        self._server = url is not None
        self._lock = threading.Lock()
        try:
            if url is not None:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
            else:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # local mode refuses a folder another client holds
            raise StoreLocked(
                f"the Qdrant local folder {path} is open in another process; stop it or use another folder"
            ) from exc
        try:
            self._ensure_collection(dim)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot reach Qdrant at {url or path}: {exc}") from exc

    def _ensure_collection(self, dim: int) -> None:
        m = self._m
        if self._client.collection_exists(self._collection):
            info = self._client.get_collection(self._collection)
            vectors = info.config.params.vectors
            size = vectors[VECTOR].size if isinstance(vectors, dict) and VECTOR in vectors else None
            if size is not None and size != dim:
                raise StoreError(
                    f"collection {self._collection!r} holds {size}-d vectors but the embedder makes "
                    f"{dim}-d ones; use another collection name (RAGNET_COLLECTION)"
                )
            return
        self._client.create_collection(
            self._collection,
            vectors_config={VECTOR: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
        )
        if not self._server:  # local mode has no payload indexes (it filters in Python)
            return
        for name in KEYWORD_FIELDS:
            self._client.create_payload_index(self._collection, name, m.PayloadSchemaType.KEYWORD)
        for name in INTEGER_FIELDS:
            self._client.create_payload_index(self._collection, name, m.PayloadSchemaType.INTEGER)

    def _filter(self, kb: str | None, doc_id: str | None = None, min_position: int | None = None) -> Any:
        m = self._m
        must: list[Any] = []
        if kb is not None:
            must.append(m.FieldCondition(key="kb", match=m.MatchValue(value=kb)))
        if doc_id is not None:
            must.append(m.FieldCondition(key="doc_id", match=m.MatchValue(value=doc_id)))
        if min_position is not None:
            must.append(m.FieldCondition(key="position", range=m.Range(gte=min_position)))
        return m.Filter(must=must) if must else None

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        points = [
            self._m.PointStruct(id=c.point_id, vector={VECTOR: [float(x) for x in v]}, payload=c.payload())
            for c, v in zip(chunks, vectors, strict=True)
        ]
        with self._lock:
            self._client.upsert(self._collection, points=points, wait=True)

    def delete(self, kb: str, doc_id: str | None = None, min_position: int | None = None) -> None:
        selector = self._m.FilterSelector(filter=self._filter(kb, doc_id, min_position))
        with self._lock:
            self._client.delete(self._collection, points_selector=selector, wait=True)

    def search(self, kb: str, vector: Sequence[float], k: int) -> list[Hit]:
        response = self._client.query_points(
            self._collection,
            query=[float(x) for x in vector],
            using=VECTOR,
            query_filter=self._filter(kb),
            limit=k,
            with_payload=True,
        )
        return [Hit.from_payload(str(p.id), p.score, dict(p.payload or {})) for p in response.points]

    def count(self, kb: str | None = None, doc_id: str | None = None) -> int:
        return int(
            self._client.count(self._collection, count_filter=self._filter(kb, doc_id), exact=True).count
        )

    def close(self) -> None:
        self._client.close()

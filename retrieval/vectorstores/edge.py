"""Qdrant Edge: Qdrant's engine in-process, in a data folder (the embedded default)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrieval.documents import Chunk, Hit
from retrieval.errors import StoreError, StoreLocked
from retrieval.vectorstores.base import INTEGER_FIELDS, KEYWORD_FIELDS

VECTOR = "dense"


class EdgeVectorStore:
    def __init__(self, path: Path, dim: int) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self._lock = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(vectors={VECTOR: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)})
        try:
            if (path / "edge_config.json").exists():
                self._shard: Any = qe.EdgeShard.load(str(path))
            else:
                self._shard = qe.EdgeShard.create(str(path), config)
        except Exception as exc:  # the binding raises plain Exception
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise StoreLocked(
                    f"the index in {path} is open in another ragnet process (a running `ragnet serve`?); "
                    "stop it, or point RAGNET_DATA_DIR elsewhere"
                ) from exc
            raise StoreError(f"cannot open Qdrant Edge shard in {path}: {exc}") from exc
        self._check_dim(dim, path)
        schema = self._shard.info().payload_schema
        for name in KEYWORD_FIELDS:
            if name not in schema:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
        for name in INTEGER_FIELDS:
            if name not in schema:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))

    def _check_dim(self, dim: int, path: Path) -> None:
        import json

        saved = json.loads((path / "edge_config.json").read_text())
        size = saved.get("vectors", {}).get(VECTOR, {}).get("size")
        if size is not None and int(size) != dim:
            raise StoreError(
                f"the index in {path} holds {size}-d vectors but the embedder makes {dim}-d ones; "
                "use the embedder it was built with, or a new RAGNET_DATA_DIR"
            )

    def _filter(self, kb: str | None, doc_id: str | None = None, min_position: int | None = None) -> Any:
        qe = self._qe
        must: list[Any] = []
        if kb is not None:
            must.append(qe.FieldCondition(key="kb", match=qe.MatchValue(kb)))
        if doc_id is not None:
            must.append(qe.FieldCondition(key="doc_id", match=qe.MatchValue(doc_id)))
        if min_position is not None:
            must.append(qe.FieldCondition(key="position", range=qe.RangeFloat(gte=float(min_position))))
        return qe.Filter(must=must) if must else None

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        qe = self._qe
        points = [
            qe.Point(c.point_id, {VECTOR: [float(x) for x in v]}, c.payload())
            for c, v in zip(chunks, vectors, strict=True)
        ]
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def delete(self, kb: str, doc_id: str | None = None, min_position: int | None = None) -> None:
        with self._lock:
            self._shard.update(
                self._qe.UpdateOperation.delete_points_by_filter(self._filter(kb, doc_id, min_position))
            )

    def search(self, kb: str, vector: Sequence[float], k: int) -> list[Hit]:
        qe = self._qe
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest([float(x) for x in vector], using=VECTOR),
            filter=self._filter(kb),
            with_payload=True,
        )
        points = self._shard.query(request)
        return [Hit.from_payload(str(p.id), p.score, dict(p.payload or {})) for p in points]

    def count(self, kb: str | None = None, doc_id: str | None = None) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True, filter=self._filter(kb, doc_id))))

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None

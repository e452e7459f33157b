"""qdrant-client: a Qdrant server or cluster (``url=``), or local mode in a folder (``path=``).

Behaves like :class:`~retrieval.vectorstores.edge.EdgeVectorStore` (the conformance suite runs
both): a named dense vector ``dense`` (cosine) and a sparse vector ``sparse`` with Qdrant's IDF
modifier; every search filters on kb, kind and ``state=live``; hybrid search is Qdrant's
reciprocal-rank fusion (k = ``RRF_K``) over a dense and a sparse prefetch, annotated with each
retriever's own rank and score.

Local mode is qdrant-client's own pure-Python engine; it stands in for a server in tests (same
client API) but is slow to write and filters in Python, so it gets no payload indexes (it has no
use for them). A server gets keyword indexes on kb/kind/doc_id/version/state and an integer one
on position.

Collections from the previous release (dense vector only) are migrated on open: the sparse
vector is added with ``create_vector_name`` (local mode, and servers with that endpoint). A server
without it raises :class:`StoreError` asking for the collection to be re-created. Points
written by the previous release carry no ``kind``/``state`` and stay invisible to search until
their documents are ingested again.

Publishing is two writes (mark the staged version live, delete the other versions). This
process's readers never see the step in between (a lock orders them); readers in *other*
processes of a Qdrant server can, for a moment, see both versions live: a server has no
multi-operation transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrieval.errors import StoreError, StoreLocked
from retrieval.vectorstores.base import (
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    LIVE,
    RRF_K,
    SPARSE,
    STAGED,
    TIE_SLACK,
    Filters,
    IndexPoint,
    Kind,
    StoredHit,
    StoreQuery,
    annotate,
    settle_ties,
)

#: Points per upsert request (keeps a server request well under its 32 MiB body limit).
UPSERT_BATCH = 256


class _ReadWriteLock:
    """Many searches at once, writes (and the two steps of a publish) alone.

    Fair to writers: writers are served in arrival order (tickets), and once one waits, new readers
    wait behind it, so a steady stream of searches cannot starve an ingestion (it did: the releasing
    thread re-acquired before the waiting writer woke).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._next_ticket = 0  # writers that asked
        self._serving = 0  # writers that were let in

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._next_ticket != self._serving:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._writer or self._readers or ticket != self._serving:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._serving += 1
                self._cond.notify_all()


class QdrantClientVectorStore:
    def __init__(
        self,
        collection: str,
        dim: int,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (url is None) == (path is None):
            raise StoreError("give exactly one of url= (a Qdrant server) or path= (local mode)")
        from qdrant_client import QdrantClient, models

        self._m = models
        self._collection = collection
        self._server = url is not None
        self._lock = _ReadWriteLock()
        self._client: Any = None
        where = url or str(path)
        try:
            if url is not None:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
            else:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                # writes are serialised by our lock, so the SQLite file may be written from any thread
                self._client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        except RuntimeError as exc:  # local mode: portalocker refuses a folder another client holds
            if "already accessed" in str(exc):
                raise StoreLocked(
                    f"the Qdrant local folder {path} is open in another ragnet process (a running "
                    "`ragnet serve`?); stop it, or point RAGNET_DATA_DIR elsewhere"
                ) from exc
            raise StoreError(f"cannot open the Qdrant local folder {path}: {exc}") from exc
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant at {where}: {exc}") from exc
        try:
            self._ensure_collection(dim)
        except StoreError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise StoreError(f"cannot reach Qdrant at {where}: {exc}") from exc

    # --- schema ------------------------------------------------------------------------------
    def _ensure_collection(self, dim: int) -> None:
        m = self._m
        name = self._collection
        if not self._client.collection_exists(name):
            self._client.create_collection(
                name,
                vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            )
            self._ensure_indexes({})
            return
        params = self._client.get_collection(name).config.params
        vectors = params.vectors
        if not isinstance(vectors, dict) or DENSE not in vectors:
            raise StoreError(
                f"collection {name!r} has no {DENSE!r} vector (it was not made by ragnet); "
                "delete it or use another collection name (RAGNET_COLLECTION)"
            )
        size = vectors[DENSE].size
        if size != dim:
            raise StoreError(
                f"collection {name!r} holds {size}-d vectors but the embedder makes {dim}-d ones; "
                "use the embedder it was built with, or another collection name (RAGNET_COLLECTION)"
            )
        sparse = (params.sparse_vectors or {}).get(SPARSE)
        if sparse is None:  # a collection from before sparse vectors
            self._add_sparse_vector()
        elif sparse.modifier != m.Modifier.IDF:
            self._client.update_collection(
                name, sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)}
            )
        info = self._client.get_collection(name)
        self._ensure_indexes(info.payload_schema or {})

    def _add_sparse_vector(self) -> None:
        m = self._m
        config = m.SparseVectorNameConfig(sparse=m.SparseVectorConfig(modifier=m.Modifier.IDF))
        try:
            self._client.create_vector_name(self._collection, SPARSE, config)
        except Exception as exc:
            raise StoreError(
                f"collection {self._collection!r} predates sparse (keyword) vectors and this Qdrant "
                f"cannot add one ({exc}); re-create it: delete the collection (or use another "
                "RAGNET_COLLECTION) and ingest the documents again"
            ) from exc

    def _ensure_indexes(self, schema: dict[str, Any]) -> None:
        if not self._server:  # local mode filters in Python and only warns about indexes
            return
        m = self._m
        for name in KEYWORD_FIELDS:
            if name not in schema:
                self._client.create_payload_index(self._collection, name, m.PayloadSchemaType.KEYWORD)
        for name in INTEGER_FIELDS:
            if name not in schema:
                self._client.create_payload_index(self._collection, name, m.PayloadSchemaType.INTEGER)

    # --- filters ---------------------------------------------------------------------------
    def _match(self, key: str, value: Any) -> Any:
        m = self._m
        if not isinstance(value, (list, tuple)):
            return m.FieldCondition(key=key, match=m.MatchValue(value=value))
        values = list(value)
        # MatchAny takes only all-string or all-integer lists; anything else is spelled as "any of"
        if all(isinstance(v, str) for v in values) or all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            return m.FieldCondition(key=key, match=m.MatchAny(any=values))
        return m.Filter(should=[m.FieldCondition(key=key, match=m.MatchValue(value=v)) for v in values])

    def _filter(
        self, fields: dict[str, Any], meta: Filters | None = None, not_version: str | None = None
    ) -> Any:
        m = self._m
        must = [self._match(k, v) for k, v in fields.items() if v is not None]
        for key, value in (meta or {}).items():
            must.append(self._match(f"meta.{key}", value))
        must_not = [self._match("version", not_version)] if not_version is not None else None
        return m.Filter(must=must or None, must_not=must_not) if must or must_not else None

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        m = self._m
        batch = [
            m.PointStruct(
                id=p.id,
                vector={
                    DENSE: [float(x) for x in p.dense],
                    SPARSE: m.SparseVector(
                        indices=[int(i) for i in p.sparse.indices], values=[float(v) for v in p.sparse.values]
                    ),
                },
                payload=p.payload,
            )
            for p in points
        ]
        with self._lock.write():
            for start in range(0, len(batch), UPSERT_BATCH):
                self._client.upsert(self._collection, points=batch[start : start + UPSERT_BATCH], wait=True)

    def publish(self, kb: str, kind: Kind, doc_id: str, version: str) -> None:
        m = self._m
        doc = {"kb": kb, "kind": kind, "doc_id": doc_id}
        with self._lock.write():
            self._client.set_payload(
                self._collection,
                payload={"state": LIVE},
                points=m.FilterSelector(filter=self._filter({**doc, "version": version, "state": STAGED})),
                wait=True,
            )
            self._client.delete(
                self._collection,
                points_selector=m.FilterSelector(filter=self._filter(doc, not_version=version)),
                wait=True,
            )

    def delete(
        self, kb: str, *, kind: Kind | None = None, doc_id: str | None = None, state: str | None = None
    ) -> None:
        flt = self._filter({"kb": kb, "kind": kind, "doc_id": doc_id, "state": state})
        with self._lock.write():
            self._client.delete(
                self._collection, points_selector=self._m.FilterSelector(filter=flt), wait=True
            )

    # --- reads -------------------------------------------------------------------------------
    def search(self, query: StoreQuery) -> list[StoredHit]:
        m = self._m
        flt = self._filter({"kb": query.kb, "kind": query.kind, "state": LIVE}, query.filters)
        dense = m.NearestQuery(nearest=[float(x) for x in query.dense]) if query.dense else None
        sparse = None
        if query.sparse is not None and query.sparse.indices:
            vec = m.SparseVector(
                indices=[int(i) for i in query.sparse.indices], values=list(query.sparse.values)
            )
            sparse = m.NearestQuery(nearest=vec)
        if query.mode == "dense" and dense is None:
            raise StoreError("a dense search needs a dense query vector")

        def plain(q: Any, using: str, limit: int) -> Any:
            return m.QueryRequest(query=q, using=using, filter=flt, limit=limit, with_payload=True)

        if query.mode == "dense":
            return _tag(self._run([plain(dense, DENSE, query.k)])[0], "dense")
        if query.mode == "sparse" or dense is None:
            if sparse is None:  # no query term is in the vocabulary: nothing can match
                return []
            return _tag(self._run([plain(sparse, SPARSE, query.k)])[0], "sparse")
        if sparse is None:
            return _tag(self._run([plain(dense, DENSE, query.k)])[0], "dense")
        n = query.prefetch
        fused = m.QueryRequest(
            query=m.RrfQuery(rrf=m.Rrf(k=RRF_K)),
            prefetch=[
                m.Prefetch(query=dense, using=DENSE, filter=flt, limit=n),
                m.Prefetch(query=sparse, using=SPARSE, filter=flt, limit=n),
            ],
            filter=flt,
            limit=query.k + TIE_SLACK,
            with_payload=True,
        )
        fused_hits, dense_hits, sparse_hits = self._run(
            [fused, plain(dense, DENSE, n), plain(sparse, SPARSE, n)]
        )
        return settle_ties(annotate(fused_hits, {"dense": dense_hits, "sparse": sparse_hits}), query.k)

    def _run(self, requests: list[Any]) -> list[list[StoredHit]]:
        with self._reading():
            responses = self._client.query_batch_points(self._collection, requests=requests)
        return [
            [StoredHit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses
        ]

    def count(
        self,
        kb: str | None = None,
        *,
        kind: Kind | None = None,
        doc_id: str | None = None,
        state: str | None = None,
    ) -> int:
        flt = self._filter({"kb": kb, "kind": kind, "doc_id": doc_id, "state": state})
        with self._reading():
            return int(self._client.count(self._collection, count_filter=flt, exact=True).count)

    def _reading(self) -> Any:
        # local mode is plain Python objects: its reads are kept apart from each other too
        return self._lock.read() if self._server else self._lock.write()

    def optimize(self) -> None:
        """Nothing to do: a Qdrant server optimises in the background; local mode has no HNSW."""

    def close(self) -> None:
        with self._lock.write():
            if self._client is not None:
                self._client.close()
                self._client = None


def _tag(hits: list[StoredHit], name: str) -> list[StoredHit]:
    return annotate(hits, {name: hits})

"""One behavioural suite, run over every vector-store backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval.documents import Chunk
from retrieval.errors import StoreError, StoreLocked
from retrieval.vectorstores import EdgeVectorStore, QdrantClientVectorStore, VectorStore

DIM = 8


def _open(kind: str, path: Path, dim: int = DIM) -> VectorStore:
    if kind == "edge":
        return EdgeVectorStore(path / "edge", dim)
    return QdrantClientVectorStore("chunks", dim, path=path / "local")


@pytest.fixture(params=["edge", "qdrant-local"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[VectorStore]:
    s = _open(kind, tmp_path)
    yield s
    s.close()


def _chunks(kb: str, doc: str, n: int) -> list[Chunk]:
    return [
        Chunk(kb=kb, doc_id=doc, position=i, title=f"T {doc}", text=f"{doc} chunk {i}", source="s")
        for i in range(n)
    ]


def _vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def test_upsert_search_filters_by_kb(store: VectorStore) -> None:
    a, b = _chunks("a", "d1", 3), _chunks("b", "d2", 3)
    store.upsert(a, [_vec(i) for i in range(3)])
    store.upsert(b, [_vec(i) for i in range(3)])
    hits = store.search("a", _vec(1), 10)
    assert {h.doc_id for h in hits} == {"d1"}
    assert hits[0].position == 1 and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].title == "T d1" and hits[0].text == "d1 chunk 1"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.search("nope", _vec(1), 10) == []


def test_upsert_is_idempotent(store: VectorStore) -> None:
    chunks = _chunks("a", "d1", 4)
    store.upsert(chunks, [_vec(i) for i in range(4)])
    store.upsert(chunks, [_vec(i + 10) for i in range(4)])
    assert store.count("a") == 4
    assert store.search("a", _vec(12), 1)[0].position == 2  # the second write won


def test_delete_document_tail_and_kb(store: VectorStore) -> None:
    store.upsert(_chunks("a", "d1", 5), [_vec(i) for i in range(5)])
    store.upsert(_chunks("a", "d2", 2), [_vec(i) for i in range(2)])
    store.delete("a", doc_id="d1", min_position=3)
    assert store.count("a", "d1") == 3
    store.delete("a", doc_id="d2")
    assert store.count("a", "d2") == 0
    store.delete("a")
    assert store.count("a") == 0
    assert store.count() == 0


def test_k_limits_results(store: VectorStore) -> None:
    store.upsert(_chunks("a", "d", 20), [_vec(i) for i in range(20)])
    assert len(store.search("a", _vec(0), 7)) == 7


def test_data_survives_reopen(kind: str, tmp_path: Path) -> None:
    s = _open(kind, tmp_path)
    s.upsert(_chunks("a", "d", 3), [_vec(i) for i in range(3)])
    s.close()
    s = _open(kind, tmp_path)
    try:
        assert s.count("a") == 3
    finally:
        s.close()


def test_wrong_dimension_is_refused(kind: str, tmp_path: Path) -> None:
    _open(kind, tmp_path).close()
    with pytest.raises(StoreError, match="-d vectors"):
        _open(kind, tmp_path, dim=DIM + 1)


def test_second_process_is_refused_with_a_clear_error(kind: str, tmp_path: Path) -> None:
    first = _open(kind, tmp_path)
    try:
        with pytest.raises(StoreLocked, match="another"):
            _open(kind, tmp_path)
    finally:
        first.close()

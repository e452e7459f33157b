"""One behavioural suite, run over every vector-store backend (Qdrant Edge and qdrant-client local mode).

Dense vectors are tiny hand-made 4-d ones; sparse vectors are the real BM25 ones the indexer makes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe

from retrieval.errors import StoreError, StoreLocked
from retrieval.vectorstores import EdgeVectorStore, QdrantClientVectorStore, VectorStore
from retrieval.vectorstores.base import (
    DENSE,
    FAQ,
    LIVE,
    MODES,
    STAGED,
    IndexPoint,
    Kind,
    Mode,
    SparseVector,
    StoredHit,
    StoreQuery,
)

DIM = 4
BACKENDS = ["edge", "qdrant-local"]
_BM25 = qe.Bm25(qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual, language="english"))


def _open(backend: str, root: Path, dim: int = DIM) -> VectorStore:
    if backend == "edge":
        return EdgeVectorStore(root / "edge", dim)
    return QdrantClientVectorStore("t", dim, path=root / "local")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[VectorStore]:
    s = _open(backend, tmp_path)
    yield s
    s.close()


# --- helpers -----------------------------------------------------------------------------------
def _sparse(vec: Any) -> SparseVector:
    return SparseVector(tuple(int(i) for i in vec.indices), tuple(float(v) for v in vec.values))


def doc_sparse(text: str) -> SparseVector:
    return _sparse(_BM25.embed_document(text))


def query_sparse(text: str) -> SparseVector:
    return _sparse(_BM25.embed_query(text))


def point(
    doc: str,
    text: str,
    dense: Sequence[float],
    *,
    kb: str = "kb",
    kind: Kind = "chunk",
    version: str = "v1",
    position: int = 0,
    state: str = STAGED,
    meta: dict[str, Any] | None = None,
) -> IndexPoint:
    pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kb}/{kind}/{doc}/{version}/{position}"))
    payload = {
        "kb": kb,
        "kind": kind,
        "doc_id": doc,
        "version": version,
        "state": state,
        "position": position,
        "text": text,
        "meta": dict(meta or {}),
    }
    return IndexPoint(pid, list(dense), doc_sparse(text), payload)


def add_live(store: VectorStore, *points: IndexPoint) -> None:
    """Write points staged and publish their versions, as the indexer does."""
    store.upsert(list(points))
    for key in {
        (p.payload["kb"], p.payload["kind"], p.payload["doc_id"], p.payload["version"]) for p in points
    }:
        store.publish(*key)


def search(
    store: VectorStore,
    text: str | None = None,
    dense: Sequence[float] | None = None,
    *,
    mode: Mode = "hybrid",
    kb: str = "kb",
    k: int = 10,
    **kw: Any,
) -> list[StoredHit]:
    sparse = query_sparse(text) if text is not None else None
    return store.search(StoreQuery(kb=kb, k=k, mode=mode, dense=dense, sparse=sparse, **kw))


def texts(hits: list[StoredHit]) -> list[str]:
    return [h.payload["text"] for h in hits]


E0, E1, E2, E3 = [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]


# --- versions: staged -> live --------------------------------------------------------------------
def test_staged_points_are_invisible_until_published(store: VectorStore) -> None:
    store.upsert([point("d", "solar power", E0, position=i) for i in range(3)])
    assert store.count("kb", state=STAGED) == 3
    assert store.count("kb", state=LIVE) == 0
    for mode in MODES:
        assert search(store, "solar", E0, mode=mode) == []
    store.publish("kb", "chunk", "d", "v1")
    assert store.count("kb", state=LIVE) == 3 and store.count("kb", state=STAGED) == 0
    for mode in MODES:
        assert len(search(store, "solar", E0, mode=mode)) == 3


def test_publish_replaces_the_old_version_at_once(store: VectorStore) -> None:
    old = [point("d", f"old text {i}", E0, position=i) for i in range(3)]
    new = [point("d", f"new text {i}", E0, version="v2", position=i) for i in range(2)]
    others = [
        point("other", "old text elsewhere", E1),  # another document of the kb
        point("d", "old text in another kb", E0, kb="kb2"),  # the same doc_id in another kb
        point("d", "old text as a faq", E0, kind=FAQ),  # the same doc_id as a FAQ
    ]
    add_live(store, *old, *others)
    store.upsert(new)
    # v2 is written beside v1 but not visible yet
    assert store.count("kb", kind="chunk", doc_id="d") == 5
    assert sorted(texts(search(store, "text", E0))) == [
        "old text 0",
        "old text 1",
        "old text 2",
        "old text elsewhere",
    ]

    store.publish("kb", "chunk", "d", "v2")
    assert store.count("kb", kind="chunk", doc_id="d") == 2
    assert store.count("kb", kind="chunk", doc_id="d", state=LIVE) == 2
    for mode in MODES:
        hits = search(store, "text", E0, mode=mode)
        assert sorted(texts(hits)) == ["new text 0", "new text 1", "old text elsewhere"], mode
        assert {h.payload["version"] for h in hits if h.payload["doc_id"] == "d"} == {"v2"}
    assert {h.id for h in search(store, "text", E0)}.isdisjoint(p.id for p in old)
    # nothing outside (kb, kind, doc_id) was touched
    assert texts(search(store, "old text", E0, kb="kb2")) == ["old text in another kb"]
    assert texts(search(store, "old text", E0, kind=FAQ)) == ["old text as a faq"]
    assert store.count() == 5


def test_readers_never_see_a_publish_half_done(store: VectorStore) -> None:
    add_live(store, *[point("d", "solar v0", E0, version="v0", position=i) for i in range(3)])
    seen: list[set[str]] = []
    done = threading.Event()

    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                hits = search(store, "solar", E0, k=10)
                seen.append({h.payload["version"] for h in hits} | {f"n={len(hits)}"})
        except BaseException as exc:  # surfaced below: a thread's exception would not fail the test
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 8):
            store.upsert([point("d", f"solar v{n}", E0, version=f"v{n}", position=i) for i in range(3)])
            store.publish("kb", "chunk", "d", f"v{n}")
    finally:
        done.set()
        thread.join()
    assert not errors
    assert seen and all(len(s) == 2 and "n=3" in s for s in seen), [
        s for s in seen if len(s) != 2 or "n=3" not in s
    ]
    assert store.count() == 3


def test_publish_is_idempotent(store: VectorStore) -> None:
    add_live(store, point("d", "solar power", E0))
    store.publish("kb", "chunk", "d", "v1")
    assert store.count("kb", state=LIVE) == 1


def test_optimize_keeps_every_live_point_searchable(store: VectorStore) -> None:
    """Ingestion optimises after it writes: the index build must not change what search finds."""
    add_live(store, point("a", "solar power", E0), point("b", "wind power", E1))
    before = {mode: texts(search(store, "solar", E0, mode=mode)) for mode in MODES}
    store.optimize()
    store.optimize()  # nothing left to do: still fine
    assert {mode: texts(search(store, "solar", E0, mode=mode)) for mode in MODES} == before
    assert store.count("kb", state=LIVE) == 2


# --- retrievers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
    """A read-only corpus, built once per backend."""
    store = _open(str(request.param), tmp_path_factory.mktemp("corpus"))
    add_live(
        store,
        point("semantic", "photovoltaic cells turn light into electricity", [1.0, 0.05, 0, 0]),
        point("both", "zebra crossing rules for pedestrians", [0.9, 0.3, 0, 0]),
        point("keyword", "zebra zebra herd on the savanna", [0.01, 0, 0.2, 1.0]),
        point("neither", "a recipe for apple pie", [0.05, 0.2, 1.0, 0]),
    )
    yield store
    store.close()


def _by_doc(hits: list[StoredHit]) -> dict[str, StoredHit]:
    return {h.payload["doc_id"]: h for h in hits}


def test_dense_mode_ranks_by_the_dense_vector(corpus: VectorStore) -> None:
    hits = search(corpus, "zebra", E0, mode="dense")
    assert [h.payload["doc_id"] for h in hits] == ["semantic", "both", "neither", "keyword"]
    assert hits[0].score == pytest.approx(0.99875, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [(set(h.retrievers), h.retrievers["dense"].rank) for h in hits] == [
        ({"dense"}, i) for i in (1, 2, 3, 4)
    ]
    assert len(search(corpus, "zebra", E0, mode="dense", k=2)) == 2


def test_sparse_mode_finds_only_keyword_matches(corpus: VectorStore) -> None:
    hits = search(corpus, "zebra", E0, mode="sparse")
    assert [h.payload["doc_id"] for h in hits] == ["keyword", "both"]  # more zebras rank first
    assert hits[0].score > hits[1].score > 0
    assert [set(h.retrievers) for h in hits] == [{"sparse"}, {"sparse"}]
    assert hits[0].retrievers["sparse"].score == hits[0].score
    # a sparse search needs no dense vector
    assert texts(search(corpus, "savanna", None, mode="sparse")) == ["zebra zebra herd on the savanna"]
    assert search(corpus, "unicorn", E0, mode="sparse") == []


def test_hybrid_fuses_both_retrievers_and_says_who_found_what(corpus: VectorStore) -> None:
    # two candidates per retriever: dense brings semantic+both, sparse brings keyword+both
    hits = search(corpus, "zebra", E0, mode="hybrid", k=3, candidates=2)
    found = _by_doc(hits)
    assert hits[0].payload["doc_id"] == "both"  # found by both retrievers: fused first
    assert set(found) == {"both", "semantic", "keyword"}
    assert set(found["semantic"].retrievers) == {"dense"}
    assert set(found["keyword"].retrievers) == {"sparse"}
    assert found["both"].retrievers["dense"].rank == 2 and found["both"].retrievers["sparse"].rank == 2
    assert found["semantic"].retrievers["dense"].rank == 1 and found["keyword"].retrievers["sparse"].rank == 1
    # reciprocal-rank fusion with k=60 over 0-based ranks: 1/(60+1) + 1/(60+1)
    assert hits[0].score == pytest.approx(2 / 61, rel=1e-4)
    assert found["semantic"].score == pytest.approx(1 / 60, rel=1e-4)


def test_hybrid_with_default_candidates_keeps_every_dense_hit(corpus: VectorStore) -> None:
    hits = search(corpus, "zebra", E0, mode="hybrid")
    # both: dense 2 + sparse 2 = 2/61 beats keyword: dense 4 + sparse 1 = 1/63 + 1/60
    assert [h.payload["doc_id"] for h in hits] == ["both", "keyword", "semantic", "neither"]
    assert set(_by_doc(hits)["neither"].retrievers) == {"dense"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_with_an_empty_sparse_query_falls_back_to_dense(corpus: VectorStore) -> None:
    dense = search(corpus, None, E0, mode="dense")
    for text in ("the", "", None):  # a stop word only, nothing, no sparse vector at all
        hits = search(corpus, text, E0, mode="hybrid")
        assert hits == dense, text
        assert all(set(h.retrievers) == {"dense"} for h in hits)


def test_sparse_mode_with_an_empty_query_finds_nothing(corpus: VectorStore) -> None:
    assert search(corpus, "the", E0, mode="sparse") == []
    assert search(corpus, None, E0, mode="sparse") == []


def test_dense_mode_needs_a_dense_vector(corpus: VectorStore) -> None:
    with pytest.raises(StoreError, match="dense query vector"):
        search(corpus, "zebra", None, mode="dense")


def test_chinese_keywords_match(store: VectorStore) -> None:
    add_live(
        store,
        point("bj", "北京是中国的首都", E0),
        point("sh", "上海是一个大城市", E1),
        point("en", "the capital of China is Beijing", E2),
    )
    hits = search(store, "中国首都", E3, mode="sparse")
    assert texts(hits) == ["北京是中国的首都"]
    assert search(store, "中国首都", E3, mode="hybrid")[0].payload["doc_id"] == "bj"


# --- filters and separation ------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def with_meta(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorStore]:
    """A read-only kb with metadata, built once per backend."""
    store = _open(str(request.param), tmp_path_factory.mktemp("meta"))
    add_live(
        store,
        point(
            "pro", "pricing plans", E0, meta={"product": "pro", "year": 2024, "tags": ["billing", "sales"]}
        ),
        point("team", "pricing plans", E1, meta={"product": "team", "year": 2023, "tags": ["billing"]}),
        point("free", "pricing plans", E2, meta={"product": "free", "year": 2024}),
        point("none", "pricing plans", E3),
    )
    yield store
    store.close()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"pro", "team", "free", "none"}),
        ({"product": "pro"}, {"pro"}),
        ({"product": ["pro", "team"]}, {"pro", "team"}),
        ({"year": 2024}, {"pro", "free"}),
        ({"year": [2023, 2022]}, {"team"}),
        ({"tags": "sales"}, {"pro"}),  # a list-valued field matches if any element does
        ({"tags": ["sales", "billing"]}, {"pro", "team"}),
        ({"product": ["pro", "free"], "year": 2024}, {"pro", "free"}),  # several filters: all must hold
        ({"product": "pro", "year": 2023}, set()),
        ({"product": "enterprise"}, set()),
        ({"missing": "x"}, set()),
    ],
)
def test_metadata_filters(with_meta: VectorStore, filters: dict[str, Any], expected: set[str]) -> None:
    for mode in MODES:
        hits = search(with_meta, "pricing", [0.5, 0.5, 0.5, 0.5], mode=mode, filters=filters)
        assert {h.payload["doc_id"] for h in hits} == expected, mode


def test_boolean_metadata_filter(backend: str, store: VectorStore) -> None:
    if backend == "edge":
        # qdrant-edge-py 0.9.0 reads MatchValue(True) as MatchValue(1), which never matches a stored
        # true: the Edge store refuses boolean filters with a clear error instead of finding nothing.
        with pytest.raises(StoreError, match="true/false"):
            search(store, "faq", E0, mode="dense", filters={"public": True})
        return
    add_live(
        store,
        point("yes", "faq entry", E0, meta={"public": True}),
        point("no", "faq entry", E1, meta={"public": False}),
    )
    assert texts(search(store, "faq", E0, mode="dense", filters={"public": True})) == ["faq entry"]
    assert {h.payload["doc_id"] for h in search(store, "faq", E0, filters={"public": [True, False]})} == {
        "yes",
        "no",
    }


def test_kinds_are_kept_apart(store: VectorStore) -> None:
    add_live(
        store,
        point("d", "how do I reset my password", E0, kind="chunk"),
        point("d", "how do I reset my password", E0, kind=FAQ),
        point("f", "where is the invoice", E1, kind=FAQ),
    )
    for mode in MODES:
        assert {
            h.payload["kind"] for h in search(store, "password invoice", E0, mode=mode, kind="chunk")
        } == {"chunk"}
        faq = search(store, "password invoice", E0, mode=mode, kind=FAQ)
        assert {h.payload["kind"] for h in faq} == {FAQ} and len(faq) == 2
    assert store.count("kb", kind="chunk") == 1 and store.count("kb", kind=FAQ) == 2
    store.publish("kb", FAQ, "d", "v2")  # a FAQ version swap leaves the chunk of the same doc_id alone
    assert store.count("kb", kind="chunk", doc_id="d") == 1 and store.count("kb", kind=FAQ, doc_id="d") == 0


def test_knowledge_bases_are_kept_apart(store: VectorStore) -> None:
    add_live(store, point("d", "solar power", E0, kb="a"), point("d", "solar power", E0, kb="b"))
    for mode in MODES:
        assert [h.payload["kb"] for h in search(store, "solar", E0, mode=mode, kb="a")] == ["a"]
        assert search(store, "solar", E0, mode=mode, kb="nope") == []
    assert store.count("a") == 1 and store.count() == 2


def test_delete_by_kb_doc_kind_and_state(store: VectorStore) -> None:
    add_live(
        store,
        *[point("d1", "alpha", E0, position=i) for i in range(3)],
        point("d2", "beta", E1),
        point("q1", "gamma", E2, kind=FAQ),
        point("d1", "alpha", E0, kb="other"),
    )
    store.upsert([point("d1", "alpha", E0, version="v2", position=i) for i in range(2)])  # staged
    assert store.count("kb") == 7

    store.delete("kb", state=STAGED)
    assert store.count("kb") == 5 and store.count("kb", state=STAGED) == 0
    store.delete("kb", doc_id="d1")
    assert store.count("kb", doc_id="d1") == 0 and store.count("kb") == 2
    store.delete("kb", kind=FAQ)
    assert store.count("kb", kind=FAQ) == 0 and store.count("kb", kind="chunk") == 1
    store.delete("kb")
    assert store.count("kb") == 0
    assert store.count("other") == 1 and store.count() == 1


def test_upsert_is_idempotent_and_the_last_write_wins(store: VectorStore) -> None:
    first = [point("d", f"chunk {i}", E0, position=i) for i in range(4)]
    store.upsert(first)
    store.upsert(first)
    assert store.count() == 4
    store.upsert([point("d", "rewritten chunk", E1, position=0)])
    store.publish("kb", "chunk", "d", "v1")
    assert store.count() == 4
    assert search(store, None, E1, mode="dense", k=1)[0].payload["text"] == "rewritten chunk"
    store.upsert([])  # nothing to write is fine


# --- lifecycle ---------------------------------------------------------------------------------------
def test_everything_survives_reopening(backend: str, tmp_path: Path) -> None:
    s = _open(backend, tmp_path)
    add_live(s, point("d", "zebra crossing", E0), point("e", "apple pie", E1))
    s.upsert([point("d", "zebra crossing v2", E0, version="v2")])
    before = {m: search(s, "zebra", E0, mode=m) for m in MODES}
    s.close()
    s = _open(backend, tmp_path)
    try:
        assert s.count(state=LIVE) == 2 and s.count(state=STAGED) == 1
        assert {m: search(s, "zebra", E0, mode=m) for m in MODES} == before
        assert texts(before["sparse"]) == ["zebra crossing"]
    finally:
        s.close()


def test_wrong_dimension_is_refused(backend: str, tmp_path: Path) -> None:
    _open(backend, tmp_path).close()
    with pytest.raises(StoreError, match="4-d vectors but the embedder makes 5-d"):
        _open(backend, tmp_path, dim=DIM + 1)


def test_a_second_open_of_the_folder_is_refused(backend: str, tmp_path: Path) -> None:
    first = _open(backend, tmp_path)
    try:
        with pytest.raises(StoreLocked, match="another"):
            _open(backend, tmp_path)
    finally:
        first.close()
    _open(backend, tmp_path).close()  # closing released the lock


def test_an_index_from_before_sparse_vectors_is_upgraded(backend: str, tmp_path: Path) -> None:
    if backend == "edge":
        config = qe.EdgeConfig(vectors={DENSE: qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
        path = tmp_path / "edge"
        path.mkdir()
        shard = qe.EdgeShard.create(str(path), config)
        shard.close()
    else:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(tmp_path / "local"))
        client.create_collection(
            "t", vectors_config={DENSE: models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
        )
        client.close()
    s = _open(backend, tmp_path)
    try:
        add_live(s, point("d", "zebra crossing", E0))
        assert texts(search(s, "zebra", E1, mode="sparse")) == ["zebra crossing"]
    finally:
        s.close()


def test_both_backends_give_the_same_answers(tmp_path: Path) -> None:
    stores = [_open(b, tmp_path) for b in BACKENDS]
    words = ["solar", "zebra", "pie", "river", "engine", "cloud"]
    points = [
        point(
            f"d{i}",
            f"{words[i % 6]} {words[(i * 5 + 1) % 6]} " + "filler " * i,
            [(i % 4) / 3 + 0.1, (i * 3 % 7) / 7, (i % 3) / 3, (i % 5) / 5],
            position=i,
        )
        for i in range(14)
    ]
    try:
        for s in stores:
            add_live(s, *points)
        for mode in MODES:
            for text in ("zebra solar", "pie", "cloud engine river"):
                edge, local = (
                    search(s, text, [0.2, 0.9, 0.1, 0.3], mode=mode, k=6, candidates=8) for s in stores
                )
                # same hits, scores and retriever ranks; hits of equal fused score (the two rank-1
                # hits of the two retrievers) may come in either order
                assert [h.score for h in edge] == pytest.approx([h.score for h in local], rel=1e-4)
                assert _summary(edge) == _summary(local), (mode, text)
    finally:
        for s in stores:
            s.close()


def _summary(hits: list[StoredHit]) -> dict[str, Any]:
    return {
        h.id: (round(h.score, 5), {n: r.rank for n, r in h.retrievers.items()}, h.payload["doc_id"])
        for h in hits
    }


@pytest.mark.parametrize("order", ["a-first", "b-first"])
def test_hybrid_ties_are_broken_the_same_way_every_time(backend: str, tmp_path: Path, order: str) -> None:
    # a: dense 1st + sparse 2nd; b: dense 2nd + sparse 1st -> the same fused score, a tie that the
    # engine returns in no fixed order; ours goes to the better dense rank, also at the k-th place
    a = point("a", "zebra crossing rules for pedestrians in the city", [1.0, 0.1, 0, 0])
    b = point("b", "zebra zebra herd", [0.8, 0.6, 0, 0])
    filler = [point(f"f{i}", f"apple pie recipe number {i}", [0.1, 0, 1.0, 0.1 * i]) for i in range(6)]
    s = _open(backend, tmp_path)
    try:
        add_live(s, *((a, b) if order == "a-first" else (b, a)), *filler)
        hits = search(s, "zebra", E0, mode="hybrid", k=3)
        assert [h.payload["doc_id"] for h in hits[:2]] == ["a", "b"]
        assert hits[0].score == pytest.approx(hits[1].score, abs=1e-9)
        assert hits[0].retrievers["dense"].rank == 1 and hits[1].retrievers["sparse"].rank == 1
        assert [h.payload["doc_id"] for h in search(s, "zebra", E0, mode="hybrid", k=1)] == ["a"]
    finally:
        s.close()

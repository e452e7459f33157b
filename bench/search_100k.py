"""Search latency at 100k chunks on Qdrant Edge: dense, sparse and hybrid, with the query embedding.

Embedding 100k real chunks on a 2-core CPU takes over an hour, so the index is built from the
public sets' real passages (embedded once with the default embedder, ~5k of them) plus jittered
copies up to N points: each copy's dense vector is the passage's plus Gaussian noise
(re-normalised) and its sparse vector the passage's with a random third of its terms dropped. The
vectors keep real-text statistics (clusters, term distribution), which is what HNSW and the
sparse index see. Queries are real questions, embedded per query as in production.

    .venv/bin/python bench/search_100k.py --data ../shared/data [--points 100000] [--queries 300]

Uses the embedder the settings name (prepared under ``RAGNET_DATA_DIR`` by `ragnet models prepare`);
the 100k-point index itself is built in a temporary folder. Prints one JSON object on its last line:
build time and p50/p95 latency per mode (ms).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import runtime_env

runtime_env.apply()

from api.services import Services  # noqa: E402
from api.settings import Settings  # noqa: E402
from retrieval.vectorstores.base import IndexPoint, SparseVector, StoreQuery  # noqa: E402
from retrieval.vectorstores.edge import EdgeVectorStore  # noqa: E402

SETS = [
    "rc/xquad_en",
    "rc/xquad_zh",
    "rc/cmrc2018_trial",
    "multihop/musique_train100",
    "multihop/hotpotqa_train100",
]


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True, help="the shared/data folder")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    nrng = np.random.default_rng(7)

    passages: list[str] = []
    questions: list[str] = []
    for name in SETS:
        passages += [
            f"{r.get('title', '')}\n{r['text']}" for r in read_jsonl(args.data / name / "corpus.jsonl")
        ]
        questions += [str(r["question"]) for r in read_jsonl(args.data / name / "questions.jsonl")]
    rng.shuffle(questions)
    questions = questions[: args.queries]

    with tempfile.TemporaryDirectory() as tmp:
        # The configured embedder (RAGNET_DATA_DIR's prepared models); the index lives in ``tmp``.
        services = Services(Settings())
        embedder, sparse = services.embedder, services.sparse
        t0 = time.perf_counter()
        dense = embedder.embed(passages, kind="document")
        sparse_vecs = sparse.encode_documents(passages)
        embed_s = time.perf_counter() - t0
        print(f"embedded {len(passages)} passages in {embed_s:.0f} s", file=sys.stderr)

        store = EdgeVectorStore(Path(tmp) / "edge", embedder.dim)
        t0 = time.perf_counter()
        batch: list[IndexPoint] = []
        for i in range(args.points):
            j = i % len(passages)
            vec = dense[j] if i < len(passages) else dense[j] + nrng.normal(0, 0.02, embedder.dim)
            vec = vec / np.linalg.norm(vec)
            sv = sparse_vecs[j]
            if i >= len(passages) and len(sv.indices) > 3:
                keep = [n for n in range(len(sv.indices)) if rng.random() > 0.33]
                sv = SparseVector(tuple(sv.indices[n] for n in keep), tuple(sv.values[n] for n in keep))
            payload = {
                "kb": "bench",
                "kind": "chunk",
                "state": "live",
                "doc_id": f"d{i}",
                "version": "v",
                "position": 0,
                "text": passages[j][:200],
            }
            batch.append(IndexPoint(str(uuid.UUID(int=i + 1)), vec.tolist(), sv, payload))
            if len(batch) == 2000:
                store.upsert(batch)
                batch = []
        if batch:
            store.upsert(batch)
        upsert_s = time.perf_counter() - t0

        def latencies() -> dict[str, dict[str, float]]:
            out: dict[str, dict[str, float]] = {}
            for mode in ("dense", "sparse", "hybrid"):
                total_ms: list[float] = []
                search_ms: list[float] = []
                for q in questions:
                    t0 = time.perf_counter()
                    qd = embedder.embed([q], kind="query")[0].tolist() if mode != "sparse" else None
                    qs = sparse.encode_query(q) if mode != "dense" else None
                    t1 = time.perf_counter()
                    store.search(StoreQuery("bench", args.k, mode=mode, dense=qd, sparse=qs))  # type: ignore[arg-type]
                    t2 = time.perf_counter()
                    total_ms.append((t2 - t0) * 1000)
                    search_ms.append((t2 - t1) * 1000)
                out[mode] = {
                    "p50_ms": round(percentile(total_ms, 50), 1),
                    "p95_ms": round(percentile(total_ms, 95), 1),
                    "search_only_p50_ms": round(percentile(search_ms, 50), 1),
                    "search_only_p95_ms": round(percentile(search_ms, 95), 1),
                }
            return out

        # As ingestion leaves it (Edge builds HNSW only when optimised), then optimised.
        unoptimized = latencies()
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0
        print(f"{args.points} points: upsert {upsert_s:.0f} s, optimize {optimize_s:.0f} s", file=sys.stderr)
        result: dict[str, object] = {
            "points": store.count("bench"),
            "passages": len(passages),
            "embedder": embedder.name,
            "upsert_s": round(upsert_s, 1),
            "optimize_s": round(optimize_s, 1),
            "queries": len(questions),
            "unoptimized": unoptimized,
            "optimized": latencies(),
        }
        store.close()
        services.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

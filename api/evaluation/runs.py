"""`ragnet eval retrieval` and `ragnet eval qa`: each returns the JSON object the CLI prints last."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.answering import strip_citations
from api import qa
from api.evaluation import metrics
from api.evaluation.data import read_questions
from api.services import Services
from retrieval.loaders import iter_documents
from retrieval.search import top_documents

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_corpus(services: Services, kb: str, corpus: Path, log: Log = _stderr) -> None:
    """Ingest ``corpus`` into ``kb`` when the kb has no documents yet."""
    if services.metadata.kb_exists(kb) and services.metadata.count_documents(kb) > 0:
        return
    log(f"kb {kb!r} is empty: ingesting {corpus}")
    report = services.ingestor.ingest(
        kb,
        iter_documents([corpus], max_bytes=services.settings.max_file_bytes),
        progress=lambda r: log(
            f"  {r.documents} documents, {r.chunks} chunks, {r.chunks_per_second:.1f} chunks/s"
        ),
    )
    log(f"ingested {report.indexed} documents, {report.chunks} chunks in {report.seconds:.1f} s")


def _progress(log: Log, i: int, n: int, started: float) -> None:
    if i == n or i % max(1, n // 20) == 0:
        log(f"  {i}/{n} questions, {time.perf_counter() - started:.0f} s")


def eval_retrieval(
    services: Services,
    kb: str,
    corpus: Path,
    questions: Path,
    limit: int | None,
    k: int = 10,
    log: Log = _stderr,
) -> dict[str, Any]:
    ensure_corpus(services, kb, corpus, log)
    items = read_questions(questions, limit)
    depth = max(k, 10)
    r1 = r5 = r10 = mrr = 0.0
    latencies: list[float] = []
    started = time.perf_counter()
    for i, q in enumerate(items, 1):
        t0 = time.perf_counter()
        # Chunks, then documents: several chunks of one document count once.
        hits = services.retriever.search(kb, q.question, depth * 3)
        latencies.append((time.perf_counter() - t0) * 1000)
        ranked = [h.doc_id for h in top_documents(hits, depth)]
        r1 += metrics.recall_at(ranked, q.supporting_ids, 1)
        r5 += metrics.recall_at(ranked, q.supporting_ids, 5)
        r10 += metrics.recall_at(ranked, q.supporting_ids, 10)
        mrr += metrics.reciprocal_rank(ranked[:k], q.supporting_ids)
        _progress(log, i, len(items), started)
    n = len(items) or 1
    return {
        "n": len(items),
        "recall@1": round(r1 / n, 4),
        "recall@5": round(r5 / n, 4),
        "recall@10": round(r10 / n, 4),
        "mrr": round(mrr / n, 4),
        "p50_ms": round(metrics.percentile(latencies, 50), 2),
        "p95_ms": round(metrics.percentile(latencies, 95), 2),
    }


def eval_qa(
    services: Services, kb: str, corpus: Path, questions: Path, limit: int | None, log: Log = _stderr
) -> dict[str, Any]:
    ensure_corpus(services, kb, corpus, log)
    items = read_questions(questions, limit)
    em = f1 = support = grounded = 0.0
    latencies: list[float] = []
    started = time.perf_counter()
    for i, q in enumerate(items, 1):
        t0 = time.perf_counter()
        result = qa.answer(services, kb, q.question)
        latencies.append(time.perf_counter() - t0)
        prediction = strip_citations(result["answer"])
        em += metrics.exact_match(prediction, q.answers)
        f1 += metrics.f1(prediction, q.answers)
        sources = [c["doc_id"] for c in result["citations"]]
        support += metrics.recall_at(sources, q.supporting_ids, len(sources)) if sources else 0.0
        grounded += 1.0 if result["grounded"] else 0.0
        _progress(log, i, len(items), started)
    n = len(items) or 1
    return {
        "n": len(items),
        "em": round(em / n, 4),
        "f1": round(f1 / n, 4),
        "support_recall": round(support / n, 4),
        "grounded_rate": round(grounded / n, 4),
        "p50_s": round(metrics.percentile(latencies, 50), 3),
        "p95_s": round(metrics.percentile(latencies, 95), 3),
    }

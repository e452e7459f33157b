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
from api.evaluation.data import Question, read_queries, read_questions
from api.services import Services
from retrieval.faq_records import read_faqs
from retrieval.loaders import LoadFailure, iter_documents
from retrieval.search import top_documents
from retrieval.vectorstores.base import Mode

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_corpus(services: Services, kb: str, corpus: Path, log: Log = _stderr) -> None:
    """Ingest ``corpus`` into ``kb`` when the kb has no documents yet."""
    info = services.metadata.ensure_kb(kb)
    if services.metadata.count_documents(info.id) > 0:
        return
    log(f"kb {kb!r} is empty: ingesting {corpus}")
    report = services.ingestor.ingest(
        info,
        iter_documents([corpus], max_bytes=services.settings.max_file_bytes),
        progress=lambda r: log(
            f"  {r.documents} documents, {r.chunks} chunks, {r.chunks_per_second:.1f} chunks/s"
        ),
    )
    log(f"ingested {report.indexed} documents, {report.chunks} chunks in {report.seconds:.1f} s")


def _average(
    items: list[Any], score: Callable[[Any], dict[str, float]], log: Log
) -> tuple[dict[str, float], list[float]]:
    """Mean of each score over the questions, and each question's wall time in seconds."""
    totals: dict[str, float] = {}
    seconds: list[float] = []
    started = time.perf_counter()
    for i, question in enumerate(items, 1):
        t0 = time.perf_counter()
        scores = score(question)
        seconds.append(time.perf_counter() - t0)
        for name, value in scores.items():
            totals[name] = totals.get(name, 0.0) + value
        if i == len(items) or i % max(1, len(items) // 20) == 0:
            log(f"  {i}/{len(items)} questions, {time.perf_counter() - started:.0f} s")
    n = len(items) or 1
    return {name: round(total / n, 4) for name, total in totals.items()}, seconds


def eval_retrieval(
    services: Services,
    kb: str,
    corpus: Path,
    questions: Path,
    limit: int | None,
    k: int = 10,
    log: Log = _stderr,
    mode: Mode | None = None,
) -> dict[str, Any]:
    ensure_corpus(services, kb, corpus, log)
    items = read_questions(questions, limit)
    depth = max(k, 10)

    def score(q: Question) -> dict[str, float]:
        # Chunks, then documents: several chunks of one document count once.
        hits = services.retriever.search(kb, q.question, depth * 3, mode=mode)
        ranked = [h.doc_id for h in top_documents(hits, depth)]
        return {
            "recall@1": metrics.recall_at(ranked, q.supporting_ids, 1),
            "recall@5": metrics.recall_at(ranked, q.supporting_ids, 5),
            "recall@10": metrics.recall_at(ranked, q.supporting_ids, 10),
            "mrr": metrics.reciprocal_rank(ranked[:k], q.supporting_ids),
        }

    means, seconds = _average(items, score, log)
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(items),
        "mode": mode or services.retriever.default_mode,
        **means,
        "p50_ms": round(metrics.percentile(ms, 50), 2),
        "p95_ms": round(metrics.percentile(ms, 95), 2),
    }


def eval_faq(
    services: Services,
    kb: str,
    faqs: Path,
    queries: Path,
    limit: int | None,
    log: Log = _stderr,
    mode: Mode | None = None,
) -> dict[str, Any]:
    """FAQ retrieval: does each paraphrase find its FAQ (top1, recall@5, MRR over FAQs)?"""
    info = services.metadata.ensure_kb(kb)
    if services.metadata.list_faqs(info.id, 0, 1)[1] == 0:
        log(f"kb {kb!r} has no FAQs: importing {faqs}")
        records = list(read_faqs(faqs, max_bytes=services.settings.max_file_bytes))
        bad = [r for r in records if isinstance(r, LoadFailure)]
        if bad:
            log(f"  {len(bad)} FAQ records skipped, first: {bad[0].source}: {bad[0].reason}")
        report = services.ingestor.ingest_faqs(info, records)
        log(f"imported {report.indexed} FAQs ({report.chunks} questions) in {report.seconds:.1f} s")
    items = read_queries(queries, limit)

    def score(q: tuple[str, str]) -> dict[str, float]:
        ranked = [h.doc_id for h in services.retriever.search_faqs(kb, q[0], 10, mode=mode)]
        return {
            "top1": 1.0 if ranked[:1] == [q[1]] else 0.0,
            "recall@5": 1.0 if q[1] in ranked[:5] else 0.0,
            "mrr": metrics.reciprocal_rank(ranked, [q[1]]),
        }

    means, seconds = _average(items, score, log)
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(items),
        "mode": mode or services.retriever.faq_mode,
        **means,
        "p50_ms": round(metrics.percentile(ms, 50), 2),
    }


def eval_qa(
    services: Services,
    kb: str,
    corpus: Path,
    questions: Path,
    limit: int | None,
    log: Log = _stderr,
    *,
    pipeline: qa.Mode | None = None,
) -> dict[str, Any]:
    """EM, F1, support recall, grounded rate and latency; with the agentic pipeline's costs:
    LLM calls and hops per question, and the share of questions that backtracked."""
    ensure_corpus(services, kb, corpus, log)
    items = read_questions(questions, limit)

    def score(q: Question) -> dict[str, float]:
        result = qa.answer(services, kb, q.question, mode=pipeline)
        prediction = strip_citations(result["answer"])
        sources = [c["doc_id"] for c in result["citations"]]
        trace = result["trace"]
        return {
            "em": metrics.exact_match(prediction, q.answers),
            "f1": metrics.f1(prediction, q.answers),
            "support_recall": metrics.recall_at(sources, q.supporting_ids, len(sources)) if sources else 0.0,
            "grounded_rate": 1.0 if result["grounded"] else 0.0,
            "avg_llm_calls": float(trace["used"]["llm_calls"]),
            "avg_hops": float(trace["used"]["hops"]),
            "backtrack_rate": 1.0 if trace["backtracks"] else 0.0,
        }

    means, seconds = _average(items, score, log)
    return {
        "n": len(items),
        "pipeline": pipeline or services.settings.answer_mode,
        **means,
        "p50_s": round(metrics.percentile(seconds, 50), 3),
        "p95_s": round(metrics.percentile(seconds, 95), 3),
    }

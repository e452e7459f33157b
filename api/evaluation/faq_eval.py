"""`ragnet eval faq` (search, then a FAQ scorer) and `ragnet train reranker` (fit the blend scorer).

Each query runs the FAQ search (``--candidates`` hits), then the scorer re-scores those hits:
``top1`` / ``recall@5`` / ``mrr`` / ``p50_ms`` are the search's alone (as before), ``scorer_top1`` is
after the scorer, and ``precision`` / ``coverage`` are at the scorer's default threshold (a query is
answered verbatim when its best score clears it; precision = right answers / answered, coverage =
right answers / queries that have a FAQ). Queries with an empty ``faq_id`` (``--unmatched``) are
questions no FAQ covers: answering one verbatim counts against precision.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.faq_match import FaqScorer
from agents.reranker_training import Example, precision_curve
from api.evaluation import metrics
from api.services import Services
from retrieval.errors import IngestError
from retrieval.faq_records import read_faqs
from retrieval.loaders import LoadFailure
from retrieval.vectorstores.base import Mode

Log = Callable[[str], None]
CANDIDATES = 20  # picked on banking dev: top-1 0.705 at 10, 0.732 at 20, 0.734 at 30


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def import_faqs(services: Services, kb: str, faqs: Path, log: Log = _stderr) -> None:
    """Import ``faqs`` into ``kb`` when the kb has no FAQs yet."""
    info = services.metadata.ensure_kb(kb)
    if services.metadata.list_faqs(info.id, 0, 1)[1] > 0:
        return
    log(f"kb {kb!r} has no FAQs: importing {faqs}")
    records = list(read_faqs(faqs, max_bytes=services.settings.max_file_bytes))
    bad = [r for r in records if isinstance(r, LoadFailure)]
    if bad:
        log(f"  {len(bad)} FAQ records skipped, first: {bad[0].source}: {bad[0].reason}")
    report = services.ingestor.ingest_faqs(info, records)
    log(f"imported {report.indexed} FAQs ({report.chunks} questions) in {report.seconds:.1f} s")


def read_faq_queries(
    path: Path, limit: int | None = None, *, unmatched: bool = False
) -> list[tuple[str, str]]:
    """(query, faq_id) pairs; ``unmatched``: every faq_id is blank (questions no FAQ answers)."""
    out: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            if limit is not None and len(out) >= limit:
                break
            rec = json.loads(line)
            if not isinstance(rec.get("query"), str) or (not unmatched and not rec.get("faq_id")):
                raise IngestError(f'{path}: every line needs "query" and "faq_id"')
            out.append((rec["query"], "" if unmatched else str(rec["faq_id"])))
    if not out:
        raise IngestError(f"{path} has no queries")
    return out


def collect(
    services: Services, kb: str, queries: list[tuple[str, str]], k: int, mode: Mode | None = None
) -> tuple[list[Example], list[float]]:
    """Each query's FAQ candidates, and each search's wall time in ms."""
    examples, ms = [], []
    for query, gold in queries:
        t0 = time.perf_counter()
        hits = services.retriever.search_faqs(kb, query, k, mode=mode)
        ms.append((time.perf_counter() - t0) * 1000)
        examples.append(Example(query, gold, tuple(hits)))
    return examples, ms


def score_examples(
    examples: list[Example], scorer: FaqScorer, threshold: float | None = None
) -> dict[str, Any]:
    """Top-1 after the scorer, precision/coverage at ``threshold`` (default: the scorer's), the curve."""
    threshold = scorer.default_threshold if threshold is None else threshold
    best, correct, matched, top1, ms = [], [], [], [], []
    for ex in examples:
        t0 = time.perf_counter()
        scores = scorer.score(ex.query, list(ex.hits)) if ex.hits else []
        ms.append((time.perf_counter() - t0) * 1000)
        if scores:
            i = max(range(len(scores)), key=lambda j: (scores[j], -j))  # ties keep the search order
            right = bool(ex.gold) and ex.hits[i].doc_id == ex.gold
            best.append(float(scores[i]))
        else:
            right = False
            best.append(float("-inf"))
        correct.append(right)
        matched.append(bool(ex.gold))
        if ex.gold:
            top1.append(1.0 if right else 0.0)
    answered = [b >= threshold for b in best]
    n_matched = max(1, sum(matched))
    n_answered = sum(answered)
    right_answered = sum(1 for a, c in zip(answered, correct, strict=True) if a and c)
    wrong_unmatched = sum(1 for a, m in zip(answered, matched, strict=True) if a and not m)
    finite = [(b, c, m) for b, c, m in zip(best, correct, matched, strict=True) if b != float("-inf")]
    curve = precision_curve([f[0] for f in finite], [f[1] for f in finite], [f[2] for f in finite])
    return {
        "scorer": getattr(scorer, "name", type(scorer).__name__),
        "scorer_top1": round(sum(top1) / len(top1), 4) if top1 else 0.0,
        "threshold": round(float(threshold), 4),
        "precision": round(right_answered / n_answered, 4) if n_answered else 1.0,
        "coverage": round(right_answered / n_matched, 4),
        "answered": n_answered,
        "unmatched": len(matched) - sum(matched),
        "unmatched_answered": wrong_unmatched,
        "scoring_p50_ms": round(metrics.percentile(ms, 50), 2),
        "scoring_p95_ms": round(metrics.percentile(ms, 95), 2),
        "curve": _thin(curve),
    }


def _thin(curve: list[dict[str, float]], points: int = 41) -> list[dict[str, float]]:
    """At most ``points`` evenly spaced points of the curve (the ends kept)."""
    if len(curve) <= points:
        return curve
    step = (len(curve) - 1) / (points - 1)
    return [curve[round(i * step)] for i in range(points)]


def eval_faq_scored(
    services: Services,
    kb: str,
    faqs: Path,
    queries: Path,
    limit: int | None,
    *,
    scorer: FaqScorer | None = None,
    unmatched: Path | None = None,
    candidates: int = CANDIDATES,
    mode: Mode | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """The search alone (top1, recall@5, mrr, p50_ms, as `eval faq` always reported), then the scorer."""
    import_faqs(services, kb, faqs, log)
    items = read_faq_queries(queries, limit)
    if unmatched is not None:
        items += read_faq_queries(unmatched, limit, unmatched=True)
    scorer = scorer or services.faq_scorer
    examples, search_ms = collect(services, kb, items, max(candidates, 10), mode)
    matched = [ex for ex in examples if ex.gold]
    ranked = [[h.doc_id for h in ex.hits] for ex in matched]
    n = max(1, len(matched))
    search = {
        "n": len(matched),
        "mode": mode or services.retriever.faq_mode,
        "top1": round(sum(r[:1] == [ex.gold] for r, ex in zip(ranked, matched, strict=True)) / n, 4),
        "recall@5": round(sum(ex.gold in r[:5] for r, ex in zip(ranked, matched, strict=True)) / n, 4),
        f"recall@{candidates}": round(
            sum(ex.gold in r[:candidates] for r, ex in zip(ranked, matched, strict=True)) / n, 4
        ),
        "mrr": round(
            sum(metrics.reciprocal_rank(r, [ex.gold]) for r, ex in zip(ranked, matched, strict=True)) / n, 4
        ),
        "p50_ms": round(metrics.percentile(search_ms, 50), 2),
        "candidates": candidates,
    }
    trimmed = [Example(ex.query, ex.gold, ex.hits[:candidates]) for ex in examples]
    scored = score_examples(trimmed, scorer)
    log(
        f"{kb}: search top1 {search['top1']}, {scored['scorer']} top1 {scored['scorer_top1']}, "
        f"precision {scored['precision']} coverage {scored['coverage']} at {scored['threshold']}"
    )
    return {**search, **scored}


def train_reranker_command(
    services: Services,
    data: Path,
    out: Path,
    *,
    target_precision: float = 0.98,
    candidates: int = CANDIDATES,
    seed: int = 13,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Fit the blend scorer on BANKING77 *dev* intents (``ragnet data faq-banking``'s split)."""
    from agents.faq_reranker import FEATURES, BlendScorer, BlendWeights
    from agents.reranker_training import train_blend
    from api.evaluation.faq_data import write_faq_banking

    with tempfile.TemporaryDirectory() as tmp:
        split = write_faq_banking(data, Path(tmp), seed=seed)
        dev = Path(tmp) / "dev"
        kb = f"faq-banking-dev-{seed}"
        import_faqs(services, kb, dev / "faqs.jsonl", log)
        items = read_faq_queries(dev / "queries.jsonl") + read_faq_queries(
            dev / "unmatched.jsonl", unmatched=True
        )
        examples, _ = collect(services, kb, items, candidates)
    blank = BlendWeights(FEATURES, (0.0,) * len(FEATURES), 0.0, 0.5)
    feature_scorer = BlendScorer(weights=blank, encoder=services.faq_encoder)
    meta = {
        "trained_on": f"BANKING77 dev intents (ragnet data faq-banking, seed {seed})",
        "dev_intents": split["dev"]["intents"],
        "search_embedder": services.embedder.name,
        "candidates": candidates,
        "target_precision": target_precision,
    }
    t0 = time.perf_counter()
    weights, report = train_blend(examples, feature_scorer, target_precision=target_precision, meta=meta)
    path = weights.save(out)
    log(f"wrote {path} in {time.perf_counter() - t0:.1f} s; threshold {weights.threshold:.4f}")
    return {"out": str(out), **report, "split": split}

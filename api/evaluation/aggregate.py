"""`ragnet eval aggregate` and `ragnet train gnn`: the support GNN against simple aggregators.

Both run the real retrieval and reader over a question set (readings cached, api/evaluation/
readings.py), build each question's support graph, and then either train the GNN or compare the
answer it picks with what majority vote, the most confident reader span and the top-ranked
document's answer pick, and with an oracle that picks any correct candidate.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agents import support_gnn
from agents.composing import shape
from agents.gnn_training import Example, train
from agents.reading import candidate_of
from agents.support_gnn import GnnConfig, SupportGNN, candidate_logits
from agents.support_graph import SupportGraph, build_graph, first_answering, likeliest_linked
from api.evaluation.data import read_jsonl
from api.evaluation.metrics import percentile
from api.evaluation.readings import READ_DEPTH, ReadingRecord, cache_path, questions_to_read, read_all
from api.evaluation.runs import ensure_corpus
from api.services import Services
from retrieval.errors import IngestError

Log = Callable[[str], None]


def embed_fn(services: Services) -> Callable[[Sequence[str]], np.ndarray]:
    embedder = services.embedder
    return lambda texts: embedder.embed(texts, kind="query")


def graph_of(record: ReadingRecord, embed: Callable[[Sequence[str]], np.ndarray]) -> SupportGraph:
    """The support graph of a cached reading, candidates extracted exactly as the read step does."""
    open_question = shape(record.question).kind == "open"
    answers: list[str | None] = []
    for r in record.readings:
        answer, echo = candidate_of(r.reply.strip(), record.question, open_question=open_question)
        answers.append(None if echo else answer)
    logprobs = [r.logprob for r in record.readings]
    alternatives = [r.alternatives for r in record.readings]
    no_answer = [r.no_answer for r in record.readings]
    spans_read = all(n is not None for n in no_answer)
    return build_graph(
        record.question,
        record.docs,
        answers,
        logprobs,
        embed,
        alternatives,
        [n or 0.0 for n in no_answer] if spans_read else None,
        record.linked,
    )


# --- the aggregators compared ------------------------------------------------------------------
def pick_vote(g: SupportGraph) -> int:
    """The cluster most documents read; ties to the best-ranked document."""
    return min(
        range(len(g.clusters)), key=lambda i: (-len(g.clusters[i].members), min(g.clusters[i].members))
    )


def pick_max_reader(g: SupportGraph) -> int:
    """The cluster of the single reading the reader was most sure of."""
    return max(range(len(g.clusters)), key=lambda i: max(g.logprobs[m] for m in g.clusters[i].members))


def pick_top_doc(g: SupportGraph) -> int:
    """The answer of the best-ranked document that gave one."""
    return min(range(len(g.clusters)), key=lambda i: min(g.clusters[i].members))


def pick_top_answered(g: SupportGraph) -> int:
    """The answer of the best-ranked document whose reader prefers it to "no answer" (the top
    document's answer as the reader alone would give it); the top document's if none does."""
    return first_answering(g.clusters, g.says_none or [False] * len(g.docs))


def pick_gnn(model: SupportGNN) -> Callable[[SupportGraph], int]:
    def pick(g: SupportGraph) -> int:
        logits = candidate_logits(model, g)
        return max(range(len(logits)), key=logits.__getitem__)

    return pick


def _titles(corpus: Path) -> dict[str, str]:
    """Document id -> title (readings cached before documents kept their titles get them here)."""
    return {str(rec.get("id")): str(rec.get("title") or "") for rec in read_jsonl(corpus)}


def _examples(
    services: Services,
    kb: str,
    corpus: Path,
    questions: Path,
    limit: int | None,
    *,
    steps: bool,
    log: Log,
    build_ms: list[float] | None = None,
) -> list[Example]:
    """Each question's graph, labelled; ``build_ms`` collects the time to build each graph
    (candidate extraction, clustering, embeddings, features)."""
    asked = questions_to_read(questions, limit, steps=steps)
    cache = cache_path(services, kb, questions, READ_DEPTH)
    log(f"{kb}: {len(asked)} questions, readings cached in {cache}")
    embed = embed_fn(services)
    parents = {a.id: a.parent or a.id for a in asked}
    titles = _titles(corpus)
    out: list[Example] = []
    for record in read_all(services, kb, asked, cache, log=log):
        if any(not d.title for d in record.docs):
            docs = [d if d.title else replace(d, title=titles.get(d.doc_id, "")) for d in record.docs]
            record = replace(record, docs=docs)
        t0 = time.perf_counter()
        graph = graph_of(record, embed)
        if build_ms is not None:
            build_ms.append((time.perf_counter() - t0) * 1000)
        out.append(Example(graph, graph.labels(record.answers), f"{kb}/{parents[record.id]}"))
    return out


def eval_aggregate(
    services: Services,
    kb: str,
    corpus: Path,
    questions: Path,
    limit: int | None,
    *,
    gnn: Path | None = None,
    log: Log,
) -> dict[str, Any]:
    ensure_corpus(services, kb, corpus, log)
    build_ms: list[float] = []
    examples = _examples(services, kb, corpus, questions, limit, steps=False, log=log, build_ms=build_ms)
    model = support_gnn.load(gnn or support_gnn.default_checkpoint(services.settings.reader))
    pickers = {
        "gnn_acc": pick_gnn(model),
        "vote_acc": pick_vote,
        "max_reader_acc": pick_max_reader,
        "top_doc_acc": pick_top_doc,
        "top_answered_acc": pick_top_answered,
    }
    right = dict.fromkeys([*pickers, "oracle_acc"], 0)
    ms: list[float] = []
    confidence, correct = [], []
    linked = {"graphs": 0, "read": 0, "gnn": 0}  # where a linked read names a candidate
    for e in examples:
        if not e.graph.clusters:
            continue
        for name, pick in pickers.items():
            right[name] += int(e.labels[pick(e.graph)] > 0)
        right["oracle_acc"] += int(e.labels.max() > 0)
        t0 = time.perf_counter()
        logits = candidate_logits(model, e.graph)
        ms.append((time.perf_counter() - t0) * 1000)
        best = max(range(len(logits)), key=logits.__getitem__)
        confidence.append(model.config.confidence(logits[best]))
        correct.append(float(e.labels[best]))
        if (read := likeliest_linked(e.graph)) is not None:
            linked["graphs"] += 1
            linked["read"] += int(e.labels[read] > 0)
            linked["gnn"] += int(e.labels[best] > 0)
    n = len(examples)
    result: dict[str, Any] = {"n": n, **{k: round(v / max(1, n), 4) for k, v in right.items()}}
    result.update(gap_closed(result))
    result["answered"] = sum(1 for e in examples if e.graph.clusters)
    result["gnn_ms_p50"] = round(percentile(ms, 50), 2)
    result["gnn_ms_p95"] = round(percentile(ms, 95), 2)
    result["graph_build_ms_p50"] = round(percentile(build_ms, 50), 2)
    result["confidence_ece"] = round(_ece(confidence, correct), 4)
    # the linked reads' own say: on the graphs where the likeliest one names a candidate, how often
    # that candidate is right against how often the GNN's pick is
    result["linked_graphs"] = linked["graphs"]
    result["linked_read_acc"] = round(linked["read"] / max(1, linked["graphs"]), 4)
    result["linked_gnn_acc"] = round(linked["gnn"] / max(1, linked["graphs"]), 4)
    mean_conf = float(np.mean(confidence)) if confidence else 0.0
    mean_right = float(np.mean(correct)) if correct else 0.0
    log(f"  mean confidence {mean_conf:.3f} vs accuracy of the GNN's pick {mean_right:.3f}")
    return result


BASELINES = ("vote_acc", "max_reader_acc", "top_doc_acc", "top_answered_acc")


def gap_closed(accuracy: dict[str, Any]) -> dict[str, Any]:
    """The issue's yardstick: the best baseline, and the share of the gap between it and the oracle
    that the GNN closes (1 = the oracle's accuracy, 0 = the baseline's, < 0 = worse than it;
    None where the baseline already equals the oracle)."""
    best = max(BASELINES, key=lambda k: accuracy[k])
    gap = accuracy["oracle_acc"] - accuracy[best]
    closed = round((accuracy["gnn_acc"] - accuracy[best]) / gap, 3) if gap > 0 else None
    return {"best_baseline": best.removesuffix("_acc"), "gap_closed": closed}


def _ece(confidence: list[float], correct: list[float], bins: int = 10) -> float:
    """Expected calibration error: |confidence - accuracy| per confidence bin, weighted by size."""
    if not confidence:
        return 0.0
    total = 0.0
    for b in range(bins):
        idx = [
            i
            for i, c in enumerate(confidence)
            if b / bins <= c < (b + 1) / bins or (b == bins - 1 and c == 1)
        ]
        if idx:
            gap = np.mean([confidence[i] for i in idx]) - np.mean([correct[i] for i in idx])
            total += len(idx) * abs(float(gap))
    return total / len(confidence)


@dataclass(frozen=True)
class TrainingSet:
    folder: Path  # holds corpus.jsonl and questions.jsonl
    limit: int | None

    @property
    def kb(self) -> str:
        return self.folder.name


def train_gnn(
    services: Services,
    sets: Sequence[TrainingSet],
    out: Path,
    *,
    epochs: int,
    seed: int,
    log: Log,
) -> dict[str, Any]:
    """Read the sets (a decomposed multi-hop question read whole and step by step), train, write
    ``out``."""
    examples: list[Example] = []
    rows: list[str] = []
    for s in sets:
        corpus, questions = s.folder / "corpus.jsonl", s.folder / "questions.jsonl"
        if not corpus.is_file() or not questions.is_file():
            raise IngestError(f"{s.folder} needs corpus.jsonl and questions.jsonl")
        ensure_corpus(services, s.kb, corpus, log)
        got = _examples(services, s.kb, corpus, questions, s.limit, steps=True, log=log)
        positives = sum(int(e.labels.max() > 0) for e in got if e.graph.clusters)
        rows.append(
            f"| {s.folder.parent.name}/{s.folder.name} | {s.limit or 'all'} | {len(got)} | "
            f"{sum(len(e.graph.clusters) for e in got)} | {positives} |"
        )
        examples.extend(got)
    started = time.perf_counter()
    model, report = train(examples, GnnConfig(), epochs=epochs, seed=seed, log=log)
    seconds = time.perf_counter() - started
    card = _card(services, rows, report, epochs, seed, seconds)
    support_gnn.save(model, out, card)
    log(f"wrote {out} ({seconds:.1f} s of training)")
    return {
        "graphs": len(examples),
        "train_questions": report.train_questions,
        "calibration_questions": report.calibration_questions,
        "first_loss": round(report.losses[0], 4) if report.losses else None,
        "last_loss": round(report.losses[-1], 4) if report.losses else None,
        "calib_a": report.calib_a,
        "calib_b": report.calib_b,
        "seconds": round(seconds, 1),
        "out": str(out),
    }


def _card(services: Services, rows: list[str], report: Any, epochs: int, seed: int, seconds: float) -> str:
    span_reader = services.span_reader
    reader = (
        f"the extractive span reader `{span_reader.name}` ({span_reader.fingerprint})"
        if span_reader is not None
        else f"{services.generator.name}, greedy, one batched call per question"
    )
    return "\n".join(
        [
            "# Support GNN — data card",
            "",
            f"Trained {dt.date.today().isoformat()} by `ragnet train gnn` ({epochs} epochs, seed {seed}, "
            f"{seconds:.0f} s on CPU). Graphs: the real retrieval (top {READ_DEPTH} chunks, hybrid) and the "
            f"real reader ({reader}) over these public sets; a multi-hop question with a "
            "decomposition is read whole and step by step (each step's '#n' replaced by the gold "
            "answer of step n). A candidate is labelled right when it matches a gold "
            "answer (same key after normalisation, or token F1 >= 0.6).",
            "",
            "| set | questions | graphs | candidates | graphs with a right candidate |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Trained on all {report.train_questions} graphs that have candidates; confidence calibrated "
            f"(Platt, a = {report.calib_a}, b = {report.calib_b}) on {report.calibration_questions} "
            "out-of-fold scores (5 models, each trained without one fold of the questions, a "
            "multi-hop question's steps in one fold). "
            + (f"Loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}." if report.losses else "No graphs."),
            "",
            "Licences of the data: CMRC 2018 CC BY-SA 4.0; MuSiQue CC BY 4.0 (via HippoRAG, MIT); XQuAD "
            "CC BY-SA 4.0; HotpotQA CC BY-SA 4.0. The weights hold no text of them: the features are "
            "scores, counts and similarities.",
            "",
        ]
    )

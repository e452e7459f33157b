"""`ragnet train reader` and `ragnet eval reader`: the extractive reader trained and measured.

``eval reader`` reads each question's gold passages (``supporting_ids``) and scores the most
likely answer among them against the gold answers (EM / token F1, SQuAD-style), so the reader is
measured apart from retrieval. With ``generator=True`` the same passages are also read by the
generator's reading prompt (one batched call per question, what ``RAGNET_READER=generator`` does),
for the speed/accuracy comparison in the README.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.extractive_reader import DEFAULT_READER, ExtractiveReader, load_config
from agents.generation.base import GenerationRequest
from agents.reader_training import ReaderTrainConfig, init_rank, train_reader
from agents.reading import read_messages, reader_answer
from api.evaluation import metrics
from api.evaluation.data import read_jsonl, set_folder
from api.evaluation.reader_data import id_list, load_corpus, span_examples, titles_of
from api.evaluation.readings import READ_TOKENS
from api.services import Services, e5_encoder_dir
from retrieval.documents import Hit
from retrieval.errors import IngestError

Log = Callable[[str], None]

#: Sets `ragnet train reader` learns from by default (folders under --data).
READER_SETS = "rc/cmrc2018_trial,rc/xquad_en,rc/xquad_zh,multihop/musique_train100"
#: Articles held out by default: those of XQuAD's first 100 questions (the README's QA benchmark).
READER_HOLD_OUT = "rc/xquad_en:100"


def _passage(doc_id: str, text: str) -> Hit:
    return Hit(chunk_id=doc_id, doc_id=doc_id, title="", text=text, source="", position=0, score=1.0)


def eval_reader(
    services: Services,
    corpus: Path,
    questions: Path,
    limit: int | None,
    *,
    reader_dir: Path | None = None,
    generator: bool = False,
    log: Log = lambda _m: None,
) -> dict[str, Any]:
    docs = load_corpus(corpus.parent) if corpus.name == "corpus.jsonl" else None
    if docs is None:
        raise IngestError(f"{corpus}: expected a corpus.jsonl")
    reader = ExtractiveReader(
        reader_dir or services.settings.reader_model or DEFAULT_READER, e5_encoder_dir(services.settings)
    )
    rows: list[dict[str, float]] = []
    for n, rec in enumerate(read_jsonl(questions)):
        if limit is not None and n >= limit:
            break
        question, answers = rec.get("question"), rec.get("answers")
        if not isinstance(question, str) or not isinstance(answers, list):
            raise IngestError(f'{questions}: every line needs a "question" string and an "answers" list')
        gold = [d for d in id_list(rec.get("supporting_ids")) if d in docs]
        if not gold:
            continue
        texts = [docs[d]["text"] for d in gold]
        started = time.perf_counter()
        read = reader.read(question, texts)
        seconds = time.perf_counter() - started
        answered = [e for e in read if e.answer]
        best = max(answered, key=lambda e: e.logprob).answer or "" if answered else ""
        row = {
            "em": metrics.exact_match(best, answers),
            "f1": metrics.f1(best, answers),
            "answered": float(bool(answered)),
            "ms": 1000 * seconds,
        }
        if generator:
            requests = [
                GenerationRequest(
                    read_messages(question, _passage(d, t)), max_tokens=READ_TOKENS, stop=("\n",)
                )
                for d, t in zip(gold, texts, strict=True)
            ]
            started = time.perf_counter()
            out = services.generator.generate_batch(requests)
            gen_seconds = time.perf_counter() - started
            replies = [(reader_answer(g.text, question), g.logprob or 0.0) for g in out]
            kept = [(a, lp) for a, lp in replies if a]
            gen_best = max(kept, key=lambda r: r[1])[0] if kept else ""
            row |= {
                "gen_em": metrics.exact_match(gen_best or "", answers),
                "gen_f1": metrics.f1(gen_best or "", answers),
                "gen_ms": 1000 * gen_seconds,
            }
        rows.append(row)
        if len(rows) % 25 == 0:
            log(f"  {len(rows)} questions read")
    if not rows:
        raise IngestError(f"{questions}: no question has a supporting passage in {corpus}")

    def mean(key: str) -> float:
        return round(statistics.fmean(r[key] for r in rows), 4)

    result: dict[str, Any] = {
        "n": len(rows),
        "em": mean("em"),
        "f1": mean("f1"),
        "answered_rate": mean("answered"),
        "p50_ms": round(statistics.median(r["ms"] for r in rows), 1),
    }
    if generator:
        result |= {
            "generator_em": mean("gen_em"),
            "generator_f1": mean("gen_f1"),
            "generator_p50_ms": round(statistics.median(r["gen_ms"] for r in rows), 1),
        }
    return result


def train_reader_command(
    services: Services,
    data: Path,
    sets: str,
    hold_out: str,
    out: Path,
    config: ReaderTrainConfig,
    *,
    init: Path | None = None,
    log: Log,
) -> dict[str, Any]:
    """Examples from ``sets`` (folders under ``data``, each with an optional ``:limit``) minus the
    articles of ``hold_out`` (``set:N``: the first N questions' articles), trained into ``out``."""
    if init is not None:  # not a reader checkpoint: said before any example is built
        load_config(init)
        config = replace(config, rank=init_rank(init))
    held: set[str] = set()
    for item in filter(None, (p.strip() for p in hold_out.split(","))):
        name, _, count = item.partition(":")
        held |= titles_of(set_folder(data, name), int(count) if count.isdigit() else 100)
    examples = []
    counts: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in sets.split(","))):
        name, _, count = item.partition(":")
        found = span_examples(
            set_folder(data, name), limit=int(count) if count.isdigit() else None, hold_out_titles=held
        )
        counts[name] = sum(1 for e in found if e.answer_start >= 0)
        examples.extend(found)
        log(f"  {name}: {counts[name]} answers, {len(found) - counts[name]} passages without one")
    if not examples:
        raise IngestError("no training examples: no gold answer was found verbatim in its passage")
    card = _data_card(counts, hold_out, config, init)
    report = train_reader(
        examples,
        e5_encoder_dir(services.settings),
        out,
        config,
        work_dir=services.settings.data_dir / "cache" / "reader-training",
        data_card=card,
        init=init,
        log=log,
    )
    return {
        "out": str(out),
        "examples": report.examples,
        "windows": report.windows,
        "answer_windows": report.positives,
        "steps": report.steps,
        "seconds": round(report.seconds, 1),
        "losses": report.losses,
    }


def _data_card(counts: dict[str, int], hold_out: str, config: ReaderTrainConfig, init: Path | None) -> str:
    rows = "\n".join(f"| {name} | {n} |" for name, n in counts.items())
    further = (
        ""
        if init is None
        else f"Trained further from the reader checkpoint `{init.name}` (its own recipe is under "
        '"training" → "init" in ragnet_reader.json). '
    )
    return (
        "# Extractive reader — data card\n\n"
        f"Trained by `ragnet train reader` (LoRA r {config.rank} on multilingual-e5-small's attention and "
        f"feed-forward projections + a span head; {config.epochs} epochs, lr {config.lr}, batch "
        f"{config.batch_size}, {config.max_length}-token windows, seed {config.seed}). {further}"
        "Each question gives "
        "its gold passage with the answer's first verbatim occurrence, and a related passage without it "
        '("no answer"); windows without the whole answer are "no answer" too (at most as many as '
        "the answer windows).\n\n"
        "| set | questions with the answer found in a gold passage |\n|---|---|\n"
        f"{rows}\n\n"
        f"Held out: every article of `{hold_out}` (the first questions' articles, in every set and "
        "language), so the README's XQuAD numbers are on text the reader never saw; HotpotQA is not "
        "used at all.\n\n"
        "Licences of the data: CMRC 2018 CC BY-SA 4.0; XQuAD CC BY-SA 4.0; MuSiQue CC BY 4.0 (via "
        "HippoRAG, MIT). The checkpoint holds LoRA factors and a span head, no text of the sets.\n"
    )

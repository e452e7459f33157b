"""Readings: what the real retrieval and reader make of each question, cached and resumable.

``ragnet train gnn`` and ``ragnet eval aggregate`` both need, per question, the documents the
knowledge base returns and the reader's reply (with its log-probability) for each of them. That
is the slow part (one batched model call per question), so it is written to a JSON Lines cache
one question at a time; a run that stops part-way picks up where it stopped. The cache key holds
the kb, the question file, the depth, the reader prompt and the generator, so a changed reader
never reuses stale readings. Turning readings into graphs (features, labels) happens later and
is cheap, so the GNN's features can change without reading again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from agents.generation.base import GenerationRequest
from agents.linked_reading import read_linked
from agents.reading import READ_INSTRUCTION, read_messages
from agents.support_graph import Doc, LinkedReading, Reading, doc_of
from api.evaluation.data import read_jsonl
from api.services import Services
from retrieval.errors import IngestError

Log = Callable[[str], None]

#: Documents read per question (the GNN's graphs are built over this many).
READ_DEPTH = 5
READ_TOKENS = 24


@dataclass(frozen=True)
class Asked:
    """A question to read for, with its gold answers; ``parent`` names the multi-hop question a
    decomposition step came from."""

    id: str
    question: str
    answers: list[str]
    parent: str = ""


_ARROW = re.compile(r"^(.+?)\s*>>\s*(.+)$")


def _step_question(text: str, earlier: list[str]) -> str:
    """A decomposition step as a plain question: '#1' replaced by the earlier gold answer,
    MuSiQue's 'Hello Love >> performer' as 'Who is the performer of Hello Love?'."""
    for n, answer in enumerate(earlier, 1):
        text = text.replace(f"#{n}", answer)
    m = _ARROW.match(text.strip())
    if m:
        return f"What is the {m.group(2).strip()} of {m.group(1).strip()}?"
    return text.strip()


def questions_to_read(
    path: Path, limit: int | None = None, *, steps: bool = False, whole: bool = True
) -> list[Asked]:
    """The questions of a questions.jsonl; with ``steps``, a multi-hop question that has a
    decomposition also gives its single-hop steps (each with its own gold answer), and itself only
    with ``whole``."""
    out: list[Asked] = []
    for n, rec in enumerate(read_jsonl(path)):
        if limit is not None and n >= limit:
            break
        qid, question = str(rec.get("id", n)), rec.get("question")
        answers = rec.get("answers")
        if not isinstance(question, str) or not isinstance(answers, list):
            raise IngestError(f'{path}: every line needs a "question" string and an "answers" list')
        decomposition = rec.get("decomposition")
        multi_hop = isinstance(decomposition, list) and bool(decomposition)
        if whole or not (steps and multi_hop):
            out.append(Asked(qid, question, [str(a) for a in answers]))
        if steps and isinstance(decomposition, list) and decomposition:
            earlier: list[str] = []
            for i, step in enumerate(decomposition):
                answer = str(step.get("answer", ""))
                out.append(
                    Asked(f"{qid}/{i + 1}", _step_question(str(step["question"]), earlier), [answer], qid)
                )
                earlier.append(answer)
    if not out:
        raise IngestError(f"{path} holds no questions")
    return out


@dataclass(frozen=True)
class ReadingRecord:
    id: str
    question: str
    answers: list[str]
    docs: list[Doc]
    readings: list[Reading]  # one per doc, same order
    linked: list[LinkedReading] = field(default_factory=list)  # the span reader's linked pairs

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ReadingRecord:
        rec = json.loads(line)
        return cls(
            rec["id"],
            rec["question"],
            rec["answers"],
            [Doc(**d) for d in rec["docs"]],
            [
                Reading(
                    r["reply"],
                    r["logprob"],
                    tuple((a, lp) for a, lp in r.get("alternatives", ())),
                    r.get("no_answer"),
                )
                for r in rec["readings"]
            ],
            [LinkedReading(**r) for r in rec.get("linked", ())],
        )


def cache_path(services: Services, kb: str, questions: Path, depth: int) -> Path:
    """One file per kb, question file, depth, reader prompt and model: whole questions and
    decomposition steps (ids "q/1", "q/2") share it."""
    span_reader = services.span_reader
    if span_reader is not None:  # the extractive reader: its checkpoint's weights name it
        # v2: readings keep the best span also where "no answer" is likelier, the reader's other
        # spans and the documents' titles; v3: and the linked pairs' readings
        key = f"extractive-v3|{span_reader.name}|{span_reader.fingerprint}|{depth}"
    else:
        generator = services.generator.name  # the model folder's name
        quantize = services.settings.generator_quantize
        key = f"{READ_INSTRUCTION}|{generator}|{quantize}|{depth}|{READ_TOKENS}"
        # what the loaded generator resolved on this CPU (the in-process one only): a bf16 prompt
        # pass under int8/int4 weights reads a little differently
        prompts = getattr(services.generator, "prefill", None)
        if prompts == "bf16" and quantize in ("int8-weights", "int4-weights"):
            key += "|bf16-prefill"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    name = f"{kb}--{questions.parent.name}-{questions.stem}--{digest}.jsonl"
    return services.settings.data_dir / "cache" / "readings" / re.sub(r"[^\w.\-]", "_", name)


def load_cached(path: Path) -> dict[str, ReadingRecord]:
    """Records already read; a line cut short by a crash is dropped (that question is read again)."""
    done: dict[str, ReadingRecord] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = ReadingRecord.from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            done[rec.id] = rec
    return done


def read_all(
    services: Services,
    kb: str,
    asked: list[Asked],
    cache: Path,
    *,
    depth: int = READ_DEPTH,
    log: Log,
) -> Iterator[ReadingRecord]:
    """Every question's readings, from the cache where it has them, else read now and appended."""
    done = load_cached(cache)
    todo = [a for a in asked if a.id not in done]
    if done:
        log(f"  {len(asked) - len(todo)}/{len(asked)} questions already read ({cache.name})")
    cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    new: dict[str, ReadingRecord] = {}
    with cache.open("a", encoding="utf-8") as out:
        for i, a in enumerate(todo, 1):
            record = read_one(services, kb, a, depth)
            out.write(record.to_json() + "\n")
            out.flush()
            new[a.id] = record
            if i == len(todo) or i % 10 == 0:
                rate = (time.perf_counter() - started) / i
                log(
                    f"  read {i}/{len(todo)} questions, {rate:.1f} s each, "
                    f"~{rate * (len(todo) - i):.0f} s left"
                )
    for a in asked:
        yield done.get(a.id) or new[a.id]


def read_one(services: Services, kb: str, asked: Asked, depth: int) -> ReadingRecord:
    hits = services.retriever.search(kb, asked.question, depth)
    docs = [replace(doc_of(h, rank), relevance=round(h.evidence_score, 5)) for rank, h in enumerate(hits)]
    span_reader = services.span_reader
    linked: list[LinkedReading] = []
    if span_reader is not None:
        readings = [
            Reading(e.span or "unknown", round(e.logprob, 5), e.alternatives, round(e.none_logprob, 5))
            for e in span_reader.read(asked.question, [h.reader_text for h in hits])
        ]
        linked = read_linked(span_reader, asked.question, docs)
    else:
        requests = [
            GenerationRequest(read_messages(asked.question, h), max_tokens=READ_TOKENS, stop=("\n",))
            for h in hits
        ]
        generations = services.generator.generate_batch(requests)
        readings = [
            Reading(g.text, round(g.logprob if g.logprob is not None else 0.0, 5)) for g in generations
        ]
    return ReadingRecord(asked.id, asked.question, asked.answers, docs, readings, linked)

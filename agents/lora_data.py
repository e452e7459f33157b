"""LoRA training data: the record formats, the fixed hold-out split and the general-data mix.

Data (one JSON object a line; :func:`read_examples`):

- chat ``{"messages": [{"role", "content"}, ...]}``: the last message is the assistant's reply;
- ``{"prompt", "completion"}`` (optional ``"system"``);
- intents ``{"text", "label"}``: a fixed classification prompt (:data:`INTENT_SYSTEM`) + the message,
  the label as the reply;
- shared/data questions ``{"question", "answers", "supporting_ids"}``: with a ``corpus.jsonl`` beside
  the file, the sentences around the first answer in the supporting document are the context
  (:data:`QA_SYSTEM`); without one the question alone. FAQ ``{"question", "answer"}``: as asked.

Every record is put on one side of a fixed split by a hash of its id (a question's by its first
supporting document, so a passage never sits on both sides): training reads the ``1 - holdout``
side, ``ragnet eval adapter`` the other, so no held-out example is ever trained on.

Mixing rule: general examples make up ``general_share`` of the mix (``n_general = n_domain *
share / (1 - share)``, drawn with the seed; all of them when there are fewer), so the adapter keeps
answering ordinary questions the way the base model does (forgetting is the known cost of a narrow
fine-tune).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import AgentError

Messages = list[dict[str, str]]

INTENT_SYSTEM = "Reply with the intent label of this customer message."
QA_SYSTEM = "Answer the question from the context with a short phrase."
#: Context words kept around an answer: short sequences keep CPU training cheap.
CONTEXT_WORDS = 60


class TrainingDataError(AgentError):
    """A training or evaluation data file is missing, empty or malformed (the message names the line)."""


@dataclass(frozen=True)
class Example:
    messages: tuple[tuple[str, str], ...]  # (role, content); the last one is the assistant's reply
    key: str  # what the hash split reads
    label: str | None = None  # intents: the label (exact-match scoring)
    answers: tuple[str, ...] = ()  # questions: every gold answer (F1 against the best)

    @property
    def reply(self) -> str:
        return self.messages[-1][1]

    def prompt(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.messages[:-1]]

    def chat(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.messages]


# ---- data ---------------------------------------------------------------------------------------


def held_out(key: str, holdout: float) -> bool:
    """The fixed split: True for the ``holdout`` share of keys (sha256 of the key)."""
    if holdout <= 0:
        return False
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return digest / 2**64 < holdout


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _context(text: str, answer: str) -> str | None:
    """The sentence holding ``answer`` and the one before it, at most CONTEXT_WORDS words."""
    sentences = re.split(r"(?<=[.!?。！？])\s+", text)
    for i, sentence in enumerate(sentences):
        if answer and answer in sentence:
            words = " ".join(sentences[max(0, i - 1) : i + 1]).split()
            if len(words) > CONTEXT_WORDS:
                at = max(0, len(" ".join(sentences[max(0, i - 1) : i]).split()))
                words = words[max(0, min(at, len(words) - CONTEXT_WORDS)) :][:CONTEXT_WORDS]
            return " ".join(words)
    return None


def qa_messages(question: str, context: str | None) -> Messages:
    user = f"Context: {context}\n\nQuestion: {question}" if context else question
    return [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": user}]


def intent_messages(text: str) -> Messages:
    return [{"role": "system", "content": INTENT_SYSTEM}, {"role": "user", "content": text}]


def _load_corpus(path: Path) -> dict[str, str]:
    corpus: dict[str, str] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    doc = json.loads(line)
                    corpus[str(doc.get("id"))] = str(doc.get("text", ""))
    return corpus


def _example(record: Any, corpus: dict[str, str] | None, where: str) -> Example | None:
    if not isinstance(record, dict):
        raise TrainingDataError(f"{where}: expected a JSON object")
    rid = str(record.get("id", ""))
    if "messages" in record:
        msgs = record["messages"]
        ok = isinstance(msgs, list) and len(msgs) >= 2 and all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str) for m in msgs
        )  # fmt: skip
        if not ok or msgs[-1]["role"] != "assistant":
            raise TrainingDataError(
                f"{where}: 'messages' must be a list of {{role, content}} ending with the assistant's reply"
            )
        pairs = tuple((m["role"], m["content"]) for m in msgs)
        return Example(pairs, rid or json.dumps(msgs[:-1], sort_keys=True))
    if "prompt" in record and "completion" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            raise TrainingDataError(f"{where}: 'prompt' and 'completion' must be strings")
        system = record.get("system")
        head = (("system", system),) if isinstance(system, str) and system else ()
        pairs = (*head, ("user", record["prompt"]), ("assistant", record["completion"]))
        return Example(pairs, rid or record["prompt"])
    if "text" in record and "label" in record:
        text, label = record["text"], record["label"]
        if not isinstance(text, str) or not isinstance(label, str) or not label:
            raise TrainingDataError(f"{where}: 'text' and 'label' must be strings")
        pairs = (*tuple((m["role"], m["content"]) for m in intent_messages(text)), ("assistant", label))
        return Example(pairs, rid or text, label=label)
    if "question" in record and ("answers" in record or "answer" in record):
        question = record["question"]
        golds = record.get("answers") or [record.get("answer")]
        if not isinstance(question, str) or not golds or not all(isinstance(g, str) for g in golds):
            raise TrainingDataError(f"{where}: 'question' must be a string and 'answers' a list of strings")
        supporting = [str(s) for s in record.get("supporting_ids") or []]
        context = None
        if corpus and supporting:
            context = _context(corpus.get(supporting[0], ""), golds[0])
            if context is None:
                return None  # the answer is not in its passage: nothing to learn from
        msgs = qa_messages(question, context)
        pairs = (*tuple((m["role"], m["content"]) for m in msgs), ("assistant", golds[0]))
        return Example(pairs, supporting[0] if supporting else rid or question, answers=tuple(golds))
    raise TrainingDataError(
        f"{where}: unknown record; expected {{messages}}, {{prompt, completion}}, {{text, label}} "
        "or {question, answers}"
    )


def read_examples(
    path: Path, *, holdout: float = 0.0, side: str = "train", limit: int | None = None
) -> list[Example]:
    """The examples of one side ('train' or 'held') of the hash split of ``path``, in file order."""
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file")
    corpus = _load_corpus(path.parent / "corpus.jsonl") if path.name != "corpus.jsonl" else None
    out: list[Example] = []
    seen = 0
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise TrainingDataError(f"{path}: cannot be read ({exc.strerror})") from exc
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}, line {n}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingDataError(f"{where}: not valid JSON ({exc.msg})") from exc
                example = _example(record, corpus, where)
                seen += 1
                if example is None or held_out(example.key, holdout) != (side == "held"):
                    continue
                out.append(example)
                if limit and len(out) >= limit:
                    break
        except UnicodeDecodeError as exc:
            raise TrainingDataError(f"{path}: not UTF-8 text") from exc
    if not seen:
        raise TrainingDataError(f"{path}: holds no examples")
    if not out:
        raise TrainingDataError(f"{path}: no examples on the {side} side of the split (holdout {holdout})")
    return out


def balanced(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn with ``seed``; labelled ones round-robin over the labels (balanced)."""
    pool = list(examples)
    random.Random(seed).shuffle(pool)
    by_label: dict[str, list[Example]] = {}
    for e in pool:
        by_label.setdefault(e.label or "", []).append(e)
    out: list[Example] = []
    queues = [by_label[k] for k in sorted(by_label)]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def mix(domain: Sequence[Example], general: Sequence[Example], share: float, seed: int) -> list[Example]:
    """Domain examples plus ``share`` of the whole from ``general`` (drawn with ``seed``)."""
    if not general or share <= 0:
        return list(domain)
    want = round(len(domain) * share / (1 - share)) if share < 1 else len(general)
    picked = random.Random(seed).sample(list(general), min(want, len(general)))
    return [*domain, *picked]

"""`ragnet data faq-banking`: BANKING77 intents as a second FAQ set, split into dev and test intents.

Each intent becomes one FAQ: its question is one canonical customer message (the first message of
the intent, in file order, with 6-16 words), its answer a synthetic sentence naming the intent.
The intent's other messages are the user queries (a seeded sample of ``per_intent``). Intents are
split, not messages: ``dev`` intents may be tuned and trained on, ``test`` intents are reported
only, so a scorer tuned on dev meets questions (and FAQs) it never saw. Out-of-scope queries
(``unmatched.jsonl``: messages of the *other* split's intents, which no FAQ of this split answers)
measure how often a verbatim answer would go to a question no FAQ covers.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from retrieval.errors import IngestError

BANKING = "intents/banking77/train.jsonl"


def _read_intents(path: Path) -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    if not path.is_file():
        raise IngestError(f"{path} not found (BANKING77 in the shared/data intents format)")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            text, label = str(rec.get("text", "")).strip(), str(rec.get("label", "")).strip()
            if text and label and text not in by_label[label]:
                by_label[label].append(text)
    if not by_label:
        raise IngestError(f"{path} has no labelled messages")
    return dict(by_label)


def canonical_message(messages: list[str]) -> str:
    """The first message of 6-16 words (else the first): deterministic, no model involved."""
    for text in messages:
        if 6 <= len(text.split()) <= 16:
            return text
    return messages[0]


def synthetic_answer(label: str) -> str:
    return f"[{label}] This is the support answer about {label.replace('_', ' ')}."


def split_intents(labels: list[str], dev_share: float, seed: int) -> tuple[list[str], list[str]]:
    ordered = sorted(labels)
    random.Random(seed).shuffle(ordered)
    n_dev = round(len(ordered) * dev_share)
    return sorted(ordered[:n_dev]), sorted(ordered[n_dev:])


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_faq_banking(
    data: Path, out: Path, *, per_intent: int = 10, dev_share: float = 0.5, seed: int = 13
) -> dict[str, Any]:
    """Write ``out/{dev,test}/{faqs,queries,unmatched}.jsonl`` and ``out/split.json``."""
    by_label = _read_intents(data / BANKING if data.is_dir() else data)
    dev, test = split_intents(list(by_label), dev_share, seed)
    rng = random.Random(seed)
    summary: dict[str, Any] = {"out": str(out), "seed": seed, "per_intent": per_intent}
    queries_of: dict[str, list[dict[str, Any]]] = {}
    for split, labels in (("dev", dev), ("test", test)):
        faqs, queries = [], []
        for label in labels:
            messages = by_label[label]
            question = canonical_message(messages)
            faq_id = f"faq-{label}"
            faqs.append(
                {
                    "id": faq_id,
                    "question": question,
                    "answer": synthetic_answer(label),
                    "metadata": {"source": "BANKING77", "intent": label, "split": split},
                }
            )
            others = [m for m in messages if m != question]
            for j, text in enumerate(rng.sample(others, min(per_intent, len(others)))):
                queries.append({"id": f"{split}-{label}-{j}", "query": text, "faq_id": faq_id, "lang": "en"})
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "faqs.jsonl", faqs)
        _write(folder / "queries.jsonl", queries)
        queries_of[split] = queries
        summary[split] = {"intents": len(labels), "faqs": len(faqs), "queries": len(queries)}
    for split, other in (("dev", "test"), ("test", "dev")):
        # Questions no FAQ of this split answers: one per intent of the other split.
        seen: set[str] = set()
        unmatched = []
        for q in queries_of[other]:
            if q["faq_id"] not in seen:
                seen.add(q["faq_id"])
                unmatched.append({"id": f"oos-{q['id']}", "query": q["query"], "faq_id": "", "lang": "en"})
        _write(out / split / "unmatched.jsonl", unmatched)
        summary[split]["unmatched"] = len(unmatched)
    split_info = {"seed": seed, "dev_intents": dev, "test_intents": test, "per_intent": per_intent}
    (out / "split.json").write_text(json.dumps(split_info, indent=1) + "\n", encoding="utf-8")
    return summary

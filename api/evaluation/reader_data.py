"""Span examples for the extractive reader from sets in ragnet's formats (shared/data/FORMATS.md).

A set folder holds ``corpus.jsonl`` and ``questions.jsonl``. Each question gives one positive
example per gold passage that holds a gold answer verbatim, and one negative: a related passage
without the answer (another paragraph of the same article, or of the same multi-hop question). A
multi-hop question with a decomposition gives its steps instead ("#1" replaced by the gold answer
of step 1), each read against the question's supporting passages.

``hold_out_titles`` keeps whole articles out (the evaluation's questions and every other question
on the same articles, in every language of the set), so the reader is measured on text it never saw.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

from agents.reader_training import SpanExample, locate
from api.evaluation.data import read_jsonl
from api.evaluation.readings import questions_to_read
from retrieval.errors import IngestError


def id_list(value: object) -> list[str]:
    """A record's ``supporting_ids`` as strings ([] when absent or not a list)."""
    return [str(v) for v in value] if isinstance(value, list) else []


def load_corpus(folder: Path) -> dict[str, dict[str, str]]:
    docs: dict[str, dict[str, str]] = {}
    for rec in read_jsonl(folder / "corpus.jsonl"):
        if not isinstance(rec.get("id"), str) or not isinstance(rec.get("text"), str):
            raise IngestError(f'{folder / "corpus.jsonl"}: every line needs "id" and "text" strings')
        docs[str(rec["id"])] = {"title": str(rec.get("title", "")), "text": str(rec["text"])}
    return docs


def titles_of(folder: Path, limit: int) -> set[str]:
    """The article titles the first ``limit`` questions of a set are asked about."""
    corpus = load_corpus(folder)
    out: set[str] = set()
    for n, rec in enumerate(read_jsonl(folder / "questions.jsonl")):
        if n >= limit:
            break
        for doc_id in id_list(rec.get("supporting_ids")):
            if doc_id in corpus:
                out.add(corpus[doc_id]["title"])
    return out


def span_examples(
    folder: Path, *, limit: int | None = None, hold_out_titles: Collection[str] = (), seed: int = 13
) -> list[SpanExample]:
    corpus = load_corpus(folder)
    by_title: dict[str, list[str]] = defaultdict(list)
    for doc_id, doc in corpus.items():
        by_title[doc["title"]].append(doc_id)
    supporting: dict[str, list[str]] = {}
    for rec in read_jsonl(folder / "questions.jsonl"):
        supporting[str(rec.get("id"))] = id_list(rec.get("supporting_ids"))
    rng = random.Random(seed)
    all_ids = sorted(corpus)
    out: list[SpanExample] = []
    for asked in questions_to_read(folder / "questions.jsonl", limit, steps=True, whole=False):
        gold = [d for d in supporting.get(asked.parent or asked.id, []) if d in corpus]
        if not gold or any(corpus[d]["title"] in hold_out_titles for d in gold):
            continue
        found = [(d, locate(corpus[d]["text"], asked.answers)) for d in gold]
        hits = [(d, f) for d, f in found if f is not None]
        if not hits:
            continue
        doc_id, (start, answer) = hits[0]
        out.append(SpanExample(asked.id, asked.question, corpus[doc_id]["text"], start, answer, folder.name))
        # a related passage without the answer: a sibling of the question's own passages, or the
        # same article's other paragraphs, else any passage
        pool = [d for d, f in found if f is None] or [
            d for d in by_title[corpus[doc_id]["title"]] if d != doc_id
        ]
        pool = [d for d in pool if locate(corpus[d]["text"], asked.answers) is None]
        if not pool:
            pool = [d for d in rng.sample(all_ids, min(5, len(all_ids))) if d not in gold]
            pool = [d for d in pool if locate(corpus[d]["text"], asked.answers) is None]
        if pool:
            neg = rng.choice(pool)
            out.append(
                SpanExample(f"{asked.id}/none", asked.question, corpus[neg]["text"], -1, "", folder.name)
            )
    return out

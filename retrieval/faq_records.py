"""FAQ records and their import formats (CSV, JSON, ``faqs.jsonl``).

A FAQ has one answer and one or more question variants. Only the questions are embedded; a hit
returns the stored answer verbatim. Accepted shapes, per record:
``{"id"?, "question": "...", "answer": "...", "metadata"?}`` (shared/data ``faqs.jsonl``) or
``{"id"?, "questions": ["...", "..."], "answer": "..."}``; CSV columns ``id`` (optional),
``question`` (variants separated by `` || `` or a newline) and ``answer``; other CSV columns become
metadata. A record without an id gets one from its first question, so re-importing a file
updates FAQs instead of duplicating them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.loaders import LoadFailure

_FAQ_NAMESPACE = uuid.UUID("2b7f4d1e-8c39-4e0a-a1d4-6f5c3e9b2a77")
FAQ_SUFFIXES = (".csv", ".json", ".jsonl")
MAX_QUESTIONS = 50
MAX_FIELD_CHARS = 20_000


@dataclass(frozen=True)
class FaqRecord:
    id: str
    questions: tuple[str, ...]
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def content_key(self) -> str:
        return json.dumps([self.questions, self.answer, self.metadata], sort_keys=True, ensure_ascii=False)

    def point_id(self, kb_id: str, version: str, variant: int) -> str:
        return str(uuid.uuid5(_FAQ_NAMESPACE, f"{kb_id}\x00{self.id}\x00{version}\x00{variant}"))

    def payload(self, kb_id: str, version: str, variant: int) -> dict[str, Any]:
        return {
            "kb": kb_id,
            "kind": "faq",
            "state": "staged",
            "doc_id": self.id,
            "version": version,
            "position": variant,
            "title": self.questions[0],
            "text": self.questions[variant],
            "answer": self.answer,
            "meta": dict(self.metadata),
        }


def faq_id_for(question: str) -> str:
    return "faq-" + hashlib.sha256(question.strip().lower().encode()).hexdigest()[:12]


def make_record(raw: Any) -> FaqRecord:
    """Validate one raw record; ValueError with a readable reason otherwise."""
    if not isinstance(raw, dict):
        raise ValueError("a FAQ must be an object with question(s) and answer")
    questions: list[str] = []
    if isinstance(raw.get("questions"), list):
        questions = [str(q).strip() for q in raw["questions"] if str(q).strip()]
    elif isinstance(raw.get("question"), str):
        questions = [q.strip() for q in raw["question"].replace("||", "\n").split("\n") if q.strip()]
    answer = raw.get("answer")
    if not questions:
        raise ValueError("a FAQ needs at least one non-empty question")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("a FAQ needs a non-empty answer")
    if len(questions) > MAX_QUESTIONS:
        raise ValueError(f"a FAQ may have at most {MAX_QUESTIONS} question variants")
    if any(len(q) > MAX_FIELD_CHARS for q in questions) or len(answer) > MAX_FIELD_CHARS:
        raise ValueError(f"questions and answers are limited to {MAX_FIELD_CHARS} characters")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    faq_id = str(raw.get("id") or "").strip() or faq_id_for(questions[0])
    if len(faq_id) > 256:
        raise ValueError("a FAQ id is at most 256 characters")
    unique = tuple(dict.fromkeys(questions))
    return FaqRecord(faq_id, unique, answer.strip(), metadata)


def read_faqs(path: Path, *, max_bytes: int) -> Iterator[FaqRecord | LoadFailure]:
    """Records from a .csv, .json (an array) or .jsonl file; bad records become LoadFailures."""
    suffix = path.suffix.lower()
    if suffix not in FAQ_SUFFIXES:
        yield LoadFailure(
            str(path), f"unsupported FAQ file type {suffix or '(none)'}; use .csv, .json or .jsonl"
        )
        return
    try:
        if path.stat().st_size > max_bytes:
            yield LoadFailure(str(path), f"file is over the {max_bytes}-byte limit")
            return
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        yield LoadFailure(str(path), f"cannot read: {exc.strerror or exc}")
        return
    except UnicodeDecodeError:
        yield LoadFailure(str(path), "not UTF-8 text")
        return
    yield from parse_faqs(text, suffix, str(path))


def parse_faqs(text: str, suffix: str, source: str) -> Iterator[FaqRecord | LoadFailure]:
    raws: Sequence[tuple[str, Any]]
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield LoadFailure(source, f"invalid JSON: {exc.msg} (line {exc.lineno})")
            return
        if isinstance(data, dict) and isinstance(data.get("faqs"), list):
            data = data["faqs"]
        if not isinstance(data, list):
            yield LoadFailure(source, 'a FAQ .json file holds an array of FAQs (or {"faqs": [...]})')
            return
        raws = [(f"{source}[{i}]", r) for i, r in enumerate(data)]
    elif suffix == ".jsonl":
        parsed: list[tuple[str, Any]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                parsed.append((f"{source}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as exc:
                parsed.append(
                    (f"{source}:{lineno}", LoadFailure(f"{source}:{lineno}", f"invalid JSON: {exc.msg}"))
                )
        raws = parsed
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "question" not in fields or "answer" not in fields:
            yield LoadFailure(
                source, "a FAQ .csv file needs a header row with 'question' and 'answer' columns"
            )
            return
        rows: list[tuple[str, Any]] = []
        for lineno, row in enumerate(reader, 2):
            norm = {str(k).strip().lower(): (v or "") for k, v in row.items() if k is not None}
            extra = {k: v for k, v in norm.items() if k not in {"id", "question", "answer"} and v}
            rows.append((f"{source}:{lineno}", {**norm, "metadata": extra}))
        raws = rows
    for where, raw in raws:
        if isinstance(raw, LoadFailure):
            yield raw
            continue
        try:
            yield make_record(raw)
        except ValueError as exc:
            yield LoadFailure(where, str(exc))

"""Reading evaluation files (shared/data/FORMATS.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import IngestError


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    supporting_ids: list[str]
    lang: str


def set_folder(data: Path, name: str) -> Path:
    """A public set's folder (``rc/xquad_en`` under ``data``, or an absolute path); it must hold
    corpus.jsonl and questions.jsonl."""
    folder = Path(name) if Path(name).is_absolute() else data / name
    if not (folder / "questions.jsonl").is_file() or not (folder / "corpus.jsonl").is_file():
        raise IngestError(f"{folder} holds no corpus.jsonl and questions.jsonl")
    return folder


def read_jsonl(path: Path) -> Iterator[dict[str, object]]:
    if not path.is_file():
        raise IngestError(f"{path} is not a file")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc


def read_questions(path: Path, limit: int | None = None) -> list[Question]:
    out: list[Question] = []
    for rec in read_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(rec.get("question"), str):
            raise IngestError(f'{path}: every line needs a "question" string')
        answers = rec.get("answers") or []
        supporting = rec.get("supporting_ids") or []
        out.append(
            Question(
                id=str(rec.get("id", len(out))),
                question=str(rec["question"]),
                answers=[str(a) for a in answers] if isinstance(answers, list) else [],
                supporting_ids=[str(s) for s in supporting] if isinstance(supporting, list) else [],
                lang=str(rec.get("lang", "en")),
            )
        )
    if not out:
        raise IngestError(f"{path} holds no questions")
    return out


def read_queries(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(query, faq_id) pairs from a FAQ ``queries.jsonl``."""
    out: list[tuple[str, str]] = []
    for rec in read_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(rec.get("query"), str) or not rec.get("faq_id"):
            raise IngestError(f'{path}: every line needs "query" and "faq_id"')
        out.append((str(rec["query"]), str(rec["faq_id"])))
    if not out:
        raise IngestError(f"{path} has no queries")
    return out

"""Bookkeeping in SQL (SQLite in WAL mode; PostgreSQL by URL): knowledge bases, documents, FAQs.

A knowledge base has an immutable ``id`` (what the index stores) and a ``name`` users see and may
rename. A document or FAQ row records its content hash, its live ``version`` and its state:
ingestion marks it ``indexing`` (with the version being written) before touching the index and
``indexed`` once that version is published; a crash leaves ``indexing`` rows that the next run
redoes (point ids are deterministic, so nothing is duplicated).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from retrieval.errors import StoreError

metadata_obj = MetaData()

kbs = Table(
    "kbs",
    metadata_obj,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("chunking", String(16), nullable=False, default="heading"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

documents = Table(
    "documents",
    metadata_obj,
    Column("kb_id", String(32), primary_key=True),
    Column("doc_id", String(512), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("content_hash", String(64), nullable=False),
    Column("text_hash", String(64), nullable=False, default="", index=True),  # dedup: the text alone
    Column("version", String(32), nullable=False, default=""),
    Column("chunks", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),  # indexing | indexed
    Column("metadata", JSON, nullable=False, default=dict),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

faqs = Table(
    "faqs",
    metadata_obj,
    Column("kb_id", String(32), primary_key=True),
    Column("faq_id", String(256), primary_key=True),
    Column("questions", JSON, nullable=False),
    Column("answer", Text, nullable=False),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("content_hash", String(64), nullable=False),
    Column("version", String(32), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata_obj,
    Column("id", String(32), primary_key=True),
    Column("kb_id", String(32), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # documents | faqs
    Column("status", String(16), nullable=False),  # queued | running | done | failed | cancelled
    Column("items", JSON, nullable=False),  # what to ingest: staged files and their options
    Column("cursor", Integer, nullable=False, default=0),  # items finished (resume point)
    Column("total", Integer, nullable=False, default=0),
    Column("done", Integer, nullable=False, default=0),
    Column("failures", JSON, nullable=False, default=list),
    Column("message", Text, nullable=False, default=""),
    Column("cancel", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Per-knowledge-base answering options (a table of its own, so that databases written before it
# gain it by create_all, with no migration).
kb_options = Table(
    "kb_options",
    metadata_obj,
    Column("kb_id", String(32), primary_key=True),
    Column("strict", Integer, nullable=False, default=0),  # 1: "not in the knowledge base", no fallback
)

api_keys = Table(
    "api_keys",
    metadata_obj,
    Column("id", String(16), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # admin | reader
    Column("kbs", JSON, nullable=False),  # knowledge-base names, or ["*"]
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("name", name="uq_api_keys_name"),
)

INDEXING = "indexing"
INDEXED = "indexed"

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    id: str
    name: str
    description: str
    chunking: str
    created_at: dt.datetime
    documents: int = 0
    chunks: int = 0
    faqs: int = 0
    strict: bool = False  # answer "not in the knowledge base" instead of the base model


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return secrets.token_hex(8)


class MetadataStore:
    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(self._engine, "connect", _sqlite_pragmas)
        existing = inspect(self._engine)
        if existing.has_table("kbs") and "id" not in {c["name"] for c in existing.get_columns("kbs")}:
            raise StoreError(
                f"the database at {url} was written by ragnet 0.1 (before knowledge-base ids); "
                "move the data folder aside and ingest again"
            )
        metadata_obj.create_all(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The database engine, for stores that keep their own tables in the same database."""
        return self._engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def connect(self) -> Connection:
        return self._engine.connect()

    # --- knowledge bases ---------------------------------------------------------------
    def create_kb(self, name: str, description: str = "", chunking: str = "heading") -> KnowledgeBaseInfo:
        info = KnowledgeBaseInfo(new_id(), name, description, chunking, now())
        with self._engine.begin() as conn:
            conn.execute(
                insert(kbs).values(
                    id=info.id,
                    name=name,
                    description=description,
                    chunking=chunking,
                    created_at=info.created_at,
                )
            )
        return info

    def ensure_kb(self, name: str) -> KnowledgeBaseInfo:
        kb = self.get_kb(name)
        return kb if kb is not None else self.create_kb(name)

    def get_kb(self, name: str) -> KnowledgeBaseInfo | None:
        rows = self.list_kbs(name=name)
        return rows[0] if rows else None

    def get_kb_by_id(self, kb_id: str) -> KnowledgeBaseInfo | None:
        rows = self.list_kbs(kb_id=kb_id)
        return rows[0] if rows else None

    def kb_exists(self, name: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(kbs.c.id).where(kbs.c.name == name)).first() is not None

    def list_kbs(self, *, name: str | None = None, kb_id: str | None = None) -> list[KnowledgeBaseInfo]:
        docs = (
            select(
                documents.c.kb_id,
                func.count(documents.c.doc_id).label("n"),
                func.coalesce(func.sum(documents.c.chunks), 0).label("chunks"),
            )
            .group_by(documents.c.kb_id)
            .subquery()
        )
        faq_counts = (
            select(faqs.c.kb_id, func.count(faqs.c.faq_id).label("n")).group_by(faqs.c.kb_id).subquery()
        )
        query = (
            select(kbs, docs.c.n, docs.c.chunks, faq_counts.c.n, kb_options.c.strict)
            .select_from(
                kbs.outerjoin(docs, docs.c.kb_id == kbs.c.id)
                .outerjoin(faq_counts, faq_counts.c.kb_id == kbs.c.id)
                .outerjoin(kb_options, kb_options.c.kb_id == kbs.c.id)
            )
            .order_by(kbs.c.name)
        )
        if name is not None:
            query = query.where(kbs.c.name == name)
        if kb_id is not None:
            query = query.where(kbs.c.id == kb_id)
        with self._engine.connect() as conn:
            return [
                KnowledgeBaseInfo(
                    id=r.id,
                    name=r.name,
                    description=r.description,
                    chunking=r.chunking,
                    created_at=r.created_at,
                    documents=int(r[5] or 0),
                    chunks=int(r[6] or 0),
                    faqs=int(r[7] or 0),
                    strict=bool(r[8] or 0),
                )
                for r in conn.execute(query)
            ]

    def update_kb(self, kb_id: str, **values: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(kbs).where(kbs.c.id == kb_id).values(**values))

    def set_kb_strict(self, kb_id: str, strict: bool) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(kb_options).where(kb_options.c.kb_id == kb_id))
            conn.execute(insert(kb_options).values(kb_id=kb_id, strict=int(strict)))

    def delete_kb(self, kb_id: str) -> None:
        with self._engine.begin() as conn:
            for table in (documents, faqs, jobs, kb_options):
                conn.execute(delete(table).where(table.c.kb_id == kb_id))
            conn.execute(delete(kbs).where(kbs.c.id == kb_id))

    # --- documents ---------------------------------------------------------------------
    def document_states(self, kb_id: str, doc_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_hash, status) for those of ``doc_ids`` that are known."""
        return self._states(documents, documents.c.doc_id, kb_id, doc_ids)

    def faq_states(self, kb_id: str, faq_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        return self._states(faqs, faqs.c.faq_id, kb_id, faq_ids)

    def _states(self, table: Table, key: Any, kb_id: str, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        wanted = list(ids)
        out: dict[str, tuple[str, str]] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    select(key, table.c.content_hash, table.c.status).where(
                        table.c.kb_id == kb_id, key.in_(wanted[start : start + 500])
                    )
                )
                out.update({r[0]: (r[1], r[2]) for r in rows})
        return out

    def find_by_text(self, kb_id: str, text_hash: str) -> str | None:
        """The doc_id of an indexed document of this kb with exactly this text, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(documents.c.doc_id).where(
                    documents.c.kb_id == kb_id,
                    documents.c.text_hash == text_hash,
                    documents.c.status == INDEXED,
                )
            ).first()
        return None if row is None else str(row[0])

    def mark(self, kb_id: str, rows: Iterable[dict[str, Any]], status: str) -> None:
        """Upsert document rows (doc_id, title, source, content_hash, version, chunks, metadata)."""
        self._upsert(documents, documents.c.doc_id, "doc_id", kb_id, rows, status)

    def mark_faqs(self, kb_id: str, rows: Iterable[dict[str, Any]], status: str) -> None:
        self._upsert(faqs, faqs.c.faq_id, "faq_id", kb_id, rows, status)

    def _upsert(
        self, table: Table, key: Any, name: str, kb_id: str, rows: Iterable[dict[str, Any]], status: str
    ) -> None:
        stamp = now()
        with self._engine.begin() as conn:
            for row in rows:
                values = {**row, "status": status, "updated_at": stamp}
                updated = conn.execute(
                    update(table).where(table.c.kb_id == kb_id, key == row[name]).values(**values)
                )
                if updated.rowcount == 0:
                    conn.execute(insert(table).values(kb_id=kb_id, **values))

    def list_documents(
        self, kb_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        return self._list(documents, documents.c.doc_id, kb_id, offset, limit)

    def list_faqs(self, kb_id: str, offset: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        return self._list(faqs, faqs.c.faq_id, kb_id, offset, limit)

    def _list(
        self, table: Table, key: Any, kb_id: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        with self._engine.connect() as conn:
            total = conn.execute(
                select(func.count()).select_from(table).where(table.c.kb_id == kb_id)
            ).scalar_one()
            rows = conn.execute(
                select(table).where(table.c.kb_id == kb_id).order_by(key).offset(offset).limit(limit)
            )
            return [dict(r._mapping) for r in rows], int(total)

    def get_document(self, kb_id: str, doc_id: str) -> dict[str, Any] | None:
        return self._get(documents, documents.c.doc_id, kb_id, doc_id)

    def get_faq(self, kb_id: str, faq_id: str) -> dict[str, Any] | None:
        return self._get(faqs, faqs.c.faq_id, kb_id, faq_id)

    def _get(self, table: Table, key: Any, kb_id: str, value: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.kb_id == kb_id, key == value)).first()
        return None if row is None else dict(row._mapping)

    def delete_document(self, kb_id: str, doc_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.kb_id == kb_id, documents.c.doc_id == doc_id))

    def delete_faq(self, kb_id: str, faq_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(faqs).where(faqs.c.kb_id == kb_id, faqs.c.faq_id == faq_id))

    def count_documents(self, kb_id: str, status: str | None = None) -> int:
        query = select(func.count()).select_from(documents).where(documents.c.kb_id == kb_id)
        if status is not None:
            query = query.where(documents.c.status == status)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def unfinished(self, kb_id: str) -> list[tuple[str, str, str]]:
        """(kind, id, version) of documents and FAQs left ``indexing`` by a crash."""
        with self._engine.connect() as conn:
            docs = conn.execute(
                select(documents.c.doc_id, documents.c.version).where(
                    documents.c.kb_id == kb_id, documents.c.status == INDEXING
                )
            ).all()
            fqs = conn.execute(
                select(faqs.c.faq_id, faqs.c.version).where(faqs.c.kb_id == kb_id, faqs.c.status == INDEXING)
            ).all()
        return [("chunk", r[0], r[1]) for r in docs] + [("faq", r[0], r[1]) for r in fqs]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()

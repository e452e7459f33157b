"""Knowledge bases and documents' bookkeeping in SQL (SQLite in WAL mode; PostgreSQL by URL).

A document row records its content hash and state. Ingestion marks a document ``indexing``
before touching the index and ``indexed`` after; a crash leaves ``indexing`` rows that the next
ingest of the same files redoes (point ids are deterministic, so nothing is duplicated).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

metadata_obj = MetaData()

kbs = Table(
    "kbs",
    metadata_obj,
    Column("name", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

documents = Table(
    "documents",
    metadata_obj,
    Column("kb", String(64), ForeignKey("kbs.name", ondelete="CASCADE"), primary_key=True),
    Column("doc_id", String(512), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("content_hash", String(64), nullable=False),
    Column("chunks", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),  # indexing | indexed
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

INDEXING = "indexing"
INDEXED = "indexed"


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    created_at: dt.datetime
    documents: int
    chunks: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MetadataStore:
    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(self._engine, "connect", _sqlite_pragmas)
        metadata_obj.create_all(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    # --- knowledge bases ---------------------------------------------------------------
    def ensure_kb(self, name: str) -> None:
        with self._engine.begin() as conn:
            if conn.execute(select(kbs.c.name).where(kbs.c.name == name)).first() is None:
                conn.execute(insert(kbs).values(name=name, created_at=_now()))

    def kb_exists(self, name: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(kbs.c.name).where(kbs.c.name == name)).first() is not None

    def list_kbs(self) -> list[KnowledgeBaseInfo]:
        query = (
            select(
                kbs.c.name,
                kbs.c.created_at,
                func.count(documents.c.doc_id),
                func.coalesce(func.sum(documents.c.chunks), 0),
            )
            .select_from(kbs.outerjoin(documents, documents.c.kb == kbs.c.name))
            .group_by(kbs.c.name, kbs.c.created_at)
            .order_by(kbs.c.name)
        )
        with self._engine.connect() as conn:
            return [KnowledgeBaseInfo(r[0], r[1], int(r[2]), int(r[3])) for r in conn.execute(query)]

    # --- documents ---------------------------------------------------------------------
    def document_states(self, kb: str, doc_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_hash, status) for those of ``doc_ids`` that are known."""
        ids = list(doc_ids)
        out: dict[str, tuple[str, str]] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(documents.c.doc_id, documents.c.content_hash, documents.c.status).where(
                        documents.c.kb == kb, documents.c.doc_id.in_(ids[start : start + 500])
                    )
                )
                out.update({r[0]: (r[1], r[2]) for r in rows})
        return out

    def mark(self, kb: str, rows: Iterable[dict[str, Any]], status: str) -> None:
        """Upsert document rows (doc_id, title, source, content_hash, chunks) with ``status``."""
        now = _now()
        with self._engine.begin() as conn:
            for row in rows:
                values = {**row, "status": status, "updated_at": now}
                updated = conn.execute(
                    update(documents)
                    .where(documents.c.kb == kb, documents.c.doc_id == row["doc_id"])
                    .values(**values)
                )
                if updated.rowcount == 0:
                    conn.execute(insert(documents).values(kb=kb, **values))

    def count_documents(self, kb: str, status: str | None = None) -> int:
        query = select(func.count()).select_from(documents).where(documents.c.kb == kb)
        if status is not None:
            query = query.where(documents.c.status == status)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delete_kb(self, name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.kb == name))
            conn.execute(delete(kbs).where(kbs.c.name == name))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()

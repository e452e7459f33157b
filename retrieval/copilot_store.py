"""The copilot's records in SQL, beside the metadata store's tables: assistants, sessions and their
messages, handoffs to a person, and feedback on answers.

Every write is one transaction: an exchange (the customer's message, the answer, and the handoff it
may open) is stored whole or not at all, so a crash never leaves a question without its answer or
a handoff without its message. Message order within a session is a ``seq`` column with a unique
constraint; concurrent appends to one session are serialised (a lock in-process; the constraint
and a retry across processes). Deleting an assistant or a session deletes what hangs off it.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterable, Iterator
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
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from retrieval.errors import RetrievalError

tables = MetaData()

assistants = Table(
    "assistants",
    tables,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("config", JSON, nullable=False),  # kbs (ids), strict, thresholds, replies, prompt ...
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

chat_sessions = Table(
    "chat_sessions",
    tables,
    Column("id", String(32), primary_key=True),
    Column("assistant_id", String(32), nullable=False, index=True),
    Column("title", Text, nullable=False, default=""),
    Column("user", String(128), nullable=False, default=""),  # the client's label for the customer
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

chat_messages = Table(
    "chat_messages",
    tables,
    Column("id", String(32), primary_key=True),
    Column("session_id", String(32), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),  # user | assistant
    Column("content", Text, nullable=False),
    Column("answer_source", String(16), nullable=True),  # assistant turns: faq | documents | ...
    Column("data", JSON, nullable=False, default=dict),  # citations, rewrite, confidence, trace ...
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("session_id", "seq", name="uq_chat_messages_seq"),
)

handoffs = Table(
    "handoffs",
    tables,
    Column("id", String(32), primary_key=True),
    Column("assistant_id", String(32), nullable=False, index=True),
    Column("session_id", String(32), nullable=True, index=True),  # none: a stateless request
    Column("message_id", String(32), nullable=True),  # the answer that handed over
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | taken | closed
    Column("assignee", String(128), nullable=False, default=""),
    Column("note", Text, nullable=False, default=""),
    Column("webhook", JSON, nullable=False, default=dict),  # status, attempts, last_error
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    tables,
    Column("id", String(32), primary_key=True),
    Column("message_id", String(32), nullable=False, unique=True),  # one rating per answer: the last
    Column("session_id", String(32), nullable=False, index=True),
    Column("assistant_id", String(32), nullable=False, index=True),
    Column("rating", String(8), nullable=False),  # up | down
    Column("comment", Text, nullable=False, default=""),
    Column("faq", JSON, nullable=True),  # {"kb", "faq_id"} once turned into a FAQ
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

OPEN, TAKEN, CLOSED = "open", "taken", "closed"
#: Where a handoff may go from each state (a closed handoff stays closed).
HANDOFF_MOVES = {OPEN: {TAKEN, CLOSED}, TAKEN: {CLOSED, OPEN}, CLOSED: set[str]()}


class CopilotRecordError(RetrievalError):
    """A copilot record that does not exist, or a change it does not allow."""


class RecordNotFound(CopilotRecordError):
    pass


class RecordConflict(CopilotRecordError):
    pass


@dataclass(frozen=True)
class AssistantRecord:
    id: str
    name: str
    config: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return secrets.token_hex(16)


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class CopilotStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._append = threading.Lock()
        tables.create_all(engine)

    # --- assistants ------------------------------------------------------------------------
    def create_assistant(self, name: str, config: dict[str, Any]) -> AssistantRecord:
        stamp = now()
        record = AssistantRecord(secrets.token_hex(8), name, dict(config), stamp, stamp)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(assistants).values(
                        id=record.id, name=name, config=record.config, created_at=stamp, updated_at=stamp
                    )
                )
        except IntegrityError:
            raise RecordConflict(f"an assistant named {name!r} already exists") from None
        return record

    def get_assistant(self, key: str) -> AssistantRecord | None:
        """By id or by name."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(assistants).where((assistants.c.id == key) | (assistants.c.name == key))
            ).first()
        return None if row is None else AssistantRecord(**_row(row))

    def list_assistants(self) -> list[AssistantRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(assistants).order_by(assistants.c.name))
            return [AssistantRecord(**_row(r)) for r in rows]

    def update_assistant(
        self, assistant_id: str, *, name: str | None = None, config: dict[str, Any] | None = None
    ) -> AssistantRecord:
        values: dict[str, Any] = {"updated_at": now()}
        if name is not None:
            values["name"] = name
        if config is not None:
            values["config"] = dict(config)
        try:
            with self._engine.begin() as conn:
                done = conn.execute(
                    update(assistants).where(assistants.c.id == assistant_id).values(**values)
                )
        except IntegrityError:
            raise RecordConflict(f"an assistant named {name!r} already exists") from None
        if not done.rowcount:
            raise RecordNotFound(f"no assistant {assistant_id!r}")
        found = self.get_assistant(assistant_id)
        assert found is not None
        return found

    def delete_assistant(self, assistant_id: str) -> None:
        """The assistant, its sessions, their messages, feedback and handoffs."""
        with self._engine.begin() as conn:
            sessions = select(chat_sessions.c.id).where(chat_sessions.c.assistant_id == assistant_id)
            conn.execute(delete(chat_messages).where(chat_messages.c.session_id.in_(sessions)))
            for table in (feedback, handoffs, chat_sessions):
                conn.execute(delete(table).where(table.c.assistant_id == assistant_id))
            conn.execute(delete(assistants).where(assistants.c.id == assistant_id))

    # --- sessions --------------------------------------------------------------------------
    def create_session(self, assistant_id: str, title: str = "", user: str = "") -> dict[str, Any]:
        stamp = now()
        row = {
            "id": new_id(),
            "assistant_id": assistant_id,
            "title": title,
            "user": user,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._engine.begin() as conn:
            conn.execute(insert(chat_sessions).values(**row))
        return {**row, "messages": 0}

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        rows, _ = self._sessions(chat_sessions.c.id == session_id, 0, 1)
        return rows[0] if rows else None

    def list_sessions(
        self, assistant_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        return self._sessions(chat_sessions.c.assistant_id == assistant_id, offset, limit)

    def _sessions(self, where: Any, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        counts = (
            select(chat_messages.c.session_id, func.count().label("n"))
            .group_by(chat_messages.c.session_id)
            .subquery()
        )
        query = (
            select(chat_sessions, func.coalesce(counts.c.n, 0).label("messages"))
            .select_from(chat_sessions.outerjoin(counts, counts.c.session_id == chat_sessions.c.id))
            .where(where)
            .order_by(chat_sessions.c.updated_at.desc(), chat_sessions.c.id)
        )
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(chat_sessions).where(where)).scalar_one()
            rows = conn.execute(query.offset(offset).limit(limit))
            return [_row(r) for r in rows], int(total)

    def rename_session(self, session_id: str, title: str) -> dict[str, Any]:
        with self._engine.begin() as conn:
            done = conn.execute(
                update(chat_sessions).where(chat_sessions.c.id == session_id).values(title=title)
            )
        if not done.rowcount:
            raise RecordNotFound(f"no session {session_id!r}")
        found = self.get_session(session_id)
        assert found is not None
        return found

    def delete_session(self, session_id: str) -> None:
        with self._engine.begin() as conn:
            for table, key in (
                (chat_messages, chat_messages.c.session_id),
                (feedback, feedback.c.session_id),
                (handoffs, handoffs.c.session_id),
                (chat_sessions, chat_sessions.c.id),
            ):
                conn.execute(delete(table).where(key == session_id))

    # --- messages --------------------------------------------------------------------------
    def messages(self, session_id: str) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return _messages(conn, [session_id]).get(session_id, [])

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(chat_messages).where(chat_messages.c.id == message_id)).first()
        return None if row is None else _row(row)

    def append_exchange(
        self,
        session_id: str,
        user: dict[str, Any],
        answer: dict[str, Any],
        handoff: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        """Store a customer message and its answer (``role`` is set here; ``content``,
        ``answer_source``, ``data``), and the handoff the answer opened, in one transaction.
        Returns the three rows as stored."""
        for attempt in range(3):
            try:
                with self._append, self._engine.begin() as conn:
                    return self._append_in(conn, session_id, user, answer, handoff)
            except IntegrityError:  # another process took the same seq: read it again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _append_in(
        self,
        conn: Connection,
        session_id: str,
        user: dict[str, Any],
        answer: dict[str, Any],
        handoff: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        session = conn.execute(select(chat_sessions).where(chat_sessions.c.id == session_id)).first()
        if session is None:
            raise RecordNotFound(f"no session {session_id!r}")
        last = conn.execute(
            select(func.max(chat_messages.c.seq)).where(chat_messages.c.session_id == session_id)
        ).scalar()
        seq = int(last or 0)
        stamp = now()
        rows = []
        for role, message in (("user", user), ("assistant", answer)):
            seq += 1
            row = {
                "id": new_id(),
                "session_id": session_id,
                "seq": seq,
                "role": role,
                "content": message["content"],
                "answer_source": message.get("answer_source"),
                "data": dict(message.get("data") or {}),
                "created_at": stamp,
            }
            conn.execute(insert(chat_messages).values(**row))
            rows.append(row)
        values: dict[str, Any] = {"updated_at": stamp}
        if not session.title:
            values["title"] = " ".join(user["content"].split())[:80]
        conn.execute(update(chat_sessions).where(chat_sessions.c.id == session_id).values(**values))
        opened = None
        if handoff is not None:
            opened = self._handoff_row(session.assistant_id, session_id, rows[1]["id"], handoff, stamp)
            conn.execute(insert(handoffs).values(**opened))
        return rows[0], rows[1], opened

    # --- handoffs --------------------------------------------------------------------------
    @staticmethod
    def _handoff_row(
        assistant_id: str,
        session_id: str | None,
        message_id: str | None,
        handoff: dict[str, Any],
        stamp: dt.datetime,
    ) -> dict[str, Any]:
        return {
            "id": new_id(),
            "assistant_id": assistant_id,
            "session_id": session_id,
            "message_id": message_id,
            "reason": handoff["reason"],
            "status": OPEN,
            "assignee": "",
            "note": "",
            "webhook": dict(handoff.get("webhook") or {"status": "none"}),
            "created_at": stamp,
            "updated_at": stamp,
        }

    def open_handoff(self, assistant_id: str, handoff: dict[str, Any]) -> dict[str, Any]:
        """A handoff without a stored session (a stateless request)."""
        row = self._handoff_row(assistant_id, None, None, handoff, now())
        with self._engine.begin() as conn:
            conn.execute(insert(handoffs).values(**row))
        return row

    def open_handoff_for(self, session_id: str) -> dict[str, Any] | None:
        """The session's handoff that is not closed yet, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(handoffs)
                .where(handoffs.c.session_id == session_id, handoffs.c.status != CLOSED)
                .order_by(handoffs.c.created_at.desc())
            ).first()
        return None if row is None else _row(row)

    def get_handoff(self, handoff_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
        return None if row is None else _row(row)

    def list_handoffs(
        self, assistant_ids: Iterable[str], status: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        where: list[ColumnElement[bool]] = [handoffs.c.assistant_id.in_(list(assistant_ids))]
        if status is not None:
            where.append(handoffs.c.status == status)
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(handoffs).where(*where)).scalar_one()
            rows = conn.execute(
                select(handoffs)
                .where(*where)
                .order_by(handoffs.c.created_at.desc(), handoffs.c.id)
                .offset(offset)
                .limit(limit)
            )
            return [_row(r) for r in rows], int(total)

    def update_handoff(
        self,
        handoff_id: str,
        *,
        status: str | None = None,
        assignee: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        with self._engine.begin() as conn:
            row = conn.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
            if row is None:
                raise RecordNotFound(f"no handoff {handoff_id!r}")
            values: dict[str, Any] = {"updated_at": now()}
            if status is not None and status != row.status:
                if status not in HANDOFF_MOVES[row.status]:
                    raise RecordConflict(f"a handoff that is {row.status} cannot become {status}")
                values["status"] = status
            if assignee is not None:
                values["assignee"] = assignee
            if note is not None:
                values["note"] = note
            conn.execute(update(handoffs).where(handoffs.c.id == handoff_id).values(**values))
        found = self.get_handoff(handoff_id)
        assert found is not None
        return found

    def set_webhook_state(self, handoff_id: str, state: dict[str, Any]) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(handoffs).where(handoffs.c.id == handoff_id).values(webhook=dict(state)))

    def pending_webhooks(self) -> list[dict[str, Any]]:
        """Handoffs whose webhook was never delivered nor given up (e.g. the process stopped)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(handoffs).order_by(handoffs.c.created_at)).all()
        return [_row(r) for r in rows if (r.webhook or {}).get("status") == "pending"]

    # --- feedback --------------------------------------------------------------------------
    def put_feedback(
        self, message: dict[str, Any], assistant_id: str, rating: str, comment: str
    ) -> dict[str, Any]:
        """Rate an answer (a second rating of the same answer replaces the first)."""
        stamp = now()
        with self._engine.begin() as conn:
            row = conn.execute(select(feedback).where(feedback.c.message_id == message["id"])).first()
            if row is None:
                conn.execute(
                    insert(feedback).values(
                        id=new_id(),
                        message_id=message["id"],
                        session_id=message["session_id"],
                        assistant_id=assistant_id,
                        rating=rating,
                        comment=comment,
                        faq=None,
                        created_at=stamp,
                        updated_at=stamp,
                    )
                )
            else:
                conn.execute(
                    update(feedback)
                    .where(feedback.c.id == row.id)
                    .values(rating=rating, comment=comment, updated_at=stamp)
                )
            found = conn.execute(select(feedback).where(feedback.c.message_id == message["id"])).first()
        assert found is not None
        return _row(found)

    def get_feedback(self, feedback_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(feedback).where(feedback.c.id == feedback_id)).first()
        return None if row is None else _row(row)

    def feedback_for(self, message_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(message_ids)
        if not ids:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(select(feedback).where(feedback.c.message_id.in_(ids)))
            return {r.message_id: _row(r) for r in rows}

    def list_feedback(
        self, assistant_ids: Iterable[str], rating: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Feedback, newest first, each with the rated answer and the question it answered."""
        where: list[ColumnElement[bool]] = [feedback.c.assistant_id.in_(list(assistant_ids))]
        if rating is not None:
            where.append(feedback.c.rating == rating)
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(feedback).where(*where)).scalar_one()
            rows = [
                _row(r)
                for r in conn.execute(
                    select(feedback)
                    .where(*where)
                    .order_by(feedback.c.updated_at.desc(), feedback.c.id)
                    .offset(offset)
                    .limit(limit)
                )
            ]
            for row in rows:
                row["answer"], row["question"] = _exchange_of(conn, row["message_id"])
        return rows, int(total)

    def exchange(self, message_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(an answer, the customer message just before it)."""
        with self._engine.connect() as conn:
            return _exchange_of(conn, message_id)

    def mark_feedback_faq(self, feedback_id: str, kb: str, faq_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(feedback)
                .where(feedback.c.id == feedback_id)
                .values(faq={"kb": kb, "faq_id": faq_id}, updated_at=now())
            )

    # --- export ----------------------------------------------------------------------------
    def export(self, session_ids: list[str]) -> Iterator[dict[str, Any]]:
        """Each session with its messages and their feedback, in batches (a large assistant's
        history is never held in memory whole)."""
        for start in range(0, len(session_ids), 50):
            batch = session_ids[start : start + 50]
            with self._engine.connect() as conn:
                sessions = {
                    r.id: _row(r)
                    for r in conn.execute(select(chat_sessions).where(chat_sessions.c.id.in_(batch)))
                }
                messages = _messages(conn, batch)
                ratings = {
                    r.message_id: _row(r)
                    for r in conn.execute(select(feedback).where(feedback.c.session_id.in_(batch)))
                }
            for sid in batch:
                if sid in sessions:
                    rows = messages.get(sid, [])
                    yield {
                        **sessions[sid],
                        "messages": [{**m, "feedback": ratings.get(m["id"])} for m in rows],
                    }

    def session_ids(self, assistant_id: str) -> list[str]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(chat_sessions.c.id)
                .where(chat_sessions.c.assistant_id == assistant_id)
                .order_by(chat_sessions.c.created_at, chat_sessions.c.id)
            )
            return [r[0] for r in rows]


def _messages(conn: Connection, session_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    rows = conn.execute(
        select(chat_messages)
        .where(chat_messages.c.session_id.in_(session_ids))
        .order_by(chat_messages.c.session_id, chat_messages.c.seq)
    )
    for r in rows:
        out.setdefault(r.session_id, []).append(_row(r))
    return out


def _exchange_of(conn: Connection, message_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """An answer and the customer message just before it."""
    answer = conn.execute(select(chat_messages).where(chat_messages.c.id == message_id)).first()
    if answer is None:
        return None, None
    question = conn.execute(
        select(chat_messages).where(
            chat_messages.c.session_id == answer.session_id, chat_messages.c.seq == answer.seq - 1
        )
    ).first()
    return _row(answer), None if question is None else _row(question)

"""Background ingestion jobs: uploads are staged on disk, recorded, then ingested by one worker.

A job row lists its staged files and a cursor (files finished). The worker takes queued jobs in
order, ingests file after file and advances the cursor; after a crash or restart, ``running``
jobs go back to ``queued`` and resume at their cursor (the file in flight is ingested again,
which changes nothing that was finished: ingestion skips unchanged documents). A cancel takes
effect between batches; documents already published stay, nothing half-written is visible.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from retrieval.errors import KnowledgeBaseNotFound
from retrieval.faq_records import read_faqs
from retrieval.ingest import Ingestor, IngestReport
from retrieval.loaders import load_file
from retrieval.metadata import (
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    KnowledgeBaseInfo,
    MetadataStore,
    jobs,
    new_id,
    now,
)

log = logging.getLogger("ragnet.jobs")

DOCUMENTS = "documents"
FAQS = "faqs"


class JobNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StagedFile:
    path: str  # staged copy, inside the job's folder
    filename: str  # as uploaded
    doc_id: str
    metadata: dict[str, Any]


def job_view(row: Any, kb_name: str | None = None) -> dict[str, Any]:
    r = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {
        "id": r["id"],
        "kb": kb_name or r.get("kb_name") or r["kb_id"],
        "kind": r["kind"],
        "status": r["status"],
        "total": r["total"],
        "done": r["done"],
        "failures": r["failures"] or [],
        "message": r["message"],
        "created_at": r["created_at"].isoformat() if r["created_at"] else None,
        "updated_at": r["updated_at"].isoformat() if r["updated_at"] else None,
    }


class JobRunner:
    def __init__(
        self, metadata: MetadataStore, ingestor: Callable[[], Ingestor], uploads_dir: Path, max_bytes: int
    ) -> None:
        self._metadata = metadata
        self._ingestor = ingestor
        self.uploads_dir = uploads_dir
        self._max_bytes = max_bytes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Requeue jobs a crash left running, then start the worker."""
        with self._metadata.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.status == RUNNING)
                .values(status=QUEUED, message="resumed after restart")
            )
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ragnet-jobs", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- requests ------------------------------------------------------------------------
    def staging_dir(self) -> tuple[str, Path]:
        job_id = new_id()
        folder = self.uploads_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        return job_id, folder

    def submit(
        self, job_id: str, kb: KnowledgeBaseInfo, kind: str, files: list[StagedFile]
    ) -> dict[str, Any]:
        stamp = now()
        row = {
            "id": job_id,
            "kb_id": kb.id,
            "kind": kind,
            "status": QUEUED,
            "items": [f.__dict__ for f in files],
            "cursor": 0,
            "total": len(files),
            "done": 0,
            "failures": [],
            "message": "",
            "cancel": 0,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._metadata.begin() as conn:
            conn.execute(insert(jobs).values(**row))
        self._wake.set()
        return job_view(row, kb.name)

    def get(self, job_id: str) -> dict[str, Any]:
        with self._metadata.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        kb = self._metadata.get_kb_by_id(row.kb_id)
        return job_view(row, kb.name if kb else None)

    def list(
        self, kb: KnowledgeBaseInfo | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        if kb is not None:
            query = query.where(jobs.c.kb_id == kb.id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        names = {k.id: k.name for k in self._metadata.list_kbs()}
        with self._metadata.connect() as conn:
            return [job_view(r, names.get(r.kb_id)) for r in conn.execute(query)]

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["status"] not in FINISHED:
            with self._metadata.begin() as conn:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == QUEUED)
                    .values(
                        status=CANCELLED, cancel=1, message="cancelled before it started", updated_at=now()
                    )
                )
                conn.execute(
                    update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING).values(cancel=1)
                )
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until a job finishes (tests and the CLI)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in FINISHED or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    # --- the worker ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._next()
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._run(job)
            except Exception as exc:  # a bug or a broken store: the job fails, the worker lives
                log.exception("job %s failed", job.id)
                self._set(job.id, status=FAILED, message=f"failed: {exc}")

    def _next(self) -> Any:
        """Claim the oldest queued job: the conditional update makes the claim atomic, so several
        API processes sharing one database never run a job twice."""
        while True:
            with self._metadata.connect() as conn:
                row = conn.execute(
                    select(jobs).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at).limit(1)
                ).first()
            if row is None:
                return None
            with self._metadata.begin() as conn:
                claimed = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == row.id, jobs.c.status == QUEUED)
                    .values(status=RUNNING, updated_at=now())
                )
            if claimed.rowcount == 1:
                return row

    def _set(self, job_id: str, **values: Any) -> None:
        with self._metadata.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=now(), **values))

    def _cancel_requested(self, job_id: str) -> bool:
        with self._metadata.connect() as conn:
            row = conn.execute(select(jobs.c.cancel).where(jobs.c.id == job_id)).first()
        return row is None or bool(row[0]) or self._stop.is_set()

    def _run(self, job: Any) -> None:
        kb = self._metadata.get_kb_by_id(job.kb_id)
        if kb is None:
            self._set(job.id, status=FAILED, message="the knowledge base was deleted")
            return
        failures: list[dict[str, str]] = list(job.failures or [])
        items = [StagedFile(**item) for item in job.items]
        cursor = job.cursor
        totals = {"documents": 0, "chunks": 0}
        ingestor = self._ingestor()
        for index in range(cursor, len(items)):
            item = items[index]

            def progress(r: IngestReport, name: str = item.filename) -> None:
                self._set(job.id, message=f"{name}: {r.documents} items, {r.chunks} chunks")

            try:
                report = self._ingest_one(
                    ingestor, kb, job.kind, item, progress, lambda: self._cancel_requested(job.id)
                )
            except KnowledgeBaseNotFound:
                return  # the kb (and this job's row) were deleted meanwhile
            failures += [{"source": item.filename, "reason": f.reason} for f in report.failures]
            failures += [
                {"source": item.filename, "reason": f"duplicate: same content as document {same!r}"}
                for _, same in report.duplicates
            ]
            totals["documents"] += report.indexed
            totals["chunks"] += report.chunks
            if report.cancelled or self._cancel_requested(job.id):
                if self._stop.is_set():  # shutting down: resume on next start
                    self._set(job.id, status=QUEUED, message="paused by shutdown")
                    return
                self._set(job.id, status=CANCELLED, failures=failures, message="cancelled")
                return
            self._set(job.id, cursor=index + 1, done=index + 1, failures=failures)
        summary = f"{totals['documents']} indexed, {totals['chunks']} chunks written"
        # staged files go before the job says done (a waiter must not see them); a crash in between
        # resumes at the cursor, past every file, and just marks the job done
        shutil.rmtree(self.uploads_dir / job.id, ignore_errors=True)
        self._set(job.id, status=DONE, failures=failures, message=summary)

    def _ingest_one(
        self,
        ingestor: Ingestor,
        kb: KnowledgeBaseInfo,
        kind: str,
        item: StagedFile,
        progress: Callable[[IngestReport], None],
        cancelled: Callable[[], bool],
    ) -> IngestReport:
        path = Path(item.path)
        if kind == FAQS:
            return ingestor.ingest_faqs(
                kb, read_faqs(path, max_bytes=self._max_bytes), progress, cancelled=cancelled
            )
        loaded = load_file(path, doc_id=item.doc_id, max_bytes=self._max_bytes)
        docs = [_with_upload(d, item) for d in loaded]
        return ingestor.ingest(kb, docs, progress, cancelled=cancelled)


def _with_upload(doc: Any, item: StagedFile) -> Any:
    """A loaded document with the uploader's metadata and the original file name as its source."""
    from dataclasses import replace

    from retrieval.documents import Document

    if not isinstance(doc, Document):
        return type(doc)(item.filename, doc.reason)
    meta = {**doc.metadata, **item.metadata}
    return replace(doc, source=item.filename, metadata=meta)

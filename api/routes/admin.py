"""The knowledge-injection admin API: knowledge bases, documents, FAQs, jobs and hit testing.

Writes need an admin key for the knowledge base; reads and hit testing a reader key. Uploads are
staged on disk and ingested by a background job (202 + the job); everything else is synchronous.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import BaseModel, Field, field_validator

from api.auth import PrincipalDep
from api.deps import ServicesDep
from api.errors import RequestError
from api.jobs import DOCUMENTS, FAQS, JobNotFound, StagedFile
from api.schemas import ErrorResponse
from retrieval.faq_records import FAQ_SUFFIXES, make_record
from retrieval.loaders import SUPPORTED_SUFFIXES
from retrieval.metadata import KnowledgeBaseInfo

router = APIRouter(prefix="/v1", tags=["admin"])

_ERR: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 413, 415, 422)
}
META_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_UPLOAD_FILES = 100


# --- bodies ----------------------------------------------------------------------------
class KbCreate(BaseModel):
    name: str = Field(examples=["support"])
    description: str = Field(default="", max_length=2000)
    chunking: Literal["heading", "fixed", "parent_child"] | None = Field(
        default=None, description="Default: RAGNET_CHUNKING (heading)."
    )


class KbUpdate(BaseModel):
    name: str | None = Field(default=None, description="A new name (rename).")
    description: str | None = Field(default=None, max_length=2000)
    strict: bool | None = Field(
        default=None,
        description="Answer 'not in the knowledge base' instead of the base model when nothing is "
        "found (a request's own `strict` wins).",
    )


class FaqBody(BaseModel):
    id: str | None = Field(default=None, max_length=256)
    questions: list[str] = Field(min_length=1, max_length=50, description="One or more question variants.")
    answer: str = Field(min_length=1, max_length=20000, description="Returned verbatim on a hit.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchBody(BaseModel):
    query: str = Field(min_length=1, max_length=100_000)
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        default=None, description="Default RAGNET_SEARCH_MODE."
    )
    k: int = Field(default=5, ge=1, le=100)
    filters: dict[str, Any] = Field(default_factory=dict, description='Metadata filters: {"product": "pro"}.')
    faqs: bool = Field(default=True, description="Also search the FAQs.")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value.strip()


# --- helpers ---------------------------------------------------------------------------
def kb_view(kb: KnowledgeBaseInfo) -> dict[str, Any]:
    return {
        "name": kb.name,
        "description": kb.description,
        "chunking": kb.chunking,
        "documents": kb.documents,
        "chunks": kb.chunks,
        "faqs": kb.faqs,
        "strict": kb.strict,
        "created_at": kb.created_at.isoformat(),
    }


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if k != "kb_id"}


def _filters(raw: dict[str, Any]) -> dict[str, Any]:
    for key, value in raw.items():
        if not META_KEY.match(key):
            raise RequestError(f"invalid filter key {key!r}: letters, digits, '_' or '-'")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise RequestError(f"filter {key!r} must be a string or an integer, or a list of them")
    return raw


def _metadata_field(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"metadata is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict) or not all(META_KEY.match(str(k)) for k in value):
        raise RequestError("metadata must be a JSON object with keys of letters, digits, '_' or '-'")
    return value


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip()
    if not name or name in {".", ".."}:
        raise RequestError("an uploaded file has no name")
    return name[:255]


async def _stage(
    services: Any,
    kb: KnowledgeBaseInfo,
    kind: str,
    uploads: list[UploadFile],
    suffixes: tuple[str, ...],
    meta: dict[str, Any],
    doc_id: str | None,
) -> dict[str, Any]:
    limit = services.settings.max_upload_bytes
    for upload in uploads:
        name = _safe_name(upload.filename or "")
        if Path(name).suffix.lower() not in suffixes:
            raise RequestError(
                f"{name}: unsupported file type; use {', '.join(suffixes)}", 415, "unsupported_media_type"
            )
    runner = services.jobs
    job_id, folder = runner.staging_dir()
    staged: list[StagedFile] = []
    total = 0
    try:
        for n, upload in enumerate(uploads):
            name = _safe_name(upload.filename or "")
            target = folder / f"{n:04d}-{name}"
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        raise RequestError(
                            f"the upload is over the {limit}-byte limit (RAGNET_MAX_UPLOAD_BYTES)",
                            413,
                            "too_large",
                        )
                    out.write(chunk)
            partial.replace(target)  # a crash never leaves a half file that looks complete
            staged.append(StagedFile(str(target), name, doc_id or name, meta))
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise
    return runner.submit(job_id, kb, kind, staged)


# --- knowledge bases -------------------------------------------------------------------
@router.get("/kbs", responses=_ERR)
def list_kbs(services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return {"kbs": [kb_view(k) for k in services.metadata.list_kbs() if who.can_read(k.name)]}


@router.post("/kbs", status_code=201, responses=_ERR)
def create_kb(body: KbCreate, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.check(body.name, write=True)
    kb = services.knowledge.create(body.name, body.description, body.chunking or services.settings.chunking)
    return kb_view(kb)


@router.get("/kbs/{kb}", responses=_ERR)
def get_kb(kb: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.check(kb)
    return kb_view(services.knowledge.get(kb))


@router.patch("/kbs/{kb}", responses=_ERR)
def update_kb(kb: str, body: KbUpdate, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.check(kb, write=True)
    if body.name is not None:
        who.check(body.name, write=True)
    return kb_view(
        services.knowledge.update(kb, new_name=body.name, description=body.description, strict=body.strict)
    )


@router.delete("/kbs/{kb}", status_code=204, responses=_ERR)
def delete_kb(kb: str, services: ServicesDep, who: PrincipalDep) -> Response:
    who.check(kb, write=True)
    services.knowledge.delete(kb)
    return Response(status_code=204)


# --- documents -------------------------------------------------------------------------
@router.post("/kbs/{kb}/documents", status_code=202, responses=_ERR)
async def upload_documents(
    kb: str,
    services: ServicesDep,
    who: PrincipalDep,
    files: Annotated[list[UploadFile], File(description="One or more files.")],
    metadata: Annotated[str | None, Form(description="A JSON object: the documents' metadata.")] = None,
    doc_id: Annotated[
        str | None, Form(description="The document id (one file only); default: the file name.")
    ] = None,
) -> dict[str, Any]:
    """Upload documents; they are ingested by a background job (poll `GET /v1/jobs/{id}`). A file
    with the id of an existing document replaces it (atomically, once ingested)."""
    who.check(kb, write=True)
    info = services.knowledge.get(kb)
    if not files:
        raise RequestError("no files in the upload (multipart field 'files')")
    if len(files) > MAX_UPLOAD_FILES:
        raise RequestError(f"at most {MAX_UPLOAD_FILES} files per upload")
    if doc_id is not None and (len(files) != 1 or not doc_id.strip() or len(doc_id) > 512):
        raise RequestError("doc_id needs exactly one file and 1-512 characters")
    job = await _stage(
        services, info, DOCUMENTS, files, SUPPORTED_SUFFIXES, _metadata_field(metadata), doc_id
    )
    return {"job": job}


@router.get("/kbs/{kb}/documents", responses=_ERR)
def list_documents(
    kb: str,
    services: ServicesDep,
    who: PrincipalDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    who.check(kb)
    info = services.knowledge.get(kb)
    rows, total = services.metadata.list_documents(info.id, offset, limit)
    return {"documents": [_iso(r) for r in rows], "total": total}


@router.get("/kbs/{kb}/documents/{doc_id:path}", responses=_ERR)
def get_document(kb: str, doc_id: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.check(kb)
    info = services.knowledge.get(kb)
    row = services.metadata.get_document(info.id, doc_id)
    if row is None:
        raise RequestError(f"no document {doc_id!r} in knowledge base {kb!r}", 404, "not_found")
    return _iso(row)


@router.delete("/kbs/{kb}/documents/{doc_id:path}", status_code=204, responses=_ERR)
def delete_document(kb: str, doc_id: str, services: ServicesDep, who: PrincipalDep) -> Response:
    who.check(kb, write=True)
    services.knowledge.delete_document(kb, doc_id)
    return Response(status_code=204)


# --- FAQs ------------------------------------------------------------------------------
def _faq_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["faq_id"],
        "questions": row["questions"],
        "answer": row["answer"],
        "metadata": row["metadata"],
    }


@router.get("/kbs/{kb}/faqs", responses=_ERR)
def list_faqs(
    kb: str,
    services: ServicesDep,
    who: PrincipalDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    who.check(kb)
    info = services.knowledge.get(kb)
    rows, total = services.metadata.list_faqs(info.id, offset, limit)
    return {"faqs": [_faq_view(r) for r in rows], "total": total}


def _put_faq(services: Any, kb: str, body: FaqBody, faq_id: str | None) -> dict[str, Any]:
    try:
        record = make_record({**body.model_dump(), "id": faq_id or body.id})
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    services.knowledge.put_faq(kb, record)
    info = services.knowledge.get(kb)
    return _faq_view(services.metadata.get_faq(info.id, record.id))


@router.post("/kbs/{kb}/faqs", status_code=201, responses=_ERR)
def create_faq(kb: str, body: FaqBody, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    who.check(kb, write=True)
    return _put_faq(services, kb, body, None)


@router.put("/kbs/{kb}/faqs/{faq_id:path}", responses=_ERR)
def update_faq(
    kb: str, faq_id: str, body: FaqBody, services: ServicesDep, who: PrincipalDep
) -> dict[str, Any]:
    who.check(kb, write=True)
    return _put_faq(services, kb, body, faq_id)


@router.delete("/kbs/{kb}/faqs/{faq_id:path}", status_code=204, responses=_ERR)
def delete_faq(kb: str, faq_id: str, services: ServicesDep, who: PrincipalDep) -> Response:
    who.check(kb, write=True)
    services.knowledge.delete_faq(kb, faq_id)
    return Response(status_code=204)


@router.post("/kbs/{kb}/faqs/import", status_code=202, responses=_ERR)
async def import_faqs(
    kb: str, services: ServicesDep, who: PrincipalDep, file: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    """Bulk import from .csv (question, answer columns), .json (an array) or .jsonl; a background job."""
    who.check(kb, write=True)
    info = services.knowledge.get(kb)
    return {"job": await _stage(services, info, FAQS, [file], FAQ_SUFFIXES, {}, None)}


# --- jobs ------------------------------------------------------------------------------
@router.get("/jobs", responses=_ERR)
def list_jobs(
    services: ServicesDep,
    who: PrincipalDep,
    kb: str | None = None,
    status: Annotated[str | None, Query(pattern="^(queued|running|done|failed|cancelled)$")] = None,
) -> dict[str, Any]:
    info = None
    if kb is not None:
        who.check(kb)
        info = services.knowledge.get(kb)
    found = services.jobs.list(info, status)
    return {"jobs": [j for j in found if who.can_read(j["kb"])]}


def _job(services: Any, job_id: str, who: Any, *, write: bool = False) -> dict[str, Any]:
    try:
        job: dict[str, Any] = services.jobs.get(job_id)
    except JobNotFound:
        raise RequestError(f"no job {job_id!r}", 404, "not_found") from None
    who.check(job["kb"], write=write)
    return job


@router.get("/jobs/{job_id}", responses=_ERR)
def get_job(job_id: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    return _job(services, job_id, who)


@router.post("/jobs/{job_id}/cancel", responses=_ERR)
def cancel_job(job_id: str, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    _job(services, job_id, who, write=True)
    result: dict[str, Any] = services.jobs.cancel(job_id)
    return result


# --- hit testing -----------------------------------------------------------------------
def _hit_view(hit: Any) -> dict[str, Any]:
    return {
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "title": hit.title,
        "section": hit.section,
        "text": hit.text,
        "context": hit.context,
        "score": round(hit.score, 5),
        "relevance": round(hit.evidence_score, 4),
        "retrievers": hit.retrievers,
        "metadata": hit.metadata,
    }


@router.post("/kbs/{kb}/search", responses=_ERR)
def hit_test(kb: str, body: SearchBody, services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """Hit testing: what retrieval finds for a query, with each retriever's rank and score."""
    who.check(kb)
    limit = services.settings.max_question_chars
    if len(body.query) > limit:
        raise RequestError(f"query is {len(body.query)} characters; the limit is {limit}")
    filters = _filters(body.filters)
    started = time.perf_counter()
    retriever = services.retriever
    hits = retriever.search(kb, body.query, body.k, mode=body.mode, filters=filters)
    faq_hits = (
        retriever.search_faqs(kb, body.query, body.k, mode=body.mode, filters=filters) if body.faqs else []
    )
    return {
        "hits": [_hit_view(h) for h in hits],
        "faqs": [
            {
                "faq_id": h.doc_id,
                "question": h.text,
                "answer": h.answer,
                "score": round(h.score, 5),
                "relevance": round(h.evidence_score, 4),
                "retrievers": h.retrievers,
            }
            for h in faq_hits
        ],
        "mode": body.mode or retriever.default_mode,
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
    }

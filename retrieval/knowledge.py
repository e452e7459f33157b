"""Knowledge-base administration: create, rename, delete; delete documents; edit FAQs.

Every change that touches both the index and the SQL bookkeeping happens under the knowledge
base's write lock (shared with ingestion), so a delete during an ingestion waits for the batch in
flight and then removes the document for good.
"""

from __future__ import annotations

import re

from retrieval.errors import KnowledgeBaseNotFound, RetrievalError
from retrieval.faq_records import FaqRecord
from retrieval.ingest import Ingestor, IngestReport
from retrieval.locks import KbLocks
from retrieval.metadata import KnowledgeBaseInfo, MetadataStore
from retrieval.vectorstores.base import CHUNK, FAQ, VectorStore

KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
CHUNKINGS = ("heading", "fixed", "parent_child")


class KnowledgeBaseExists(RetrievalError):
    pass


class ItemNotFound(RetrievalError):
    """An unknown document or FAQ id."""


class InvalidName(RetrievalError):
    pass


def check_name(name: str) -> str:
    if not KB_NAME.match(name):
        raise InvalidName(
            f"invalid knowledge-base name {name!r}: 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )
    return name


class KnowledgeAdmin:
    def __init__(
        self, store: VectorStore, metadata: MetadataStore, ingestor: Ingestor, locks: KbLocks
    ) -> None:
        self._store = store
        self._metadata = metadata
        self._ingestor = ingestor
        self._locks = locks

    def get(self, name: str) -> KnowledgeBaseInfo:
        info = self._metadata.get_kb(name)
        if info is None:
            raise KnowledgeBaseNotFound(name)
        return info

    def create(self, name: str, description: str = "", chunking: str = "heading") -> KnowledgeBaseInfo:
        check_name(name)
        if chunking not in CHUNKINGS:
            raise InvalidName(f"unknown chunking {chunking!r}; use one of {', '.join(CHUNKINGS)}")
        if self._metadata.kb_exists(name):
            raise KnowledgeBaseExists(f"knowledge base {name!r} already exists")
        return self._metadata.create_kb(name, description, chunking)

    def update(
        self,
        name: str,
        *,
        new_name: str | None = None,
        description: str | None = None,
        strict: bool | None = None,
    ) -> KnowledgeBaseInfo:
        info = self.get(name)
        if strict is not None:
            self._metadata.set_kb_strict(info.id, strict)
        values: dict[str, str] = {}
        if new_name is not None and new_name != name:
            check_name(new_name)
            if self._metadata.kb_exists(new_name):
                raise KnowledgeBaseExists(f"knowledge base {new_name!r} already exists")
            values["name"] = new_name
        if description is not None:
            values["description"] = description
        if values:
            self._metadata.update_kb(info.id, **values)
        return self.get(values.get("name", name))

    def delete(self, name: str) -> None:
        """The knowledge base, its documents, FAQs, jobs and every point in the index."""
        info = self.get(name)
        with self._locks.hold(info.id):
            self._store.delete(info.id)
            self._metadata.delete_kb(info.id)

    def delete_document(self, name: str, doc_id: str) -> None:
        info = self.get(name)
        with self._locks.hold(info.id):
            if self._metadata.get_document(info.id, doc_id) is None:
                raise ItemNotFound(f"no document {doc_id!r} in knowledge base {name!r}")
            self._store.delete(info.id, kind=CHUNK, doc_id=doc_id)
            self._metadata.delete_document(info.id, doc_id)

    def put_faq(self, name: str, record: FaqRecord) -> IngestReport:
        info = self.get(name)
        with self._locks.hold(info.id):
            return self._ingestor.ingest_faqs(info, [record])

    def delete_faq(self, name: str, faq_id: str) -> None:
        info = self.get(name)
        with self._locks.hold(info.id):
            if self._metadata.get_faq(info.id, faq_id) is None:
                raise ItemNotFound(f"no FAQ {faq_id!r} in knowledge base {name!r}")
            self._store.delete(info.id, kind=FAQ, doc_id=faq_id)
            self._metadata.delete_faq(info.id, faq_id)

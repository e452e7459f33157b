"""Errors of the retrieval layer.

RagnetError                      (root of every ragnet error; defined here, the lowest layer)
 └── RetrievalError
      ├── KnowledgeBaseNotFound  a knowledge base name that does not exist
      ├── StoreLocked            the data folder's index is open in another process
      ├── StoreError             the vector store failed or is misconfigured
      ├── IngestError            a file or record could not be read or parsed
      └── CopilotRecordError     (retrieval/copilot_store.py)
           ├── RecordNotFound    an unknown assistant, session, message, handoff or feedback id
           └── RecordConflict    a duplicate assistant name, a handoff move its status forbids
"""

from __future__ import annotations


class RagnetError(Exception):
    """Root of all ragnet errors. Messages say what was wrong and what to do."""


class RetrievalError(RagnetError):
    pass


class KnowledgeBaseNotFound(RetrievalError):
    def __init__(self, kb: str) -> None:
        super().__init__(f"knowledge base {kb!r} does not exist; ingest documents into it first")
        self.kb = kb


class StoreLocked(RetrievalError):
    pass


class StoreError(RetrievalError):
    pass


class IngestError(RetrievalError):
    pass

"""Sparse (BM25-style) text vectors for keyword search, from Qdrant's own BM25 embedder.

``qdrant_edge.Bm25`` with the multilingual tokenizer segments Chinese into words (and English
into stemmed words without stop words); a document's values are BM25 term-frequency weights with
length normalisation, a query's are 1 per term, and the store multiplies in IDF (the sparse
vector's IDF modifier), so scores are BM25. The same vectors serve both store backends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from retrieval.vectorstores.base import SparseVector

#: Chunks are ~200 embedder tokens, about 130 words: BM25's length normalisation pivots on it.
AVG_WORDS = 130.0


class SparseEncoder(Protocol):
    name: str

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_query(self, text: str) -> SparseVector: ...


class Bm25Encoder:
    def __init__(self, avg_len: float = AVG_WORDS, k: float = 1.2, b: float = 0.75) -> None:
        import qdrant_edge as qe

        config = qe.Bm25Config(
            k=k, b=b, avg_len=avg_len, tokenizer=qe.TokenizerType.Multilingual, language="english"
        )
        self._model: Any = qe.Bm25(config)
        self._lock = threading.Lock()
        self.name = f"bm25-multilingual/k{k}/b{b}/avg{avg_len:g}"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        with self._lock:
            return [_convert(self._model.embed_document(t)) for t in texts]

    def encode_query(self, text: str) -> SparseVector:
        with self._lock:
            return _convert(self._model.embed_query(text))


def _convert(vector: Any) -> SparseVector:
    return SparseVector(tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values))

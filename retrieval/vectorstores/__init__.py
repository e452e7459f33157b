"""Vector stores: the interface and its backends."""

from retrieval.vectorstores.base import VectorStore
from retrieval.vectorstores.client import QdrantClientVectorStore
from retrieval.vectorstores.edge import EdgeVectorStore

__all__ = ["EdgeVectorStore", "QdrantClientVectorStore", "VectorStore"]

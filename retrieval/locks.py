"""Per-knowledge-base write locks shared by ingestion and administration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KbLocks:
    """One write lock per knowledge base."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    @contextmanager
    def hold(self, kb_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(kb_id, threading.RLock())
        with lock:
            yield

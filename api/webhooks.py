"""Handoff webhooks: POSTed off the reply path, with a timeout, retries and a state on the handoff.

A handoff that has a webhook is stored with ``webhook.status = "pending"`` in the same transaction
as the answer that opened it; this sender then POSTs it from a thread of its own, so a receiver
that hangs or fails never delays or breaks the reply. Each try has ``timeout_s``; a failure is
retried ``retries`` times with backoff (1, 2, 4 … s). The outcome lands on the handoff
(``delivered`` with the status code, or ``failed`` with the last error), so the admin page shows
it. Handoffs still pending when the process stopped are sent again at start (at-least-once: a
receiver should key on the handoff ``id``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import httpx

from retrieval.copilot_store import CopilotStore

log = logging.getLogger("ragnet.webhooks")

_STOP = object()


class WebhookSender:
    def __init__(
        self,
        store: CopilotStore,
        timeout_s: float = 5.0,
        retries: int = 3,
        *,
        client: httpx.Client | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self._store = store
        self._timeout = timeout_s
        self._retries = retries
        self._backoff = backoff_s
        self._client = client
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        """Start the sender and queue the handoffs a stopped process left pending."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="ragnet-webhooks", daemon=True)
            self._thread.start()
        for handoff in self._store.pending_webhooks():
            self._queue.put(handoff["id"])

    def submit(self, handoff_id: str) -> None:
        """Queue one handoff (its ``webhook.url`` and payload are on the record)."""
        self.start()
        self._queue.put(handoff_id)

    def stop(self, wait_s: float = 2.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)
        thread.join(wait_s)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued webhook is sent or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        client = self._client or httpx.Client(timeout=self._timeout, follow_redirects=False)
        try:
            while True:
                item = self._queue.get()
                try:
                    if item is _STOP:
                        return
                    self._deliver(client, str(item))
                except Exception as exc:
                    log.error("webhook for handoff %s failed: %s", item, exc)
                finally:
                    self._queue.task_done()
        finally:
            if self._client is None:
                client.close()

    def _deliver(self, client: httpx.Client, handoff_id: str) -> None:
        handoff = self._store.get_handoff(handoff_id)
        if handoff is None:
            return
        state = dict(handoff.get("webhook") or {})
        url = state.get("url")
        if state.get("status") != "pending" or not url:
            return
        payload = state.get("payload") or {}
        error = ""
        attempts = int(state.get("attempts", 0))
        for attempt in range(self._retries + 1):
            if attempt and self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                break  # shutting down: left pending, sent again at the next start
            attempts += 1
            try:
                reply = client.post(url, json=payload, timeout=self._timeout)
                if reply.status_code < 300:
                    self._store.set_webhook_state(
                        handoff_id,
                        {
                            "url": url,
                            "status": "delivered",
                            "attempts": attempts,
                            "status_code": reply.status_code,
                        },
                    )
                    return
                error = f"HTTP {reply.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("handoff %s webhook try %d failed: %s", handoff_id, attempts, error)
        else:
            self._store.set_webhook_state(
                handoff_id, {"url": url, "status": "failed", "attempts": attempts, "last_error": error}
            )
            return
        self._store.set_webhook_state(
            handoff_id, {**state, "status": "pending", "attempts": attempts, "last_error": error}
        )

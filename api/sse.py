"""Server-sent events from a blocking event iterator: a heartbeat, and a stop when the client leaves.

The graph runs on a worker thread and hands its events over a queue, so the event loop stays free
to send a comment line (``: heartbeat``) whenever the stream has been quiet for ``heartbeat_s``
(proxies close idle streams) and to notice a disconnected client: then ``stop`` is set, which the
generator checks between tokens, and the worker finishes (and stores what it has) on its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

Event = tuple[str, dict[str, Any]]
Format = Callable[[str, dict[str, Any]], str]

_END = object()
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def named_event(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def pump(
    request: Request,
    events: Iterator[Event],
    stop: threading.Event,
    heartbeat_s: float,
    fmt: Format,
    on_error: Callable[[BaseException], str],
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def work() -> None:
        try:
            for item in events:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
        except BaseException as exc:
            loop.call_soon_threadsafe(inbox.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(inbox.put_nowait, _END)

    worker = threading.Thread(target=work, name="ragnet-sse", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = await asyncio.wait_for(inbox.get(), timeout=heartbeat_s)
            except TimeoutError:
                if await request.is_disconnected():
                    stop.set()
                    return
                yield ": heartbeat\n\n"
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                yield on_error(item)
                return
            yield fmt(*item)
    finally:  # the client went away (the response was cancelled) or the stream ended
        stop.set()


def event_stream(
    request: Request,
    events: Iterator[Event],
    stop: threading.Event,
    heartbeat_s: float,
    fmt: Format,
    on_error: Callable[[BaseException], str],
) -> StreamingResponse:
    return StreamingResponse(
        pump(request, events, stop, heartbeat_s, fmt, on_error),
        media_type="text/event-stream",
        headers=HEADERS,
    )

"""What every graph shares: timings that add up across nodes, hits as checkpointable dicts,
streamed generation, and the citation list of an answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from agents.generation.base import ChatMessage, GenerationRequest, Generator
from retrieval.documents import Hit

#: Writes one custom stream event (LangGraph's ``runtime.stream_writer``).
Writer = Callable[[dict[str, Any]], None]


def add_times(left: dict[str, float], right: dict[str, float]) -> dict[str, float]:
    """Timings add up across hops (a state reducer)."""
    out = dict(left)
    for key, value in right.items():
        out[key] = round(out.get(key, 0.0) + value, 1)
    return out


def ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


#: Hit fields kept in the state (metadata and per-retriever scores stay out of the checkpoints).
HIT_FIELDS = tuple(f.name for f in fields(Hit) if f.name not in ("metadata", "retrievers"))


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    return {name: getattr(hit, name) for name in HIT_FIELDS}


def hit_from_dict(data: dict[str, Any]) -> Hit:
    return Hit(**{k: data[k] for k in HIT_FIELDS if k in data})


def generate_text(
    generator: Generator,
    request: GenerationRequest,
    write: Writer | None = None,
    *,
    stopped: Callable[[], bool] = lambda: False,
) -> tuple[str, bool]:
    """(text, cut short). With ``write``, each piece goes out as a ``token`` event as it is
    decoded; ``stopped()`` true (the client went away) ends generation at the next piece."""
    if write is None:
        return generator.generate(request).text.strip(), False
    pieces: list[str] = []
    for piece in generator.stream(request):
        if stopped():
            return "".join(pieces).strip(), True
        pieces.append(piece)
        write({"event": "token", "text": piece})
    return "".join(pieces).strip(), False


def request_for(
    messages: Sequence[ChatMessage],
    max_tokens: int,
    temperature: float,
    repetition_penalty: float,
    stop: Sequence[str] = (),
) -> GenerationRequest:
    return GenerationRequest(
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        repetition_penalty=repetition_penalty,
        stop=tuple(stop),
    )


def citations(hits: list[dict[str, Any]], cited: set[int]) -> list[dict[str, Any]]:
    """The numbered sources of an answer (``hits`` as dicts, numbered from 1) and which it cites."""
    return [
        {
            "n": i,
            "doc_id": h["doc_id"],
            "title": h["title"],
            "text": h.get("context") or h["text"],
            "score": round(h["score"], 4),
            "source": h["source"],
            "cited": i in cited,
        }
        for i, h in enumerate(hits, 1)
    ]

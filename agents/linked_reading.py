"""Linked reads: the span reader reads two documents as one text where the first names the second.

A two-hop question ("When was the singer whose third album is Diamond Cut born?") has its chain
split over two documents: the album's page names the singer, the singer's page has the date. Read
alone, the singer's page gives the date with no reason to prefer it; read after the album's page,
the reader sees the whole chain. ``read_linked`` reads every linked pair of a step's documents
(``support_graph.linked_pairs``: the first document's text holds the second's title) in one
batched pass; the support graph weighs the answers as candidate features.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.extractive_reader import SpanReader
from agents.support_graph import Doc, LinkedReading, linked_pairs, linked_text


def read_linked(reader: SpanReader, question: str, docs: Sequence[Doc]) -> list[LinkedReading]:
    """The reader's best span (also where "no answer" is likelier) for each linked pair of ``docs``."""
    pairs = linked_pairs(docs)
    if not pairs:
        return []
    read = reader.read(question, [linked_text(docs[i], docs[j]) for i, j in pairs])
    return [
        LinkedReading(i, j, e.span, round(e.logprob, 5), round(e.none_logprob, 5))
        for (i, j), e in zip(pairs, read, strict=True)
    ]

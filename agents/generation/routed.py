"""A generator view that applies one routing decision to every request it passes on.

One user request makes several generator calls (plan, read, compose); the router decides once per
user request and every call of that request runs with the same adapter choice. A call that already
names its own adapter keeps it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from agents.generation.base import Generation, GenerationRequest, Generator


class RoutedGenerator:
    def __init__(self, inner: Generator, weights: Mapping[str, float]) -> None:
        self.inner = inner
        self.weights = dict(weights)
        self.name = inner.name

    @property
    def adapters(self) -> Sequence[str]:
        return self.inner.adapters

    def _routed(self, request: GenerationRequest) -> GenerationRequest:
        if request.adapter or request.mix:
            return request
        if not self.weights:
            return request  # the base model
        if len(self.weights) == 1:
            (name, weight), *_ = self.weights.items()
            if weight == 1.0:
                return dataclasses.replace(request, adapter=name)
        return dataclasses.replace(request, mix=dict(self.weights))

    def generate(self, request: GenerationRequest) -> Generation:
        return self.inner.generate(self._routed(request))

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        return self.inner.stream(self._routed(request))

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return self.inner.generate_batch([self._routed(r) for r in requests])

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

"""A generator that answers by rule, for testing the graph's control flow.

The tiny model built in code writes noise, so it cannot show that a plan is followed step by step.
This stands in for the model only (an external dependency behind the Generator protocol): the
retrieval, the graph, the checkpointer and the API around it are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agents.generation.base import Generation, GenerationRequest


@dataclass
class ScriptedGenerator:
    """``rules``: (substring of the last user message, reply); the first match answers."""

    rules: list[tuple[str, str]]
    default: str = "unknown"
    name: str = "scripted"
    adapters: tuple[str, ...] = ()
    prompts: list[str] = field(default_factory=list)
    requests: list[GenerationRequest] = field(default_factory=list)  # every request, whole

    def _reply(self, request: GenerationRequest) -> str:
        last = [m["content"] for m in request.messages if m["role"] == "user"][-1]
        self.prompts.append(last)
        self.requests.append(request)
        for needle, reply in self.rules:
            if needle in last:
                return reply
        return self.default

    def generate(self, request: GenerationRequest) -> Generation:
        text = self._reply(request)
        return Generation(text, 0, len(text.split()), "stop", 0.0)

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [self.generate(r) for r in requests]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        words = self._reply(request).split(" ")
        yield from (w if i == 0 else " " + w for i, w in enumerate(words))

    def count_tokens(self, text: str) -> int:
        return len(text.split())

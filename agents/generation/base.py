"""The generator interface: chat messages in, text (or a token stream) out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    messages: Sequence[ChatMessage]
    max_tokens: int = 192
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    stop: Sequence[str] = field(default_factory=tuple)
    #: A LoRA adapter name, or None for the base model (routing arrives with the vLLM/LoRA work).
    adapter: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    seconds: float
    #: Mean log-probability of the kept tokens (the model's confidence), where the backend gives it.
    logprob: float | None = None


class Generator(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> Generation:
        """The whole completion."""

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces as they are decoded; joined they equal ``generate(...).text``."""

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Several short completions at once (greedy), in order, each with its ``logprob``."""

    def count_tokens(self, text: str) -> int:
        """Prompt-budget arithmetic in the generator's own tokens."""

"""The generator interface: chat messages in, text (or a token stream) out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

#: How the in-process generator holds its weights: fp32 ("none"); bf16 weights and activations;
#: dynamic int8 (weights and activations); int8 or int4 weights with bf16 activations for decode
#: steps (agents/generation/weight_only.py).
Quantize = Literal["none", "int8", "bf16", "int8-weights", "int4-weights"]
#: How the weight-only modes run a prompt's matrix products: with the fp32 weights, with a bfloat16
#: copy (~2x faster on CPUs that multiply bfloat16 natively, slower on the others), or "auto": bf16
#: where the CPU has AMX-BF16 or AVX512-BF16 (agents/generation/cpu_features.py), fp32 elsewhere.
Prefill = Literal["auto", "fp32", "bf16"]


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
    #: One LoRA adapter by name, or None for the base model (adapters off).
    adapter: str | None = None
    #: A weighted mix of adapters ({name: weight}); when given it wins over ``adapter``. The
    #: transformers backend blends them; vLLM and OpenAI-compatible servers serve one adapter per
    #: request, so they take the heaviest (``adapter_weights`` below).
    mix: Mapping[str, float] | None = None
    seed: int | None = None

    def adapter_weights(self) -> dict[str, float]:
        """The adapters this request asks for, with weights ({} = the base model)."""
        if self.mix:
            return {name: float(w) for name, w in self.mix.items() if w > 0}
        return {self.adapter: 1.0} if self.adapter else {}

    def heaviest_adapter(self) -> str | None:
        """The single adapter a one-adapter-per-request engine serves for this request."""
        weights = self.adapter_weights()
        return max(weights, key=lambda n: weights[n]) if weights else None


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

    @property
    def adapters(self) -> Sequence[str]:
        """Names of the LoRA adapters this backend can serve (empty: base model only)."""

    def generate(self, request: GenerationRequest) -> Generation:
        """The whole completion."""

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces as they are decoded; joined they equal ``generate(...).text``."""

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Several short completions at once (greedy), in order, each with its ``logprob``."""

    def count_tokens(self, text: str) -> int:
        """Prompt-budget arithmetic in the generator's own tokens."""

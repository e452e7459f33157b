"""In-process vLLM (``vllm.LLM``) with LoRA routing: each request's adapter is a ``LoRARequest``.

The GPU engine; ``pip install 'ragnet[vllm]'``. vLLM serves one adapter per request, so a weighted
``mix`` goes to its heaviest adapter. Every adapter's weight shapes are checked against the base
model before the engine starts (:func:`agents.adapters.check_adapter`).

vLLM starts its engine in a spawned process: a script that builds a VLLMGenerator needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from agents.adapters import AdapterSpec, check_adapter
from agents.errors import (
    AdapterMismatch,
    GenerationError,
    InvalidPrompt,
    ModelNotPrepared,
    UnknownAdapter,
)
from agents.generation.base import Generation, GenerationRequest
from agents.optional import require


class VLLMGenerator:
    """One ``vllm.LLM`` engine over ``model_dir`` and its LoRA adapters (stable int ids by name).

    ``engine_kwargs`` go to ``vllm.LLM`` as they are (``dtype``, ``max_model_len``,
    ``gpu_memory_utilization``, ``enforce_eager``, …)."""

    name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        *,
        adapters: Sequence[AdapterSpec] = (),
        max_lora_rank: int = 16,
        max_loras: int = 4,
        max_prompt_tokens: int | None = None,
        **engine_kwargs: Any,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelNotPrepared(f"no model in {model_dir}; run `ragnet models prepare` first")
        names = [spec.name for spec in adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must be unique: {names}")
        for spec in adapters:  # refuse a foreign adapter here, not deep inside the engine
            config = check_adapter(spec.path, model_dir)
            rank = int(config.get("r") or 0)
            if rank > max_lora_rank:
                raise AdapterMismatch(
                    f"adapter {spec.name!r} has rank {rank} but the engine allows {max_lora_rank}: "
                    "raise max_lora_rank (vLLM accepts 8, 16, 32, 64, …)"
                )
        vllm = require("vllm", "vllm")
        lora_request = require("vllm.lora.request", "vllm").LoRARequest
        # LoRARequest ids must be >= 1 and stable per adapter: vLLM caches loaded weights by id.
        self._loras: dict[str, Any] = {
            spec.name: lora_request(spec.name, i, str(spec.path)) for i, spec in enumerate(adapters, start=1)
        }
        self._sampling_params = vllm.SamplingParams
        kwargs: dict[str, Any] = {"model": str(model_dir), "tokenizer": str(model_dir), **engine_kwargs}
        if adapters:
            if require("vllm.platforms", "vllm").current_platform.is_cpu():
                # vLLM's CPU LoRA kernels index the stacked weights with the no-adapter id -1, which
                # Python reads as the last slot: a base-model row batched with adapter rows gets
                # the last slot's adapter. A slot that never holds an adapter keeps base rows exact.
                max_loras = max(max_loras, len(adapters) + 1)
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        self._llm: Any = vllm.LLM(**kwargs)
        self._tokenizer: Any = self._llm.get_tokenizer()
        self._max_prompt_tokens = max_prompt_tokens
        # vllm.LLM is not thread-safe; API workers share one engine.
        self._lock = threading.Lock()

    @property
    def adapters(self) -> Sequence[str]:
        return list(self._loras)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def generate(self, request: GenerationRequest) -> Generation:
        return self._run([request], greedy=False)[0]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The whole completion as one piece: ``vllm.LLM`` returns finished requests only (token by
        token streaming needs the async engine, which ``vllm serve`` and the openai backend give)."""
        generation = self.generate(request)  # checks and errors surface at the call, like the others
        return iter([generation.text] if generation.text else [])

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Greedy completions in one ``llm.generate`` call (per-prompt adapters), each with the mean
        log-probability of its tokens."""
        if not requests:
            return []
        return self._run(requests, greedy=True)

    def _run(self, requests: Sequence[GenerationRequest], *, greedy: bool) -> list[Generation]:
        prompts = [{"prompt_token_ids": self._prompt_ids(r)} for r in requests]
        loras = [self._lora_for(r) for r in requests]
        params = [self._params(r, greedy=greedy) for r in requests]
        started = time.perf_counter()
        with self._lock:
            try:
                outputs = self._llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
            except ValueError as exc:  # vLLM's way to refuse a prompt (e.g. over max_model_len)
                raise InvalidPrompt(f"the engine refused the prompt: {exc}") from exc
            except Exception as exc:
                raise GenerationError(f"vLLM generation failed: {exc!r}") from exc
        seconds = time.perf_counter() - started
        results = []
        for prompt, output in zip(prompts, outputs, strict=True):
            completion = output.outputs[0]
            n = len(completion.token_ids)
            cumulative = completion.cumulative_logprob
            finish: Literal["stop", "length"] = "length" if completion.finish_reason == "length" else "stop"
            results.append(
                Generation(
                    text=completion.text,
                    prompt_tokens=len(prompt["prompt_token_ids"]),
                    completion_tokens=n,
                    finish_reason=finish,
                    seconds=seconds,
                    logprob=cumulative / n if n and cumulative is not None else None,
                )
            )
        return results

    def _lora_for(self, request: GenerationRequest) -> Any:
        name = request.heaviest_adapter()
        if name is None:
            return None
        if name not in self._loras:
            raise UnknownAdapter(name, list(self._loras))
        return self._loras[name]

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if not request.messages or not any(m["content"].strip() for m in request.messages):
            raise InvalidPrompt("the prompt is empty: a generation request needs a non-empty message")
        text = self._tokenizer.apply_chat_template(
            [dict(m) for m in request.messages], add_generation_prompt=True, tokenize=False
        )
        # The template writes any BOS itself: encoding without special tokens avoids a second one.
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False)
        if self._max_prompt_tokens and len(ids) > self._max_prompt_tokens:
            raise InvalidPrompt(
                f"the prompt has {len(ids)} tokens; at most {self._max_prompt_tokens} are allowed "
                "(shorten the conversation or the retrieved context, or raise max_prompt_tokens)"
            )
        return ids

    def _params(self, request: GenerationRequest, *, greedy: bool) -> Any:
        sample = request.temperature > 0 and not greedy
        return self._sampling_params(
            temperature=request.temperature if sample else 0.0,
            top_p=request.top_p if sample else 1.0,
            max_tokens=request.max_tokens,
            stop=list(request.stop) or None,
            repetition_penalty=request.repetition_penalty,
            seed=request.seed,
            logprobs=1,  # the chosen token's log-prob: Generation.logprob, the model's confidence
        )

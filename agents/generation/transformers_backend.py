"""In-process transformers generation on CPU (the embedded default)."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from agents.adapters import AdapterSpec, check_adapter
from agents.errors import GenerationError, InvalidPrompt, ModelNotPrepared, UnknownAdapter
from agents.generation.base import Generation, GenerationRequest, Prefill, Quantize
from agents.generation.cpu_features import prompt_precision, resolve_prefill


def configure_torch(threads: int | None) -> None:
    """Process-wide torch threading; call once at start, before the first model loads."""
    import torch

    if threads:
        torch.set_num_threads(threads)


class TransformersGenerator:
    """A causal LM from a local folder; requests are served one at a time (one model, few cores).

    With ``adapters``, every LoRA adapter is loaded once beside the base weights (PEFT): a request
    names one (``adapter``), a weighted mix (``mix``: the adapters run together, each scaled by its
    weight), or none (the base model with every adapter off).
    """

    def __init__(
        self,
        path: Path,
        *,
        quantize: Quantize = "none",
        prefill: Prefill = "auto",
        adapters: Sequence[AdapterSpec] = (),
        max_prompt_tokens: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (path / "config.json").exists():
            raise ModelNotPrepared(f"no model in {path}; run `ragnet models prepare` first")
        for spec in adapters:  # refuse a foreign adapter before loading anything heavy
            check_adapter(spec.path, path)
        self.name = path.name
        prompts = resolve_prefill(prefill)  # on this CPU, for the weight-only modes
        #: The precision of a prompt's matrix products: ``prompts`` for the weight-only modes; the
        #: others run prompts as they hold their weights.
        self.prefill = prompt_precision(quantize, prompts)
        self._torch = torch
        self._max_prompt_tokens = max_prompt_tokens
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        dtype = torch.bfloat16 if quantize == "bf16" else torch.float32
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        model.eval()
        self._adapters: list[str] = []
        if adapters:
            from peft import PeftModel

            first, *rest = adapters
            model = PeftModel.from_pretrained(model, str(first.path), adapter_name=first.name)
            for spec in rest:
                model.load_adapter(str(spec.path), adapter_name=spec.name)
            self._adapters = [s.name for s in adapters]
            model.eval()
        if quantize == "int8":
            model = _quantize_int8(model)
        elif quantize in ("int8-weights", "int4-weights"):
            from agents.generation.weight_only import quantize_weights

            model = quantize_weights(model, 8 if quantize == "int8-weights" else 4, prompts)
        self._model: Any = model
        self._layers: list[Any] | None = None
        self._lock = threading.Lock()
        eos = model.generation_config.eos_token_id
        self._eos: list[int] = [eos] if isinstance(eos, int) else list(eos or [])
        if self._tokenizer.eos_token_id is not None and self._tokenizer.eos_token_id not in self._eos:
            self._eos.append(self._tokenizer.eos_token_id)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def generate(self, request: GenerationRequest) -> Generation:
        self._check(request)
        started = time.perf_counter()
        stats: dict[str, int] = {}
        text = "".join(self._run(request, stats))
        return Generation(
            text=text,
            prompt_tokens=stats.get("prompt_tokens", 0),
            completion_tokens=stats.get("new_tokens", 0),
            finish_reason="length" if stats.get("new_tokens", 0) >= request.max_tokens else "stop",
            seconds=time.perf_counter() - started,
        )

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self._check(request)
        return self._run(request, {})

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Greedy completions of several prompts in one left-padded batch (the reader's per-document
        reads); each carries the mean log-probability of the tokens it keeps."""
        if not requests:
            return []
        for request in requests:
            self._check(request)
        torch = self._torch
        started = time.perf_counter()
        tok = self._tokenizer
        prompts = [
            tok.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        side, tok.padding_side = tok.padding_side, "left"
        try:
            inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        pad = tok.pad_token_id if tok.pad_token_id is not None else (self._eos[0] if self._eos else 0)
        stops = {tuple(r.stop) for r in requests}
        shared_stops = list(next(iter(stops))) if len(stops) == 1 else []
        kwargs: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=max(r.max_tokens for r in requests),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=requests[0].repetition_penalty,
            eos_token_id=self._eos or None,
            pad_token_id=pad,
            output_logits=True,
            return_dict_in_generate=True,
        )
        if shared_stops:
            kwargs.update(stop_strings=shared_stops, tokenizer=tok)
        weights = requests[0].adapter_weights()
        if any(r.adapter_weights() != weights for r in requests[1:]):
            raise GenerationError("one batch runs one adapter choice; split requests by adapter")
        with self._lock, torch.inference_mode(), self._active(weights):
            try:
                out = self._model.generate(**kwargs)
            except Exception as exc:
                raise GenerationError(f"generation failed: {exc}") from exc
        prompt_len = int(inputs["input_ids"].shape[1])
        new = out.sequences[:, prompt_len:]
        logprobs = torch.stack(
            [torch.log_softmax(step.float(), dim=-1) for step in out.logits], dim=1
        )  # (batch, steps, vocab)
        chosen = logprobs.gather(-1, new[:, : logprobs.shape[1]].unsqueeze(-1)).squeeze(-1)
        seconds = time.perf_counter() - started
        results: list[Generation] = []
        for i, request in enumerate(requests):
            ids: list[int] = []
            text = ""
            finish: Literal["stop", "length"] = "length"
            for step, token in enumerate(new[i].tolist()[: request.max_tokens]):
                if token in self._eos or (token == pad and step > 0 and not ids):
                    finish = "stop"
                    break
                ids.append(token)
                text = tok.decode(ids, skip_special_tokens=True)
                cut = min((j for j in (text.find(s) for s in request.stop if s) if j >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
            kept = chosen[i, : max(1, len(ids))]
            results.append(
                Generation(
                    text=text,
                    prompt_tokens=int(inputs["attention_mask"][i].sum()),
                    completion_tokens=len(ids),
                    finish_reason=finish,
                    seconds=seconds,
                    logprob=float(kept.mean()),
                )
            )
        return results

    def _check(self, request: GenerationRequest) -> None:
        for name in request.adapter_weights():
            if name not in self._adapters:
                raise UnknownAdapter(name, self._adapters)
        if not request.messages or not any(m["content"].strip() for m in request.messages):
            raise InvalidPrompt("a generation request needs at least one non-empty message")
        if self._max_prompt_tokens is not None:
            used = sum(self.count_tokens(m["content"]) for m in request.messages)
            if used > self._max_prompt_tokens:
                raise InvalidPrompt(
                    f"the prompt is {used} tokens; the limit is {self._max_prompt_tokens} "
                    "(RAGNET_MAX_PROMPT_TOKENS)"
                )

    @contextlib.contextmanager
    def _active(self, weights: dict[str, float]) -> Iterator[None]:
        """The adapter choice for one generate call (the caller holds the lock).

        A mix activates its adapters together with each one's LoRA scale multiplied by its
        weight, so the model runs with exactly the weighted sum of their weight deltas; no
        merged copy is built (that works on int8 base layers too)."""
        if not self._adapters:
            yield
            return
        if not weights:
            with self._model.disable_adapter():
                yield
            return
        names = sorted(weights)
        self._model.base_model.set_adapter(names if len(names) > 1 else names[0])
        scaled = [w != 1.0 for w in weights.values()]
        if any(scaled):
            for layer in self._lora_layers():
                for name in names:
                    layer.set_scale(name, weights[name])
        try:
            yield
        finally:
            if any(scaled):
                for layer in self._lora_layers():
                    for name in names:
                        layer.set_scale(name, 1.0)

    def _lora_layers(self) -> list[Any]:
        if self._layers is None:
            from peft.tuners.lora.layer import LoraLayer

            self._layers = [m for m in self._model.modules() if isinstance(m, LoraLayer)]
        return self._layers

    def _run(self, request: GenerationRequest, stats: dict[str, int]) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        inputs = self._tokenizer.apply_chat_template(
            list(request.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_len = int(inputs["input_ids"].shape[1])
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=request.max_tokens,
            repetition_penalty=request.repetition_penalty,
            eos_token_id=self._eos or None,
            pad_token_id=self._tokenizer.pad_token_id or (self._eos[0] if self._eos else None),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancel()]),
        )
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self._tokenizer)

        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._torch.inference_mode(), self._active(request.adapter_weights()):
                    if request.seed is not None:
                        self._torch.manual_seed(request.seed)
                    result["out"] = self._model.generate(**kwargs)
            except Exception as exc:  # surfaced in the consumer's thread below
                result["error"] = exc
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, name="ragnet-generate", daemon=True)
            worker.start()
            try:
                yield from _cut_at_stop(streamer, request.stop)
            finally:
                # A consumer that stops early (client gone) ends generation at the next token;
                # the streamer's queue is unbounded, so the worker never blocks on it.
                cancelled.set()
                worker.join()
            if "error" in result:
                raise GenerationError(f"generation failed: {result['error']}") from result["error"]
            out = result.get("out")
            stats["prompt_tokens"] = prompt_len
            stats["new_tokens"] = int(out.shape[1]) - prompt_len if out is not None else 0


def _quantize_int8(model: Any) -> Any:
    """Dynamic int8 on the model's Linear layers, LoRA factors excepted (they stay fp32)."""
    import torch

    names = {
        name: torch.ao.quantization.default_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "lora_" not in name
    }
    with warnings.catch_warnings():
        # torch marks eager dynamic quantisation deprecated but it is still the fastest
        # CPU path for this model here (~2x decode over fp32, DESIGN.md).
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


def _cut_at_stop(pieces: Iterator[str], stops: Any) -> Iterator[str]:
    """Yield text up to (not including) the first stop string; hold back a possible stop prefix."""
    stops = [s for s in (stops or ()) if s]
    if not stops:
        yield from (p for p in pieces if p)
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = min((i for i in (buffer.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            if buffer[:cut]:
                yield buffer[:cut]
            return
        if len(buffer) > hold:
            emit, buffer = buffer[: len(buffer) - hold], buffer[len(buffer) - hold :]
            yield emit
    if buffer:
        yield buffer

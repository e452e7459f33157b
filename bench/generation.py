"""Generation throughput: prefill and decode tokens/s per backend, batch 1 and 8, with and without
a LoRA adapter.

Backends: ``fp32``, ``bf16``, ``int8`` (dynamic), ``int8-weights`` and ``int4-weights`` (in-process
transformers, the prepared default generator, RAGNET_GENERATOR_QUANTIZE's values) and
``openai`` (an OpenAI-compatible server such as ``vllm serve`` with ``--enable-lora``; pass its URL).
Every number comes from the backend's own ``Generator`` (what ragnet serves with):

- prefill: a ~``--prompt-tokens`` prompt, 1 new token; prompt tokens / seconds (batch 8: all
  prompts' tokens / the batch's seconds).
- decode: a short prompt asking for a long text, ``--new-tokens`` greedy tokens; (new tokens) /
  (seconds - the same prompt's 1-token time), i.e. the prompt's own cost is taken out.

    RAGNET_DATA_DIR=… .venv/bin/python bench/generation.py [--backends fp32,int8] \
        [--adapter agents/models/adapters/banking] [--openai-url http://127.0.0.1:8001/v1] \
        [--batches 1,8] [--new-tokens 64] [--repeats 2] [--prefill auto|fp32|bf16]

Prints one JSON object per (backend, adapter, batch), then a summary object on its last line.
Run it on an otherwise idle machine: on 2 cores any other load halves the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import runtime_env

runtime_env.apply()

from agents.adapters import AdapterSpec, shipped_specs  # noqa: E402
from agents.generation.base import GenerationRequest, Generator  # noqa: E402
from api.settings import Settings  # noqa: E402

FILLER = (
    "Apollo 11 was the American spaceflight that first landed humans on the Moon. Commander Neil "
    "Armstrong and lunar module pilot Buzz Aldrin landed the Apollo Lunar Module Eagle on July 20, "
    "1969. Armstrong became the first person to step onto the lunar surface six hours later. "
)
DECODE_PROMPT = "Write a long, detailed story about a lighthouse keeper and a storm. Do not stop early."


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _prefill_prompt(gen: Generator, tokens: int, salt: int) -> str:
    text = f"Note {salt}. "
    while gen.count_tokens(text) < tokens:
        text += FILLER
    return text + "\nIn one word, who stepped out first?"


def _timed(gen: Generator, requests: Sequence[GenerationRequest]) -> tuple[float, int, int]:
    started = time.perf_counter()
    out = [gen.generate(requests[0])] if len(requests) == 1 else gen.generate_batch(requests)
    seconds = time.perf_counter() - started
    return seconds, sum(g.prompt_tokens for g in out), sum(g.completion_tokens for g in out)


def measure(
    gen: Generator, adapter: str | None, batch: int, new_tokens: int, prompt_tokens: int, repeats: int
) -> dict[str, Any]:
    def req(text: str, max_tokens: int) -> GenerationRequest:
        return GenerationRequest(
            messages=_messages(text), max_tokens=max_tokens, adapter=adapter, repetition_penalty=1.0
        )

    _timed(gen, [req("Hello", 2)])  # warm-up
    prefill, decode, completions = [], [], []
    for r in range(repeats):
        prompts = [_prefill_prompt(gen, prompt_tokens, 100 * r + i) for i in range(batch)]
        seconds, ptoks, _ = _timed(gen, [req(p, 1) for p in prompts])
        prefill.append(ptoks / seconds)
        short = [f"{DECODE_PROMPT} ({100 * r + i})" for i in range(batch)]
        first, _, _ = _timed(gen, [req(p, 1) for p in short])
        seconds, _, ctoks = _timed(gen, [req(p, new_tokens) for p in short])
        completions.append(ctoks / batch)
        decode.append(max(ctoks - batch, 1) / max(seconds - first, 1e-6))
    return {
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 2),
        "mean_new_tokens": round(statistics.mean(completions), 1),
    }


def build(
    backend: str, settings: Settings, adapters: list[AdapterSpec], url: str | None, prefill: str
) -> Generator:
    if backend == "openai":
        from agents.generation.openai_backend import OpenAIGenerator

        if not url:
            raise SystemExit("--openai-url is needed for the openai backend")
        return OpenAIGenerator(url, timeout_s=600, retries=0)
    from agents.generation.transformers_backend import TransformersGenerator
    from agents.model_prep import generator_dir

    path = settings.generator_path or generator_dir(settings.models_dir)
    quantize = "none" if backend == "fp32" else backend  # int8, bf16, int8-weights, int4-weights
    return TransformersGenerator(path, quantize=quantize, prefill=prefill, adapters=adapters)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="fp32,int8")
    parser.add_argument("--adapter", type=Path, help="a PEFT adapter folder (default: the shipped one)")
    parser.add_argument("--openai-url")
    parser.add_argument("--openai-adapter", help="the adapter's model name on the server")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--prefill",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="prompt precision of the weight-only backends (RAGNET_GENERATOR_PREFILL)",
    )
    args = parser.parse_args()

    settings = Settings()
    specs = [AdapterSpec(args.adapter.name.lower(), args.adapter)] if args.adapter else shipped_specs()[:1]
    rows = []
    for backend in filter(None, args.backends.split(",")):
        gen = build(backend, settings, specs, args.openai_url, args.prefill)
        if backend == "openai":
            names = [None, args.openai_adapter] if args.openai_adapter else [None]
        else:
            names = [None, specs[0].name] if specs else [None]
        for adapter in names:
            for batch in (int(b) for b in args.batches.split(",")):
                row = {
                    "backend": backend,
                    "prefill": getattr(gen, "prefill", None),  # the openai backend has none
                    "adapter": adapter,
                    "batch": batch,
                }
                row.update(measure(gen, adapter, batch, args.new_tokens, args.prompt_tokens, args.repeats))
                print(json.dumps(row), flush=True)
                rows.append(row)
        del gen
    summary: dict[str, Any] = {"rows": len(rows)}
    for row in rows:
        if row["adapter"] is None:
            continue
        base = next(
            r
            for r in rows
            if r["backend"] == row["backend"] and r["batch"] == row["batch"] and r["adapter"] is None
        )
        key = f"{row['backend']}_b{row['batch']}_adapter_overhead"
        summary[key] = round(1 - row["decode_tok_s"] / base["decode_tok_s"], 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

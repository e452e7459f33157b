from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import ModelNotPrepared, UnknownAdapter
from agents.generation.base import GenerationRequest
from agents.generation.transformers_backend import TransformersGenerator, _cut_at_stop

MESSAGES = [{"role": "user", "content": "Say something."}]


def test_generate_respects_max_tokens(tiny_generator: TransformersGenerator) -> None:
    out = tiny_generator.generate(GenerationRequest(messages=MESSAGES, max_tokens=5))
    assert out.prompt_tokens > 5
    assert 0 < out.completion_tokens <= 5
    assert out.finish_reason in {"length", "stop"}


def test_stream_joins_to_generate_and_is_deterministic(tiny_generator: TransformersGenerator) -> None:
    request = GenerationRequest(messages=MESSAGES, max_tokens=12)
    pieces = list(tiny_generator.stream(request))
    assert len(pieces) >= 1
    assert "".join(pieces) == tiny_generator.generate(request).text


def test_sampling_with_a_seed_is_reproducible(tiny_generator: TransformersGenerator) -> None:
    request = GenerationRequest(messages=MESSAGES, max_tokens=10, temperature=1.0, seed=7)
    assert tiny_generator.generate(request).text == tiny_generator.generate(request).text


def test_stop_sequence_cuts_the_output(tiny_generator: TransformersGenerator) -> None:
    # Sampling with a seed: a random tiny model's greedy output is one repeated token.
    base = GenerationRequest(messages=MESSAGES, max_tokens=24, temperature=1.0, seed=3)
    free = tiny_generator.generate(base).text
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    assert stop.strip(), f"need a visible stop string, got {free!r}"
    request = GenerationRequest(messages=MESSAGES, max_tokens=24, temperature=1.0, seed=3, stop=[stop])
    cut = tiny_generator.generate(request).text
    assert stop not in cut
    assert free.startswith(cut)


def test_unknown_adapter_is_refused(tiny_generator: TransformersGenerator) -> None:
    with pytest.raises(UnknownAdapter, match="'legal'"):
        tiny_generator.stream(GenerationRequest(messages=MESSAGES, adapter="legal"))


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotPrepared, match="ragnet models prepare"):
        TransformersGenerator(tmp_path)


def test_int8_quantisation_loads_and_generates(tiny_model_dir: Path) -> None:
    gen = TransformersGenerator(tiny_model_dir, quantize="int8")
    assert gen.generate(GenerationRequest(messages=MESSAGES, max_tokens=3)).completion_tokens > 0


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hel", "lo ", "wor", "ld"], [], "Hello world"),
        (["Ans", "wer.\n\nQ", "uestion: x"], ["\n\nQuestion:"], "Answer."),
        (["ab", "c"], ["zz"], "abc"),
        (["STOP", "here"], ["STOP"], ""),
    ],
)
def test_cut_at_stop(pieces: list[str], stops: list[str], expected: str) -> None:
    assert "".join(_cut_at_stop(iter(pieces), stops)) == expected

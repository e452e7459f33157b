from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from agents.adapters import AdapterSpec
from agents.errors import AdapterMismatch, InvalidPrompt, ModelNotPrepared, UnknownAdapter
from agents.generation.base import GenerationRequest
from agents.generation.transformers_backend import TransformersGenerator, _cut_at_stop
from tests.tiny_lora import build_tiny_adapter
from tests.tiny_model import build_tiny_model

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


def test_empty_and_overlong_prompts_are_refused(tiny_model_dir: Path) -> None:
    gen = TransformersGenerator(tiny_model_dir, max_prompt_tokens=20)
    with pytest.raises(InvalidPrompt, match="non-empty"):
        gen.generate(GenerationRequest(messages=[{"role": "user", "content": "  "}]))
    with pytest.raises(InvalidPrompt, match="limit is 20"):
        gen.generate(GenerationRequest(messages=[{"role": "user", "content": "Apollo 11 " * 40}]))


@pytest.fixture(scope="module")
def two_adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[AdapterSpec]:
    root = tmp_path_factory.mktemp("adapters")
    return [
        AdapterSpec("alpha", build_tiny_adapter(tiny_model_dir, root / "alpha", seed=1), ("a",)),
        AdapterSpec("beta", build_tiny_adapter(tiny_model_dir, root / "beta", seed=2), ("b",)),
    ]


@pytest.mark.parametrize(
    ("quantize", "prefill"),
    [
        ("none", "auto"),
        ("int8", "auto"),
        ("bf16", "auto"),
        ("int8-weights", "fp32"),
        ("int8-weights", "bf16"),
        ("int4-weights", "bf16"),
    ],
)
def test_adapters_per_request_base_off_and_weighted_mix(
    tiny_model_dir: Path, two_adapters: list[AdapterSpec], quantize: str, prefill: str
) -> None:
    kw: dict[str, Any] = {"quantize": quantize, "prefill": prefill}
    plain = TransformersGenerator(tiny_model_dir, **kw)
    gen = TransformersGenerator(tiny_model_dir, adapters=two_adapters, **kw)
    assert gen.adapters == ["alpha", "beta"]

    def text(**kw: object) -> str:
        return gen.generate(GenerationRequest(messages=MESSAGES, max_tokens=8, **kw)).text  # type: ignore[arg-type]

    base, alpha, beta = text(), text(adapter="alpha"), text(adapter="beta")
    # Base with adapters off is the plain model; each adapter changes the output.
    assert base == plain.generate(GenerationRequest(messages=MESSAGES, max_tokens=8)).text
    assert len({base, alpha, beta}) == 3
    # A mix of one adapter at weight 1 is that adapter; a real mix is neither; nothing sticks.
    assert text(mix={"alpha": 1.0}) == alpha
    blend = text(mix={"alpha": 0.5, "beta": 0.5})
    assert blend not in {alpha, beta}
    assert text(adapter="alpha") == alpha and text() == base
    # Streaming and batches honour the adapter too.
    request = GenerationRequest(messages=MESSAGES, max_tokens=8, adapter="beta")
    assert "".join(gen.stream(request)) == beta
    assert [g.text for g in gen.generate_batch([request, request])] == [beta, beta]
    with pytest.raises(UnknownAdapter, match="known adapters: alpha, beta"):
        text(mix={"alpha": 0.5, "gamma": 0.5})


def test_adapter_for_another_base_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_model(tmp_path / "other", hidden_size=96)
    foreign = build_tiny_adapter(other, tmp_path / "foreign")
    with pytest.raises(AdapterMismatch, match="built for another base model"):
        TransformersGenerator(tiny_model_dir, adapters=[AdapterSpec("foreign", foreign)])
    with pytest.raises(AdapterMismatch, match="not a PEFT adapter folder"):
        TransformersGenerator(tiny_model_dir, adapters=[AdapterSpec("empty", tmp_path)])


def test_weight_only_generator_swaps_the_base_layers_not_the_lora_factors(
    tiny_model_dir: Path, two_adapters: list[AdapterSpec]
) -> None:
    from peft.tuners.lora.layer import LoraLayer

    from agents.generation.weight_only import WeightOnlyLinear

    gen = TransformersGenerator(tiny_model_dir, quantize="int8-weights", adapters=two_adapters)
    modules = list(gen._model.modules())
    lora = [m for m in modules if isinstance(m, LoraLayer)]
    assert lora and all(isinstance(m.base_layer, WeightOnlyLinear) for m in lora)
    assert all(type(f) is torch.nn.Linear for m in lora for f in m.lora_A.values())
    assert sum(isinstance(m, WeightOnlyLinear) for m in modules) > len(lora)  # MLPs and lm_head too


@pytest.mark.parametrize(
    ("quantize", "prefill", "runs"),
    [("int8-weights", "bf16", "bf16"), ("int4-weights", "fp32", "fp32"), ("none", "bf16", "fp32")],
)
def test_prompt_precision_is_what_the_layers_run(
    tiny_model_dir: Path, quantize: str, prefill: str, runs: str
) -> None:
    from agents.generation.weight_only import WeightOnlyLinear

    gen = TransformersGenerator(tiny_model_dir, quantize=quantize, prefill=prefill)  # type: ignore[arg-type]
    assert gen.prefill == runs  # "none" holds fp32 weights only: prefill applies to weight-only modes
    layers = [m for m in gen._model.modules() if isinstance(m, WeightOnlyLinear)]
    head = gen._model.get_output_embeddings()
    assert all(m.prefill == runs for m in layers if m is not head) and bool(layers) == (quantize != "none")
    if layers:  # the vocabulary projection reads one row per sequence: it keeps no bf16 copy
        assert isinstance(head, WeightOnlyLinear) and head.prefill == "fp32"
    long_prompt = [{"role": "user", "content": "tell me " * 20}]  # past the decode-row cut
    out = gen.generate(GenerationRequest(messages=long_prompt, max_tokens=4))  # type: ignore[arg-type]
    assert out.prompt_tokens > 16 and out.completion_tokens > 0


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

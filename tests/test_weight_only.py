from __future__ import annotations

import pytest
import torch

from agents.generation.weight_only import DECODE_ROWS, WeightOnlyLinear, packable, quantize_weights


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize(("bits", "floor"), [(8, 0.9999), (4, 0.995)])
def test_decode_rows_use_the_packed_weights_and_stay_close(bits: int, floor: float) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = WeightOnlyLinear(linear, bits)  # type: ignore[arg-type]
    x = torch.randn(2, 3, 64)  # 6 rows: a decode step of a small batch
    with torch.inference_mode():
        got, want = layer(x), linear(x)
    assert got.shape == want.shape == (2, 3, 48)
    assert not torch.equal(got, want)  # the packed path ran, not the fp32 one
    assert _cosine(got, want) > floor


def test_prompts_run_the_fp32_weights_exactly() -> None:
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 32)
    layer = WeightOnlyLinear(linear, 8)
    prompt = torch.randn(1, DECODE_ROWS + 1, 64)
    with torch.inference_mode():
        assert torch.equal(layer(prompt), linear(prompt))
    assert layer.weight is linear.weight and layer.bias is linear.bias


def test_shapes_the_kernels_cannot_take_are_refused_or_left_fp32() -> None:
    # torch's int8 kernel crashes the process on input widths that are not multiples of 16.
    assert not packable(torch.nn.Linear(24, 16), 8)
    assert not packable(torch.nn.Linear(48, 16), 4) and not packable(torch.nn.Linear(64, 40), 4)
    with pytest.raises(ValueError, match="cannot take a 24->16"):
        WeightOnlyLinear(torch.nn.Linear(24, 16), 8)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(64, 64)
            self.odd = torch.nn.Linear(24, 64)
            self.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(64, 64)})

    net = quantize_weights(Net(), 8)
    assert isinstance(net.proj, WeightOnlyLinear)
    assert type(net.odd) is torch.nn.Linear  # left fp32
    assert type(net.lora_A["default"]) is torch.nn.Linear  # LoRA factors stay fp32


def test_bf16_prefill_runs_prompts_on_a_bf16_copy_and_stays_close() -> None:
    torch.manual_seed(2)
    linear = torch.nn.Linear(64, 32)
    layer = WeightOnlyLinear(linear, 8, prefill="bf16")
    assert layer.w16.dtype == torch.bfloat16 and layer.weight is linear.weight  # fp32 kept for readers
    prompt = torch.randn(1, DECODE_ROWS + 1, 64)
    with torch.inference_mode():
        got, want = layer(prompt), linear(prompt)
        no_bias = WeightOnlyLinear(torch.nn.Linear(64, 32, bias=False), 8, prefill="bf16")(prompt)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert not torch.equal(got, want)  # the bf16 copy ran, not the fp32 weights
    assert _cosine(got, want) > 0.9999
    assert no_bias.shape == want.shape
    # Decode steps take the int8 path either way.
    step = torch.randn(1, 1, 64)
    with torch.inference_mode():
        assert torch.equal(layer(step), WeightOnlyLinear(linear, 8)(step))


def test_quantize_weights_passes_the_prefill_precision_on() -> None:
    net = quantize_weights(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 32)), 4, "bf16")
    assert [m.prefill for m in net if isinstance(m, WeightOnlyLinear)] == ["bf16", "bf16"]

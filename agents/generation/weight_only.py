"""Weight-only int8 / int4 Linear layers for CPU decoding.

Decoding one token reads every weight once, so on a CPU it is bound by memory, not arithmetic: the
0.5B generator streams ~2 GB of fp32 weights per token. These layers keep a compact copy of each
weight — int8 per output channel, or int4 in groups of 32 with a scale and zero point — and multiply
it with bfloat16 activations through torch's packed CPU kernels (``_weight_int8pack_mm``,
``_weight_int4pack_mm_for_cpu``). Only small inputs (decode steps: one row per sequence) take that
path; a prompt (many rows at once) is compute-bound, not memory-bound, and runs either the original
fp32 weights (``prefill="fp32"``: exactly the fp32 model's prefill) or a bfloat16 copy of them
(``prefill="bf16"``: ~2x faster on CPUs with AMX-BF16 or AVX512-BF16, see cpu_features.py; the
products accumulate in fp32 and come back as fp32). Activations are never quantised (dynamic int8
quantises them and costs the extractive answers half their F1, see README).

The default generator's weights come from a Q4_K_M / Q5_0 GGUF, so int8 per channel holds them almost
exactly; int4 re-quantises the Q5_0 tensors to 4 bits and loses a little more.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

Bits = Literal[8, 4]
PrefillDtype = Literal["fp32", "bf16"]
#: Inputs with more rows than this (prompts) use the fp32 weights or their bf16 copy.
DECODE_ROWS = 16
INT4_GROUP = 32
#: torch's int4 CPU packing needs output features in multiples of 16, and its int8 kernel input
#: features in multiples of 16 (other widths crash the process, so they are never handed over).
INT4_ROWS = 16
INT8_COLUMNS = 16


class WeightOnlyLinear(torch.nn.Module):
    """A Linear layer whose small-batch products use an int8 or int4 copy of its weight."""

    q8: torch.Tensor
    scale: torch.Tensor
    packed: torch.Tensor
    scale_zero: torch.Tensor
    w16: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, bits: Bits, prefill: PrefillDtype = "fp32") -> None:
        super().__init__()
        if not packable(linear, bits):
            raise ValueError(
                f"int{bits} weight-only packing cannot take a {linear.in_features}->"
                f"{linear.out_features} Linear layer"
            )
        weight = linear.weight.detach().float()
        self.bits = bits
        self.prefill = prefill
        self.fp32 = linear  # prompts (prefill="fp32"); also what PEFT and .weight readers see
        if prefill == "bf16":
            # stored (in, out): a plain matmul on this layout is ~1.4x faster than F.linear's (out, in)
            self.register_buffer("w16", weight.t().to(torch.bfloat16).contiguous(), persistent=False)
        if bits == 8:
            scale = (weight.abs().amax(1) / 127).clamp(min=1e-12)
            q8 = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
            self.register_buffer("q8", q8.contiguous(), persistent=False)
            self.register_buffer("scale", scale.to(torch.bfloat16), persistent=False)
        else:
            packed, scale_zero = _pack_int4(weight)
            self.register_buffer("packed", packed, persistent=False)
            self.register_buffer("scale_zero", scale_zero, persistent=False)

    @property
    def in_features(self) -> int:
        return self.fp32.in_features

    @property
    def out_features(self) -> int:
        return self.fp32.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.fp32.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.fp32.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows > DECODE_ROWS:
            if self.prefill == "fp32":
                return self.fp32(x)
            y = torch.matmul(x.to(torch.bfloat16), self.w16).to(x.dtype)
            return y if self.fp32.bias is None else y + self.fp32.bias
        flat = x.reshape(rows, self.in_features).to(torch.bfloat16)
        if self.bits == 8:
            y = torch._weight_int8pack_mm(flat, self.q8, self.scale)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, INT4_GROUP, self.scale_zero)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return y if self.fp32.bias is None else y + self.fp32.bias

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, prefill={self.prefill}"


def _pack_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric int4 in groups of INT4_GROUP input columns, in the CPU kernel's layout: values
    0..15 with w = (q - 8) * scale + zero per group; scales and zeros as (groups, out, 2) bf16."""
    out_features, in_features = weight.shape
    groups = weight.view(out_features, in_features // INT4_GROUP, INT4_GROUP)
    low = groups.amin(-1, keepdim=True)
    scale = ((groups.amax(-1, keepdim=True) - low) / 15).clamp(min=1e-12)
    q = ((groups - low) / scale).round().clamp(0, 15).to(torch.int32).view(out_features, in_features)
    zero = low + 8 * scale
    scale_zero = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], -1).transpose(0, 1)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    return packed, scale_zero.contiguous().to(torch.bfloat16)


def packable(linear: torch.nn.Linear, bits: Bits) -> bool:
    """Whether torch's packed kernels take this layer's shape."""
    if bits == 8:
        return linear.in_features % INT8_COLUMNS == 0
    return linear.in_features % INT4_GROUP == 0 and linear.out_features % INT4_ROWS == 0


def quantize_weights(model: Any, bits: Bits, prefill: PrefillDtype = "fp32") -> Any:
    """Swap every Linear layer of ``model`` (LoRA factors excepted: they stay fp32 and tiny) for a
    WeightOnlyLinear running prompts in ``prefill`` precision, in place; returns the model. A layer
    int4 cannot pack (input columns not a multiple of 32, output rows not a multiple of 16) or int8
    cannot (input columns not a multiple of 16) stays fp32."""
    # The vocabulary projection sees one row per sequence (generation keeps the last position's
    # logits only), so a bf16 copy of it (272 MB for the default generator) would never be read.
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    swaps = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not torch.nn.Linear or "lora_" in full:
                continue
            if not packable(child, bits):
                continue
            swaps.append((module, child_name, child))
    for module, child_name, child in swaps:
        setattr(module, child_name, WeightOnlyLinear(child, bits, "fp32" if child is head else prefill))
    return model

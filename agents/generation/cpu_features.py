"""What the CPU offers for bfloat16 matrix products, and the prompt precision that follows from it.

A prompt's matrix products are compute-bound: on a CPU with AMX-BF16 (Intel Sapphire Rapids and
later) or AVX512-BF16 (Intel Cooper Lake, AMD Zen 4 and later) they run ~2x faster in bfloat16 than
in fp32; on CPUs without those instructions torch emulates bfloat16 and is slower than fp32. The flags
are read from ``/proc/cpuinfo`` (Linux); where it cannot be read the answer is "no" and prompts stay
fp32, the safe choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from agents.generation.base import Prefill, Quantize

CPUINFO = Path("/proc/cpuinfo")
#: Any one of these flags means the CPU multiplies bfloat16 natively.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor listed in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 natively; ``cpuinfo`` defaults to this machine's."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return False
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def resolve_prefill(choice: Prefill, cpuinfo: str | None = None) -> Literal["fp32", "bf16"]:
    """The prompt precision ``choice`` means on this CPU: "auto" is bf16 where it is native."""
    if choice == "auto":
        return "bf16" if native_bf16(cpuinfo) else "fp32"
    return choice


def prompt_precision(quantize: Quantize, prefill: Prefill, cpuinfo: str | None = None) -> str:
    """How the in-process generator runs a prompt: ``prefill`` resolved for the weight-only modes;
    the others run prompts as they hold their weights ("fp32", "bf16", or dynamic "int8")."""
    if quantize in ("int8-weights", "int4-weights"):
        return resolve_prefill(prefill, cpuinfo)
    return "fp32" if quantize == "none" else quantize

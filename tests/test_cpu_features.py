from __future__ import annotations

from pathlib import Path

import pytest

from agents.generation import cpu_features
from agents.generation.cpu_features import cpu_flags, native_bf16, prompt_precision, resolve_prefill

SAPPHIRE_RAPIDS = (
    "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
)
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n\nprocessor\t: 1\nflags\t\t: amx_bf16\n"


def test_flags_come_from_the_first_processor() -> None:
    assert "amx_bf16" in cpu_flags(SAPPHIRE_RAPIDS)
    assert cpu_flags(SKYLAKE) == {"fpu", "avx2", "avx512f", "avx512bw"}
    assert cpu_flags("no flags here") == set()


@pytest.mark.parametrize(
    ("cpuinfo", "native"), [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (SKYLAKE, False), ("", False)]
)
def test_auto_is_bf16_only_where_the_cpu_multiplies_it_natively(cpuinfo: str, native: bool) -> None:
    assert native_bf16(cpuinfo) is native
    assert resolve_prefill("auto", cpuinfo) == ("bf16" if native else "fp32")
    assert resolve_prefill("fp32", cpuinfo) == "fp32" and resolve_prefill("bf16", cpuinfo) == "bf16"


def test_an_unreadable_cpuinfo_means_fp32(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpu_features, "CPUINFO", tmp_path / "absent")  # macOS, Windows, sandboxes
    assert not native_bf16()
    assert resolve_prefill("auto") == "fp32"


def test_prompt_precision_applies_prefill_to_the_weight_only_modes() -> None:
    assert prompt_precision("int8-weights", "auto", SAPPHIRE_RAPIDS) == "bf16"
    assert prompt_precision("int4-weights", "auto", SKYLAKE) == "fp32"
    assert prompt_precision("none", "bf16", SAPPHIRE_RAPIDS) == "fp32"
    assert prompt_precision("bf16", "fp32", SKYLAKE) == "bf16"
    assert prompt_precision("int8", "auto", SAPPHIRE_RAPIDS) == "int8"

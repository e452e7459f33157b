"""Tiny LoRA adapters for the tiny test model, built in code with PEFT (milliseconds).

``lora_B`` is initialised at random (PEFT starts it at zero), so an adapter changes the model's
output: tests can tell base, adapter A and adapter B apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def build_tiny_adapter(
    base_dir: Path,
    out: Path,
    *,
    seed: int = 1,
    r: int = 8,
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    scale: float = 0.5,
) -> Path:
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) for ``base_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    return out

"""The LoRA adapter registry: which domain adapters exist, where they live, what they are for.

An adapter is a PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``), the format
PEFT, vLLM (``LoRARequest`` / ``--lora-modules``) and ``ragnet train lora`` share. Before a backend
loads one, :func:`check_adapter` compares its weight shapes with the base model's config, so an
adapter built for another base model is refused with a message instead of failing inside an engine.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.errors import AdapterMismatch, UnknownAdapter

#: Adapters shipped in the package (each a PEFT folder with a DATA_CARD.md).
SHIPPED_DIR = Path(__file__).parent / "models" / "adapters"

NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,47}$"


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: Path
    #: Router labels this adapter serves (a router trained on these labels sends their requests here).
    domains: tuple[str, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "domains": list(self.domains),
            "description": self.description,
        }


@dataclass(frozen=True)
class AdapterRegistry:
    specs: tuple[AdapterSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"adapter names must be unique; repeated: {', '.join(dupes)}")
        for spec in self.specs:
            if not re.match(NAME_PATTERN, spec.name):
                raise ValueError(f"adapter name {spec.name!r} must match {NAME_PATTERN}")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str) -> AdapterSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise UnknownAdapter(name, self.names)

    def for_domain(self, domain: str) -> AdapterSpec | None:
        """The adapter serving a router label, if any."""
        return next((s for s in self.specs if domain in s.domains), None)

    def check_names(self, names: Iterable[str]) -> None:
        for name in names:
            self.get(name)


def shipped_specs() -> list[AdapterSpec]:
    """The adapters in the package, described by each folder's ``ragnet_adapter.json``."""
    specs = []
    if SHIPPED_DIR.is_dir():
        for folder in sorted(p for p in SHIPPED_DIR.iterdir() if (p / "adapter_config.json").is_file()):
            meta_file = folder / "ragnet_adapter.json"
            meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
            specs.append(
                AdapterSpec(
                    name=meta.get("name", folder.name),
                    path=folder,
                    domains=tuple(meta.get("domains", ())),
                    description=meta.get("description", ""),
                )
            )
    return specs


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from a safetensors header without loading the weights."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise AdapterMismatch(f"{path} is not a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > 100_000_000:
            raise AdapterMismatch(f"{path} is not a safetensors file")
        header = json.loads(fh.read(size))
    return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _module_dims(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of the decoder's projections, from a transformers config.json."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    inter = int(config.get("intermediate_size") or 4 * hidden)
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv * head_dim),
        "v_proj": (hidden, kv * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


_LORA_KEY = re.compile(r"layers\.(\d+)\.[a-z_]+\.([a-z_]+)\.lora_([AB])(?:\.[a-z_]+)?\.weight$")


def check_adapter(adapter_dir: Path, base_config: dict[str, Any] | Path) -> dict[str, Any]:
    """Refuse (AdapterMismatch) an adapter folder whose weights do not fit the base model.

    Returns the adapter's ``adapter_config.json``. ``base_config`` is the base model's config.json
    (a dict or its folder)."""
    if isinstance(base_config, Path):
        cfg_file = base_config / "config.json"
        if not cfg_file.is_file():
            raise AdapterMismatch(f"no base-model config.json in {base_config}")
        base: dict[str, Any] = json.loads(cfg_file.read_text(encoding="utf-8"))
    else:
        base = base_config
    cfg_path = adapter_dir / "adapter_config.json"
    weights = adapter_dir / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise AdapterMismatch(
            f"{adapter_dir} is not a PEFT adapter folder (needs adapter_config.json and "
            "adapter_model.safetensors; `ragnet train lora` writes one)"
        )
    try:
        adapter_config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdapterMismatch(f"{cfg_path} is not valid JSON: {exc}") from exc
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise AdapterMismatch(f"{adapter_dir} is a {adapter_config.get('peft_type')} adapter, not LoRA")
    dims = _module_dims(base)
    layers = int(base.get("num_hidden_layers", 0))
    found = 0
    for key, shape in safetensors_shapes(weights).items():
        match = _LORA_KEY.search(key)
        if not match:
            continue
        layer, module, part = int(match.group(1)), match.group(2), match.group(3)
        if layer >= layers:
            raise AdapterMismatch(
                f"adapter {adapter_dir.name!r} has weights for layer {layer} but the base model has "
                f"{layers} layers: it was built for another base model"
            )
        if module not in dims:
            continue
        fan_in, fan_out = dims[module]
        got = shape[1] if part == "A" else shape[0]
        want = fan_in if part == "A" else fan_out
        if got != want:
            raise AdapterMismatch(
                f"adapter {adapter_dir.name!r} does not fit the base model: {module} lora_{part} has "
                f"{got} features where the base model has {want}; it was built for another base model"
            )
        found += 1
    if not found:
        raise AdapterMismatch(f"{weights} holds no LoRA weights for the decoder's projections")
    return dict(adapter_config)


def describe(specs: Sequence[AdapterSpec]) -> list[dict[str, Any]]:
    return [s.as_dict() for s in specs]

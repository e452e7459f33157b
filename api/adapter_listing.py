"""What `ragnet adapters list` and GET /v1/adapters show: the registry, and whether each adapter fits
the base model and is loaded."""

from __future__ import annotations

from typing import Any

from agents.adapters import SHIPPED_DIR, AdapterSpec, check_adapter, shipped_specs
from agents.errors import AdapterMismatch
from api.services import Services


def _row(services: Services, spec: AdapterSpec, source: str) -> dict[str, Any]:
    row: dict[str, Any] = {**spec.as_dict(), "source": source}
    if services.settings.generator_backend == "openai":
        row["fits_base"] = None  # the server checks its --lora-modules
    else:
        try:
            check_adapter(spec.path, services.generator_path)
            row["fits_base"] = True
        except AdapterMismatch as exc:
            row["fits_base"], row["problem"] = False, str(exc)
    loaded = services.generator.adapters if services.is_loaded("generator") else None
    row["loaded"] = None if loaded is None else spec.name in loaded
    card = spec.path / "DATA_CARD.md"
    row["data_card"] = str(card) if card.is_file() else None
    return row


def adapter_report(services: Services) -> dict[str, Any]:
    s = services.settings
    registry = services.adapter_registry
    rows = [
        {
            **_row(services, spec, "shipped" if spec.path.is_relative_to(SHIPPED_DIR) else "path"),
            "in_registry": True,
        }
        for spec in registry.specs
    ]
    for spec in shipped_specs():  # shipped adapters not registered: available with {"name": ...}
        if spec.name not in registry.names:
            rows.append({**_row(services, spec, "shipped"), "in_registry": False})
    return {
        "backend": s.generator_backend,
        "base_model": s.openai_model or s.openai_base_url
        if s.generator_backend == "openai"
        else str(services.generator_path),
        "router": {
            "mode": s.router,
            "threshold": s.router_threshold,
            "model": str(s.router_model) if s.router_model else "shipped",
        },
        "adapters": rows,
    }

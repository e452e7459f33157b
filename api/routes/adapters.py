from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.adapter_listing import adapter_report
from api.auth import PrincipalDep
from api.deps import ServicesDep

router = APIRouter(prefix="/v1", tags=["adapters"])


@router.get("/adapters")
def list_adapters(services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """The LoRA adapter registry (name, path, domains, description; whether each fits the base model
    and is loaded), the generation backend and the router's settings."""
    return adapter_report(services)

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(services: ServicesDep) -> Health:
    """Liveness, and whether the generator is loaded."""
    return Health(
        status="ok",
        vector_store=services.settings.vector_store,
        generator_ready=services.is_loaded("generator"),
    )

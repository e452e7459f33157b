"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import health, search
from api.services import Services
from api.settings import Settings


def create_app(
    settings: Settings | None = None, services: Services | None = None, *, warm: bool = False
) -> FastAPI:
    """Build the app. ``services`` defaults to one built from ``settings``; ``warm`` loads models at start."""
    owned = services is None
    services = services or Services(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            _ = services.store, services.generator  # fail at start, not on the first request
        yield
        if owned:
            services.close()

    app = FastAPI(
        title="ragnet",
        version="0.1.0",
        description='Agentic RAG search-answer service. Errors are `{"error": {"code", "message"}}`.',
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    app.include_router(health.router)
    app.include_router(search.router)
    return app

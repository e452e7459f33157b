"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import errors
from api.routes import adapters, admin, admin_page, assistants, handoffs, health, openai_compat, search
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
        services.jobs.start()  # resumes jobs a crash or restart interrupted
        services.webhooks.start()  # and handoff webhooks still pending
        yield
        services.webhooks.stop()
        services.jobs.stop()
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
    app.include_router(adapters.router)
    app.include_router(admin.router)
    app.include_router(assistants.router)
    app.include_router(handoffs.router)
    app.include_router(openai_compat.router)
    app.include_router(admin_page.router)

    @app.middleware("http")
    async def _upload_limit(request: Request, call_next: Any) -> Any:
        # Refuse an oversized upload before reading its body (the handler also counts bytes).
        length = request.headers.get("content-length")
        limit = services.settings.max_upload_bytes
        if request.method == "POST" and length and length.isdigit() and int(length) > limit + 1_000_000:
            body = errors.error_body(
                "too_large", f"the upload is over the {limit}-byte limit (RAGNET_MAX_UPLOAD_BYTES)"
            )
            return JSONResponse(body, status_code=413)
        return await call_next(request)

    return app

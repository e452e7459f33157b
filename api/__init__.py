"""The outside: FastAPI app, routes, schemas, CLI, settings — the composition root."""

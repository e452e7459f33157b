"""Shared fixtures: a tiny generator built in code, the real embedder from its PyPI package,
and Services over a temp data folder. No test touches the network (pytest-socket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api import runtime_env

runtime_env.apply()

from agents.generation.transformers_backend import TransformersGenerator  # noqa: E402
from api.services import Services  # noqa: E402
from api.settings import Settings  # noqa: E402
from retrieval.embedder import SentenceTransformerEmbedder, default_embedder_path  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_generator(tiny_model_dir: Path) -> TransformersGenerator:
    return TransformersGenerator(tiny_model_dir, quantize="none")


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(default_embedder_path())


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(__import__("os").environ):
        if key.startswith("RAGNET_"):
            monkeypatch.delenv(key)
    return Settings(
        data_dir=tmp_path / "data",
        generator_path=tiny_model_dir,
        generator_quantize="none",
        max_new_tokens=8,
        auth="none",  # tests/test_auth.py covers keys
        # the scripted and tiny generators read here; the extractive reader has its own tests
        # (tests/test_extractive_reader.py, a tiny encoder built in code)
        reader="generator",
    )


@pytest.fixture
def services(
    settings: Settings, embedder: SentenceTransformerEmbedder, tiny_generator: TransformersGenerator
) -> Iterator[Services]:
    svc = Services(settings, embedder=embedder, generator=tiny_generator)
    yield svc
    svc.close()


@pytest.fixture
def demo_kb_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "demo" / "kb"


#: Asks the demo kb an agentic question over HTTP with settings changed: (status code, JSON body).
AskWith = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def agentic_answer_with(
    settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tiny_generator: TransformersGenerator,
    demo_kb_dir: Path,
) -> AskWith:
    """For bad-configuration tests: a fresh app whose settings differ by ``update``."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from retrieval.loaders import iter_documents

    def ask(**update: Any) -> tuple[int, dict[str, Any]]:
        svc = Services(settings.model_copy(update=update), embedder=embedder, generator=tiny_generator)
        svc.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
        try:
            with TestClient(create_app(services=svc)) as client:
                r = client.post(
                    "/v1/search/answer",
                    json={"kb": "demo", "question": "Who carved the Rosetta Stone?", "mode": "agentic"},
                )
                return r.status_code, r.json()
        finally:
            svc.close()

    return ask

"""LoRA routing through the service: registry, router, per-request adapters, HTTP and CLI.

Tiny generator with two tiny adapters (random LoRA factors, so each changes the output), the real
MiniLM embedder, a router trained here on a few labelled sentences, a real Qdrant Edge index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agents.adapters import AdapterSpec
from agents.errors import AdapterMismatch, UnknownAdapter
from agents.generation.base import GenerationRequest
from agents.generation.routed import RoutedGenerator
from agents.generation.transformers_backend import TransformersGenerator
from agents.router_training import train_router
from api.app import create_app
from api.services import Services
from api.settings import AdapterEntry, Settings
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.loaders import iter_documents
from tests.tiny_lora import build_tiny_adapter

BANKING = [
    "I still have not received my new card",
    "How do I top up my account with a bank transfer?",
    "My card payment was declined at the shop",
    "Why was I charged a fee for my cash withdrawal?",
    "Can I change the PIN of my debit card?",
    "The exchange rate on my transfer looks wrong",
]
GENERAL = [
    "When did Apollo 11 land on the Moon?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the capital city of Australia?",
    "How many moons does Jupiter have?",
    "Which scripts are carved on the Rosetta Stone?",
    "Who painted the Mona Lisa?",
]


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("routing-adapters")
    return {
        "banking": build_tiny_adapter(tiny_model_dir, root / "banking", seed=3),
        "legal": build_tiny_adapter(tiny_model_dir, root / "legal", seed=4),
    }


@pytest.fixture(scope="module")
def router_dir(embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = train_router(
        BANKING + GENERAL,
        ["banking"] * len(BANKING) + ["general"] * len(GENERAL),
        lambda texts: embedder.embed(texts, kind="query"),
        embedder=embedder.name,
    )
    out = tmp_path_factory.mktemp("router")
    model.save(out)
    return out


@pytest.fixture
def routed(
    settings: Settings,
    embedder: SentenceTransformerEmbedder,
    tiny_model_dir: Path,
    adapter_dirs: dict[str, Path],
    router_dir: Path,
    demo_kb_dir: Path,
) -> Iterator[tuple[Services, TestClient]]:
    entries = [
        AdapterEntry(name="banking", path=adapter_dirs["banking"], domains=["banking"], description="bank"),
        AdapterEntry(name="legal", path=adapter_dirs["legal"], domains=["legal"], description="law"),
    ]
    s = settings.model_copy(update={"adapters": entries, "router_model": router_dir, "router_threshold": 0.6})
    specs = [AdapterSpec(e.name, e.path, tuple(e.domains), e.description) for e in entries]
    generator = TransformersGenerator(tiny_model_dir, adapters=specs)
    services = Services(s, embedder=embedder, generator=generator)
    services.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    with TestClient(create_app(services=services)) as client:
        yield services, client
    services.close()


def test_router_sends_domain_questions_to_their_adapter_and_the_rest_to_base(
    routed: tuple[Services, TestClient],
) -> None:
    services, _ = routed
    bank = services.route("My card has not arrived yet, what should I do?")
    assert bank.adapters == {"banking": 1.0} and bank.reason == "classifier"
    general = services.route("Who discovered penicillin?")
    assert general.adapters == {} and general.label == "general"
    asked = services.route("Who discovered penicillin?", "legal")
    assert asked.adapters == {"legal": 1.0} and asked.reason == "requested"


def test_answer_shows_the_route_and_the_adapter_changes_generation(
    routed: tuple[Services, TestClient],
) -> None:
    services, client = routed
    question = "Which team won the 2018 FIFA World Cup?"  # not in the demo kb: the model answers alone
    base = client.post("/v1/search/answer", json={"kb": "demo", "question": question, "mode": "single"})
    assert base.status_code == 200, base.text
    assert base.json()["route"]["adapters"] == {}
    legal = client.post(
        "/v1/search/answer", json={"kb": "demo", "question": question, "mode": "single", "adapter": "legal"}
    ).json()
    assert legal["route"] == {**legal["route"], "adapters": {"legal": 1.0}, "reason": "requested"}
    assert legal["answer"] != base.json()["answer"]
    # The trace, fetched later, keeps the decision.
    trace = client.get(f"/v1/search/traces/{legal['id']}").json()
    assert trace["trace"]["route"]["adapters"] == {"legal": 1.0}
    # Routed generation equals asking the generator for that adapter directly.
    request = GenerationRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=6)
    via_route = RoutedGenerator(services.generator, {"legal": 1.0}).generate(request).text
    assert (
        via_route
        == services.generator.generate(GenerationRequest(**{**request.__dict__, "adapter": "legal"})).text
    )


def test_unknown_adapter_is_a_400_and_streams_never_start(routed: tuple[Services, TestClient]) -> None:
    _, client = routed
    for stream in (False, True):
        r = client.post(
            "/v1/search/answer",
            json={
                "kb": "demo",
                "question": "When did Apollo 11 land?",
                "adapter": "medical",
                "stream": stream,
            },
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "unknown_adapter"
        assert "banking, legal" in r.json()["error"]["message"]
    bad = client.post("/v1/search/answer", json={"kb": "demo", "question": "x?", "adapter": "Bad Name!"})
    assert bad.status_code == 422


def test_streamed_answer_announces_the_route_first(routed: tuple[Services, TestClient]) -> None:
    _, client = routed
    r = client.post(
        "/v1/search/answer",
        json={"kb": "demo", "question": "I was charged twice for my card payment", "stream": True},
    )
    first = r.text.split("\n\n")[0]
    data = json.loads(first.split("data: ", 1)[1])
    assert data["route"]["label"] == "banking" and data["route"]["adapters"] == {"banking": 1.0}


def test_adapters_listing_over_http_and_cli(
    routed: tuple[Services, TestClient],
    tmp_path: Path,
    adapter_dirs: dict[str, Path],
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _services, client = routed
    body = client.get("/v1/adapters").json()
    registered = [a for a in body["adapters"] if a["in_registry"]]
    assert [a["name"] for a in registered] == ["banking", "legal"]
    assert all(a["fits_base"] and a["loaded"] for a in registered)
    assert body["router"]["threshold"] == 0.6

    from api import cli

    env = {
        "RAGNET_DATA_DIR": str(tmp_path / "d"),
        "RAGNET_GENERATOR_PATH": str(tiny_model_dir),
        "RAGNET_ADAPTERS": json.dumps(
            [{"name": "tiny-bank", "path": str(adapter_dirs["banking"]), "domains": ["banking"]}]
        ),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main(["adapters", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first = listed["adapters"][0]
    assert first["name"] == "tiny-bank"
    assert first | {"fits_base": True, "source": "path", "domains": ["banking"], "in_registry": True} == first
    # The shipped adapter is listed as available, not registered, and does not fit the tiny model.
    shipped = [a for a in listed["adapters"] if a["source"] == "shipped"]
    assert shipped and not shipped[0]["in_registry"] and shipped[0]["fits_base"] is False


def test_no_adapters_by_default_and_shipped_ones_by_name(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    services = Services(settings, embedder=embedder)
    try:
        assert services.adapter_registry.names == []
        assert services.route("My card has not arrived").reason == "no adapters"
    finally:
        services.close()
    named = settings.model_copy(update={"adapters": [AdapterEntry(name="banking")]})
    services = Services(named, embedder=embedder)
    try:
        spec = services.adapter_registry.get("banking")
        assert spec.path.name == "banking" and (spec.path / "DATA_CARD.md").is_file()
        assert spec.domains == ("banking",)
        with pytest.raises(AdapterMismatch, match="built for another base model"):
            _ = services.generator  # the shipped adapter fits Qwen2.5-0.5B, not the tiny test model
    finally:
        services.close()
    unknown = settings.model_copy(update={"adapters": [AdapterEntry(name="medical")]})
    with pytest.raises(UnknownAdapter, match="known adapters: banking"):
        _ = Services(unknown, embedder=embedder).adapter_registry


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_generation_server_that_is_down_is_a_503(
    settings: Settings, embedder: SentenceTransformerEmbedder, demo_kb_dir: Path
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = settings.model_copy(
        update={
            "generator_backend": "openai",
            "openai_base_url": f"http://127.0.0.1:{port}/v1",
            "openai_model": "qwen",
            "openai_retries": 1,
            "openai_timeout_s": 2.0,
        }
    )
    services = Services(down, embedder=embedder)
    services.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    try:
        with TestClient(create_app(services=services)) as client:
            r = client.post(
                "/v1/search/answer", json={"kb": "demo", "question": "Who won the 2018 World Cup?"}
            )
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "backend_unavailable"
            assert f"127.0.0.1:{port}" in r.json()["error"]["message"]
    finally:
        services.close()


def test_an_overlong_prompt_is_a_422(
    settings: Settings, embedder: SentenceTransformerEmbedder, tiny_model_dir: Path, demo_kb_dir: Path
) -> None:
    generator = TransformersGenerator(tiny_model_dir, max_prompt_tokens=300)
    services = Services(settings, embedder=embedder, generator=generator)
    services.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    try:
        with TestClient(create_app(services=services)) as client:
            long = "Which scripts are carved on the Rosetta Stone? " * 40  # under the 2000-character limit
            r = client.post("/v1/search/answer", json={"kb": "demo", "question": long, "mode": "single"})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_prompt"
            assert "RAGNET_MAX_PROMPT_TOKENS" in r.json()["error"]["message"]
    finally:
        services.close()

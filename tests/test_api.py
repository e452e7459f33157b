"""Integration through the HTTP API: tiny generator, real embedder, real Qdrant Edge, temp folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from retrieval.loaders import iter_documents


@pytest.fixture
def client(services: Services, demo_kb_dir: Path) -> Iterator[TestClient]:
    services.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    with TestClient(create_app(services=services)) as c:
        yield c


def _sse(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_healthz_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/search/answer" in spec["paths"]


def test_grounded_answer_with_citations(client: TestClient) -> None:
    r = client.post(
        "/v1/search/answer", json={"kb": "demo", "question": "When did Apollo 11 land on the Moon?"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grounded"] is True
    assert body["citations"][0]["doc_id"] == "apollo-11.html"
    assert [c["n"] for c in body["citations"]] == list(range(1, len(body["citations"]) + 1))
    assert set(body["citations"][0]) >= {"doc_id", "title", "text", "score"}
    assert {"retrieve_ms", "generate_ms", "total_ms"} <= set(body["timings"])
    assert isinstance(body["answer"], str) and body["id"]


def test_off_topic_question_falls_back_ungrounded(client: TestClient) -> None:
    r = client.post(
        "/v1/search/answer", json={"kb": "demo", "question": "Which team won the 2018 FIFA World Cup?"}
    )
    body = r.json()
    assert body["grounded"] is False and body["citations"] == []


def test_streaming_sends_retrieval_tokens_then_done(client: TestClient) -> None:
    payload = {"kb": "demo", "question": "What does oxidation do to tea leaves?", "stream": True}
    with client.stream("POST", "/v1/search/answer", json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.read().decode())
    kinds = [e for e, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "token" in kinds
    # the steps arrive as they happen, before the answer's tokens
    assert kinds.index("step") < kinds.index("retrieval") < kinds.index("token")
    done = events[-1][1]
    assert done["id"] == events[0][1]["id"] and done["trace"]["pipeline"] == "single"
    streamed = "".join(d["text"] for e, d in events if e == "token").strip()
    assert done["answer"].startswith(streamed)  # plus a [n] marker when attributed afterwards
    assert done["grounded"] is True


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"kb": "demo", "question": "   "}, 422, "question is empty"),
        ({"kb": "demo", "question": "x" * 2001}, 422, "limit is 2000"),
        ({"kb": "demo", "question": "x" * 200_000}, 422, "question"),
        ({"kb": "demo", "question": "x" * 10_240, "mode": "agentic"}, 422, "limit is 2000"),  # 10 KB
        ({"kb": "demo", "question": "q", "mode": "deep"}, 422, "mode"),
        ({"kb": "demo"}, 422, "question: Field required"),
        ({"kb": "../etc", "question": "hi"}, 422, "kb"),
        ({"kb": "nope", "question": "hi"}, 404, "'nope' does not exist"),
        ({"kb": "nope", "question": "hi", "stream": True}, 404, "does not exist"),
        ({"kb": "demo", "question": "hi", "top_k": 0}, 422, "top_k"),
    ],
)
def test_bad_input_gets_a_clear_json_error(
    client: TestClient, payload: dict, status: int, fragment: str
) -> None:
    r = client.post("/v1/search/answer", json=payload)
    assert r.status_code == status
    error = r.json()["error"]
    assert fragment in error["message"] and error["code"]


def test_malformed_json_and_unknown_route(client: TestClient) -> None:
    r = client.post("/v1/search/answer", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_unprepared_generator_is_a_503(tmp_path: Path, services: Services, demo_kb_dir: Path) -> None:
    from api.settings import Settings

    svc = Services(
        Settings(data_dir=tmp_path / "d", generator_path=tmp_path / "missing", auth="none"),
        embedder=services.embedder,
    )
    svc.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    try:
        with TestClient(create_app(services=svc)) as c:
            r = c.post("/v1/search/answer", json={"kb": "demo", "question": "tea?"})
        assert r.status_code == 503 and "ragnet models prepare" in r.json()["error"]["message"]
    finally:
        svc.close()

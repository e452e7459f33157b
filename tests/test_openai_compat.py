"""The OpenAI-compatible endpoint, driven by the real ``openai`` package against the running app
(uvicorn on loopback): models, completions streaming and not, usage, citations, sessions, errors.

The generator is scripted (the model only); retrieval, both graphs, the store and the HTTP server
are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from api.app import create_app
from api.services import Services
from api.settings import Settings
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.faq_records import make_record
from retrieval.loaders import iter_documents
from tests.browser import live_server
from tests.scripted_generator import ScriptedGenerator

RESET = "To reset your password, open Settings > Account and choose Reset password."
CARVED = "Egyptian scribes and stonemasons [1]"


pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])
DEMO_KB = Path(__file__).resolve().parents[1] / "demo" / "kb"


@pytest.fixture(scope="module")
def base_url(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder, tiny_model_dir: Path
) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openai") / "data",
        generator_path=tiny_model_dir,
        generator_quantize="none",
        max_new_tokens=8,
        auth="none",
        reader="generator",
    )
    gen = ScriptedGenerator([("Rosetta Stone", CARVED)], default="I am not sure.")
    svc = Services(settings, embedder=embedder, generator=gen)
    svc.ingestor.ingest("demo", iter_documents([DEMO_KB], max_bytes=10**6))
    info = svc.metadata.ensure_kb("help")
    svc.ingestor.ingest_faqs(
        info, [make_record({"id": "reset", "questions": ["How do I reset my password?"], "answer": RESET})]
    )
    svc.copilot_store.create_assistant(
        "helpdesk",
        {"kb_ids": [svc.metadata.get_kb("help").id, svc.metadata.get_kb("demo").id]},  # type: ignore[union-attr]
    )
    with live_server(create_app(services=svc)) as url:
        yield url
    svc.close()


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _extra(obj: Any, name: str) -> Any:
    """An extension field the OpenAI types keep as an extra attribute."""
    extra = obj.model_extra or {}
    return extra.get(name)


def test_models_list_assistants_and_knowledge_bases(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"copilot/helpdesk", "search/help", "search/demo"} <= ids


def test_a_faq_answers_verbatim_with_its_citation(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="copilot/helpdesk", messages=[{"role": "user", "content": "How do I reset my password?"}]
    )
    message = out.choices[0].message
    assert message.content == RESET and out.choices[0].finish_reason == "stop"
    citations = _extra(message, "citations")
    assert citations and citations[0]["kind"] == "faq" and citations[0]["doc_id"] == "reset"
    ragnet = _extra(out, "ragnet")
    assert ragnet["answer_source"] == "faq" and ragnet["llm_calls"] == 0
    assert out.usage is not None and out.usage.completion_tokens > 0


def test_a_grounded_answer_streams_with_citations_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="copilot/helpdesk",
        messages=[{"role": "user", "content": "Who carved the Rosetta Stone?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CARVED
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    citations = _extra(final, "citations")
    assert citations and citations[0]["n"] == 1 and citations[0]["kind"] == "document"
    assert _extra(final, "ragnet")["answer_source"] == "documents"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (
        chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )


def test_the_history_in_messages_rewrites_a_follow_up(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="copilot/helpdesk",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Who carved the Rosetta Stone?"},
            {"role": "assistant", "content": CARVED},
            {"role": "user", "content": "Who carved it?"},
        ],
    )
    rewrite = _extra(out, "ragnet")["rewrite"]
    assert "Rosetta" in rewrite["standalone"] and rewrite["method"] != "unchanged"
    assert out.choices[0].message.content == CARVED


def test_search_models_answer_from_one_knowledge_base(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="search/demo", messages=[{"role": "user", "content": "Who carved the Rosetta Stone?"}]
    )
    assert out.choices[0].message.content == CARVED
    citations = _extra(out.choices[0].message, "citations")
    assert citations and all(c["kb"] == "demo" for c in citations)


def test_a_session_id_stores_the_exchange(client: openai.OpenAI, base_url: str) -> None:
    import httpx

    sid = httpx.post(f"{base_url}/v1/assistants/helpdesk/sessions", json={}).json()["id"]
    for question in ["Who carved the Rosetta Stone?", "Who carved it?"]:
        client.chat.completions.create(
            model="copilot/helpdesk",
            messages=[{"role": "user", "content": question}],
            extra_body={"session_id": sid},
        )
    messages = httpx.get(f"{base_url}/v1/assistants/helpdesk/sessions/{sid}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert "Rosetta" in messages[2]["standalone"]  # the second turn was read with the stored history


def test_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="copilot/nope", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    body = missing.value.body
    assert isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body)

    with pytest.raises(openai.UnprocessableEntityError) as empty:
        client.chat.completions.create(model="copilot/helpdesk", messages=[])
    assert empty.value.body and "messages" in str(empty.value.body)

    with pytest.raises(openai.UnprocessableEntityError) as order:
        client.chat.completions.create(
            model="copilot/helpdesk",
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        )
    assert "alternate" in str(order.value.body)

    with pytest.raises(openai.NotFoundError):  # OpenAI's own answer to an unknown model
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

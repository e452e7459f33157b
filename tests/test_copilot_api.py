"""The copilot over HTTP: assistants, sessions, FAQ-first answers, strict refusals, handoffs,
feedback turned into FAQs, streaming, stateless mode, bad input and who may see what.

The generator is scripted (tests/scripted_generator.py: the model only); retrieval, the graph,
the SQLite store and the API are the real ones over the demo knowledge base.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from api.webhooks import WebhookSender
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.faq_records import make_record
from retrieval.loaders import iter_documents
from tests.scripted_generator import ScriptedGenerator

RESET = "To reset your password, open Settings > Account and choose Reset password."
PRICE = "The Pro plan costs 12 dollars a month."


def _generator() -> ScriptedGenerator:
    return ScriptedGenerator(
        [("Who carved the Rosetta Stone", "Egyptian scribes and stonemasons [1]")], default="I am not sure."
    )


@pytest.fixture
def gen() -> ScriptedGenerator:
    return _generator()


@pytest.fixture
def svc(
    settings: Settings, embedder: SentenceTransformerEmbedder, gen: ScriptedGenerator, demo_kb_dir: Path
) -> Iterator[Services]:
    s = Services(
        settings.model_copy(update={"webhook_timeout_s": 0.3, "webhook_retries": 1}),
        embedder=embedder,
        generator=gen,
    )
    s.ingestor.ingest("demo", iter_documents([demo_kb_dir], max_bytes=10**6))
    info = s.metadata.ensure_kb("help")
    s.ingestor.ingest_faqs(
        info,
        [
            make_record({"id": "reset", "questions": ["How do I reset my password?"], "answer": RESET}),
            make_record({"id": "price", "questions": ["How much does the Pro plan cost?"], "answer": PRICE}),
        ],
    )
    yield s
    s.close()


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=svc)) as c:
        yield c


def _assistant(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {"name": "helpdesk", "kbs": ["help", "demo"], **extra}
    r = client.post("/v1/assistants", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _session(client: TestClient, assistant: str = "helpdesk") -> str:
    r = client.post(f"/v1/assistants/{assistant}/sessions", json={"user": "cust-1"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _say(client: TestClient, sid: str, text: str, assistant: str = "helpdesk") -> dict[str, Any]:
    r = client.post(f"/v1/assistants/{assistant}/sessions/{sid}/messages", json={"content": text})
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- assistants ------------------------------------------------------------------------------
def test_assistant_crud(client: TestClient) -> None:
    made = _assistant(client, strict=False, top_k=3, system_prompt="Be terse.")
    assert made["kbs"] == ["help", "demo"] and made["strict"] is False and made["top_k"] == 3
    assert made["faq_threshold"] is None and made["handoff_confidence"] == 0.1
    assert client.get("/v1/assistants/helpdesk").json()["id"] == made["id"]
    assert [a["name"] for a in client.get("/v1/assistants").json()["assistants"]] == ["helpdesk"]

    r = client.patch(
        f"/v1/assistants/{made['id']}", json={"strict": True, "faq_threshold": 0.9, "name": "desk"}
    )
    assert r.status_code == 200 and r.json()["strict"] is True and r.json()["faq_threshold"] == 0.9
    assert r.json()["system_prompt"] == "Be terse."  # untouched fields stay
    assert client.patch("/v1/assistants/desk", json={"faq_threshold": None}).json()["faq_threshold"] is None

    assert client.post("/v1/assistants", json={"name": "desk", "kbs": ["help"]}).status_code == 409
    assert client.post("/v1/assistants", json={"name": "x", "kbs": ["nope"]}).status_code == 404
    assert client.post("/v1/assistants", json={"name": "x", "kbs": []}).status_code == 422
    assert client.post("/v1/assistants", json={"name": "x", "kbs": ["help"], "bogus": 1}).status_code == 422
    assert (
        client.post("/v1/assistants", json={"name": "x", "kbs": ["help"], "adapter": "nope"}).status_code
        == 400
    )
    bad_hook = client.post("/v1/assistants", json={"name": "x", "kbs": ["help"], "webhook_url": "ftp://x"})
    assert bad_hook.status_code == 422

    sid = _session(client, "desk")
    _say(client, sid, "How do I reset my password?", "desk")
    assert client.delete("/v1/assistants/desk").status_code == 204
    assert client.get("/v1/assistants/desk").status_code == 404
    assert (
        client.post(f"/v1/assistants/desk/sessions/{sid}/messages", json={"content": "hi"}).status_code == 404
    )


def test_renaming_a_knowledge_base_keeps_its_assistants(client: TestClient) -> None:
    _assistant(client)
    assert client.patch("/v1/kbs/help", json={"name": "helpcenter"}).status_code == 200
    assert client.get("/v1/assistants/helpdesk").json()["kbs"] == ["helpcenter", "demo"]


# --- FAQ first ---------------------------------------------------------------------------
def test_a_matching_faq_answers_verbatim_with_no_llm_call(client: TestClient, gen: ScriptedGenerator) -> None:
    _assistant(client)
    sid = _session(client)
    out = _say(client, sid, "How do I reset my password?")
    assert out["answer"] == RESET and out["answer_source"] == "faq"
    assert out["faq"]["id"] == "reset" and out["faq"]["kb"] == "help"
    assert out["trace"]["llm_calls"] == 0 and gen.prompts == []
    assert [(c["kind"], c["doc_id"], c["cited"]) for c in out["citations"]] == [("faq", "reset", True)]
    # stored like any other answer, with its trace
    session = client.get(f"/v1/assistants/helpdesk/sessions/{sid}").json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    assert session["messages"][1]["content"] == RESET and session["messages"][1]["faq"]["id"] == "reset"
    assert session["title"] == "How do I reset my password?"
    # a follow-up about the verbatim answer: rewritten from it, and the generator sees it
    follow = _say(client, sid, "How long does it take?")
    assert "password" in follow["rewrite"]["standalone"], follow["rewrite"]
    seen = [m["content"] for m in gen.requests[-1].messages]
    assert any(RESET in text for text in seen), seen


def test_a_follow_up_is_rewritten_from_the_history(client: TestClient) -> None:
    _assistant(client)
    sid = _session(client)
    _say(client, sid, "How much does the Pro plan cost?")
    out = _say(client, sid, "Who carved the Rosetta Stone?")
    assert out["rewrite"]["method"] == "unchanged"  # a complete question is left as it is
    follow = _say(client, sid, "Who carved it?")
    rewrite = follow["rewrite"]
    assert rewrite["standalone"] != "Who carved it?" and "Rosetta" in rewrite["standalone"], rewrite
    assert rewrite["reason"]
    session = client.get(f"/v1/assistants/helpdesk/sessions/{sid}").json()
    assert session["messages"][-2]["standalone"] == rewrite["standalone"]


# --- grounded, strict, handoff ---------------------------------------------------------------
def test_a_grounded_answer_cites_documents(client: TestClient) -> None:
    _assistant(client)
    out = _say(client, _session(client), "Who carved the Rosetta Stone?")
    assert out["answer_source"] == "documents" and out["grounded"] is True
    assert "Egyptian scribes" in out["answer"]
    cited = [c for c in out["citations"] if c["cited"]]
    assert cited and cited[0]["kind"] == "document" and cited[0]["kb"] == "demo"
    assert cited[0]["n"] == 1 and 0 < out["confidence"] <= 1


def test_strict_refuses_then_hands_over(client: TestClient, gen: ScriptedGenerator) -> None:
    _assistant(client, no_answer_reply="We have nothing on that.")
    sid = _session(client)
    first = _say(client, sid, "zxqv blorft wibble?")
    assert first["answer"] == "We have nothing on that." and first["answer_source"] == "refusal"
    assert first["handoff"] is None and gen.prompts == []  # no invented answer
    second = _say(client, sid, "qqq frobnicate the zorp?")
    assert second["answer_source"] == "handoff" and second["handoff"]["status"] == "open"
    assert "twice" in second["handoff"]["reason"]
    handoffs = client.get("/v1/handoffs").json()
    assert handoffs["total"] == 1 and handoffs["handoffs"][0]["session_id"] == sid
    hid = handoffs["handoffs"][0]["id"]
    detail = client.get(f"/v1/handoffs/{hid}").json()
    assert detail["messages"][0]["content"] == "zxqv blorft wibble?"
    assert (
        client.patch(f"/v1/handoffs/{hid}", json={"status": "taken", "assignee": "ana"}).json()["status"]
        == "taken"
    )
    assert client.patch(f"/v1/handoffs/{hid}", json={"status": "closed"}).json()["status"] == "closed"
    assert client.patch(f"/v1/handoffs/{hid}", json={"status": "open"}).status_code == 409
    assert client.patch("/v1/handoffs/nope", json={"status": "open"}).status_code == 404
    assert client.get("/v1/handoffs", params={"status": "open"}).json()["total"] == 0


def test_asking_for_a_person_hands_over_at_once(client: TestClient, gen: ScriptedGenerator) -> None:
    _assistant(client, handoff_reply="A colleague will join you.")
    sid = _session(client)
    out = _say(client, sid, "Can I talk to a human please?")
    assert out["answer_source"] == "handoff" and out["answer"] == "A colleague will join you."
    assert out["handoff"]["reason"] == "the customer asked for a person" and gen.prompts == []
    again = _say(client, sid, "I want a real person")
    assert again["handoff"]["id"] == out["handoff"]["id"]  # one open handoff per session
    assert client.get("/v1/handoffs").json()["total"] == 1


def test_not_strict_answers_from_the_base_model_and_says_so(client: TestClient) -> None:
    _assistant(client, strict=False, handoff_confidence=None)
    out = _say(client, _session(client), "zxqv blorft wibble?")
    assert out["answer_source"] == "model" and out["grounded"] is False and out["citations"] == []


# --- webhooks ----------------------------------------------------------------------------
class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    delay = 0.0
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        time.sleep(type(self).delay)
        type(self).received.append(body)
        try:
            self.send_response(type(self).status)
            self.end_headers()
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


def _hook_server(delay: float, status: int) -> tuple[HTTPServer, str]:
    handler = type("Hook", (_Hook,), {"received": [], "delay": delay, "status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_webhook_is_posted_the_handoff(client: TestClient, svc: Services) -> None:
    server, url = _hook_server(0.0, 200)
    try:
        _assistant(client, webhook_url=url)
        out = _say(client, _session(client), "connect me to an agent")
        assert svc.webhooks.drain(10)
        row = svc.copilot_store.get_handoff(out["handoff"]["id"])
        assert row is not None and row["webhook"]["status"] == "delivered"
        (payload,) = server.RequestHandlerClass.received  # type: ignore[attr-defined]
        assert payload["event"] == "handoff.opened" and payload["message"] == "connect me to an agent"
    finally:
        server.shutdown()


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_hanging_or_failing_webhook_never_delays_the_reply(client: TestClient, svc: Services) -> None:
    server, url = _hook_server(5.0, 200)  # answers long after the 0.3 s timeout
    try:
        _assistant(client, webhook_url=url)
        started = time.perf_counter()
        out = _say(client, _session(client), "connect me to an agent")
        assert time.perf_counter() - started < 2.0 and out["answer_source"] == "handoff"
        assert out["handoff"]["webhook"]["status"] == "pending"
        assert svc.webhooks.drain(15)
        row = svc.copilot_store.get_handoff(out["handoff"]["id"])
        assert row is not None and row["webhook"]["status"] == "failed"
        assert row["webhook"]["attempts"] == 2 and "Timeout" in row["webhook"]["last_error"]
    finally:
        server.shutdown()


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_pending_webhook_is_delivered_after_a_restart(svc: Services) -> None:
    """A handoff whose webhook was still pending when the server stopped is sent at the next start."""
    server, url = _hook_server(0.0, 200)
    try:
        record = svc.copilot_store.create_assistant("desk", {"kb_ids": [], "webhook_url": url})
        payload = {"event": "handoff.opened", "reason": "test", "message": "left over"}
        row = svc.copilot_store.open_handoff(
            record.id,
            {
                "reason": "test",
                "webhook": {"url": url, "status": "pending", "attempts": 0, "payload": payload},
            },
        )
        sender = WebhookSender(svc.copilot_store, timeout_s=1.0, retries=1)
        sender.start()  # what the app's start-up does
        try:
            assert sender.drain(10)
        finally:
            sender.stop()
        done = svc.copilot_store.get_handoff(row["id"])
        assert (
            done is not None and done["webhook"]["status"] == "delivered" and done["webhook"]["attempts"] == 1
        )
        assert server.RequestHandlerClass.received == [payload]  # type: ignore[attr-defined]
    finally:
        server.shutdown()


# --- feedback ----------------------------------------------------------------------------
def test_a_disliked_answer_becomes_a_faq(client: TestClient) -> None:
    _assistant(client)
    sid = _session(client)
    out = _say(client, sid, "What is the refund window for annual plans?")
    mid = out["id"]
    base = f"/v1/assistants/helpdesk/sessions/{sid}/messages"
    r = client.post(f"{base}/{mid}/feedback", json={"rating": "down", "comment": "wrong"})
    assert r.status_code == 200 and r.json()["rating"] == "down"
    assert client.post(f"{base}/{out['user_message_id']}/feedback", json={"rating": "up"}).status_code == 422
    assert client.post(f"{base}/nope/feedback", json={"rating": "up"}).status_code == 404
    assert client.post(f"{base}/{mid}/feedback", json={"rating": "meh"}).status_code == 422
    listed = client.get("/v1/feedback", params={"rating": "down"}).json()
    assert listed["total"] == 1 and listed["feedback"][0]["question"].startswith("What is the refund")
    fid = listed["feedback"][0]["id"]
    made = client.post(
        f"/v1/feedback/{fid}/faq", json={"answer": "Annual plans can be refunded within 30 days."}
    )
    assert made.status_code == 201 and made.json()["kb"] == "help"
    again = _say(client, _session(client), "What is the refund window for annual plans?")
    assert (
        again["answer_source"] == "faq" and again["answer"] == "Annual plans can be refunded within 30 days."
    )
    assert client.get("/v1/feedback").json()["feedback"][0]["faq"] == {
        "kb": "help",
        "faq_id": made.json()["id"],
    }
    assert client.post(f"/v1/feedback/{fid}/faq", json={"answer": "x", "kb": "demo2"}).status_code == 422


# --- sessions, export ----------------------------------------------------------------------
def test_sessions_list_rename_export_delete(client: TestClient) -> None:
    _assistant(client)
    a, b = _session(client), _session(client)
    _say(client, a, "How do I reset my password?")
    listed = client.get("/v1/assistants/helpdesk/sessions").json()
    assert listed["total"] == 2 and {s["id"]: s["messages"] for s in listed["sessions"]} == {a: 2, b: 0}
    assert (
        client.patch(f"/v1/assistants/helpdesk/sessions/{b}", json={"title": "spare"}).json()["title"]
        == "spare"
    )
    lines = client.get(f"/v1/assistants/helpdesk/sessions/{a}/export").text.splitlines()
    (entry,) = [json.loads(line) for line in lines]
    assert entry["id"] == a and [m["role"] for m in entry["messages"]] == ["user", "assistant"]
    every = [json.loads(x) for x in client.get("/v1/assistants/helpdesk/export").text.splitlines()]
    assert {e["id"] for e in every} == {a, b}
    assert client.delete(f"/v1/assistants/helpdesk/sessions/{a}").status_code == 204
    assert client.get(f"/v1/assistants/helpdesk/sessions/{a}").status_code == 404
    assert client.get("/v1/assistants/helpdesk/sessions/nope").status_code == 404


# --- bad input -------------------------------------------------------------------------------
def test_bad_turns_get_clear_errors(client: TestClient, svc: Services) -> None:
    _assistant(client)
    sid = _session(client)
    base = "/v1/assistants/helpdesk"
    assert client.post(f"{base}/sessions/{sid}/messages", json={"content": "   "}).status_code == 422
    long = client.post(f"{base}/sessions/{sid}/messages", json={"content": "x" * 3000})
    assert long.status_code == 422 and "limit" in long.json()["error"]["message"]
    assert client.post("/v1/assistants/nope/sessions/x/messages", json={"content": "hi"}).status_code == 404
    assert client.post(f"{base}/sessions/nope/messages", json={"content": "hi"}).status_code == 404
    swapped = client.post(
        f"{base}/completions",
        json={"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]},
    )
    assert swapped.status_code == 422 and "alternate" in swapped.json()["error"]["message"]
    ends_wrong = client.post(
        f"{base}/completions",
        json={"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]},
    )
    assert ends_wrong.status_code == 422
    limit = svc.settings.max_history_turns
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": "q"} for i in range(limit + 1)]
    too_many = client.post(f"{base}/completions", json={"messages": many})
    assert too_many.status_code == 422 and "RAGNET_MAX_HISTORY_TURNS" in too_many.json()["error"]["message"]
    assert client.post(f"{base}/completions", json={"messages": []}).status_code == 422


def test_a_full_session_is_refused(
    settings: Settings, embedder: SentenceTransformerEmbedder, demo_kb_dir: Path
) -> None:
    s = Services(
        settings.model_copy(update={"max_history_turns": 4}), embedder=embedder, generator=_generator()
    )
    s.metadata.ensure_kb("help")
    try:
        with TestClient(create_app(services=s)) as c:
            _assistant(c, kbs=["help"])
            sid = _session(c)
            _say(c, sid, "first question?")
            _say(c, sid, "second question?")
            r = c.post(f"/v1/assistants/helpdesk/sessions/{sid}/messages", json={"content": "third?"})
            assert r.status_code == 422 and "new session" in r.json()["error"]["message"]
            assert len(c.get(f"/v1/assistants/helpdesk/sessions/{sid}").json()["messages"]) == 4
    finally:
        s.close()


# --- stateless and streaming -------------------------------------------------------------------
def test_stateless_mode_reads_the_history_it_is_sent(client: TestClient, svc: Services) -> None:
    _assistant(client, no_answer_reply="Nothing found.")
    history = [
        {"role": "user", "content": "zxqv blorft?"},
        {"role": "assistant", "content": "Nothing found."},
    ]
    out = client.post(
        "/v1/assistants/helpdesk/completions",
        json={"messages": [*history, {"role": "user", "content": "qqq frobnicate?"}]},
    ).json()
    assert out["answer_source"] == "handoff" and out["session_id"] is None  # the earlier refusal counts
    assert svc.copilot_store.list_sessions(client.get("/v1/assistants/helpdesk").json()["id"])[1] == 0
    faq = client.post(
        "/v1/assistants/helpdesk/completions",
        json={"messages": [{"role": "user", "content": "How do I reset my password?"}]},
    ).json()
    assert faq["answer"] == RESET


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_streaming_sends_named_events(client: TestClient) -> None:
    _assistant(client)
    sid = _session(client)
    r = client.post(
        f"/v1/assistants/helpdesk/sessions/{sid}/messages",
        json={"content": "Who carved the Rosetta Stone?", "stream": True},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "rewrite" and names[-1] == "done"
    assert "retrieval" in names and "token" in names and "citation" in names
    assert names.index("citation") > names.index("token")
    done = events[-1][1]
    assert (
        "".join(d["text"] for e, d in events if e == "token") == done["answer"].split(" [")[0]
        or done["answer"]
    )
    assert [c for c in done["citations"] if c["cited"]]
    faq = _events(
        client.post(
            f"/v1/assistants/helpdesk/sessions/{sid}/messages",
            json={"content": "How do I reset my password?", "stream": True},
        ).text
    )
    assert [e for e, _ in faq] == ["rewrite", "retrieval", "token", "citation", "done"]
    assert faq[2][1]["text"] == RESET


def test_a_client_that_leaves_stops_generation_and_the_partial_answer_is_kept(svc: Services) -> None:
    from api import copilot

    class Slow(ScriptedGenerator):
        def stream(self, request: Any) -> Iterator[str]:
            for i in range(100):
                if i == 3:
                    stop.set()  # the client goes away after three tokens
                yield f" w{i}"

    stop = threading.Event()
    svc._parts["generator"] = Slow([], default="x")
    record = svc.copilot_store.create_assistant("slow", {"kb_ids": [svc.metadata.get_kb("demo").id]})  # type: ignore[union-attr]
    sid = svc.copilot_store.create_session(record.id)["id"]
    done = copilot.answer(svc, record, "Who carved the Rosetta Stone?", session_id=sid, stop=stop)
    assert done["cancelled"] is True and done["answer"].startswith("w0 w1 w2") and "w50" not in done["answer"]
    stored = svc.copilot_store.messages(sid)
    assert stored[-1]["data"]["cancelled"] is True and stored[-1]["content"] == done["answer"]


# --- who may see what ---------------------------------------------------------------------------
def test_sessions_are_visible_only_to_keys_allowed_on_every_knowledge_base(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    from api.auth import create_key

    s = Services(settings.model_copy(update={"auth": "keys"}), embedder=embedder, generator=_generator())
    for kb in ("help", "other"):
        s.metadata.ensure_kb(kb)
    _, admin = create_key(s.metadata, "admin", "admin", ["*"])
    _, both = create_key(s.metadata, "both", "reader", ["help", "other"])
    _, one = create_key(s.metadata, "one", "reader", ["help"])
    _, help_admin = create_key(s.metadata, "help-admin", "admin", ["help"])
    try:
        with TestClient(create_app(services=s)) as c:

            def h(key: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {key}"}

            assert c.get("/v1/assistants").status_code == 401
            r = c.post("/v1/assistants", json={"name": "desk", "kbs": ["help", "other"]}, headers=h(both))
            assert r.status_code == 403
            r = c.post(
                "/v1/assistants", json={"name": "desk", "kbs": ["help", "other"]}, headers=h(help_admin)
            )
            assert r.status_code == 403
            assert (
                c.post(
                    "/v1/assistants", json={"name": "desk", "kbs": ["help", "other"]}, headers=h(admin)
                ).status_code
                == 201
            )
            sid = c.post("/v1/assistants/desk/sessions", headers=h(both)).json()["id"]
            assert c.get(f"/v1/assistants/desk/sessions/{sid}", headers=h(both)).status_code == 200
            for path in (
                f"/v1/assistants/desk/sessions/{sid}",
                "/v1/assistants/desk",
                f"/v1/assistants/desk/sessions/{sid}/export",
            ):
                assert c.get(path, headers=h(one)).status_code == 404, path
            assert (
                c.post(
                    f"/v1/assistants/desk/sessions/{sid}/messages", json={"content": "hi"}, headers=h(one)
                ).status_code
                == 404
            )
            assert c.get("/v1/assistants", headers=h(one)).json()["assistants"] == []
            assert c.patch("/v1/assistants/desk", json={"strict": False}, headers=h(both)).status_code == 403
            c.post(
                f"/v1/assistants/desk/sessions/{sid}/messages",
                json={"content": "talk to a human"},
                headers=h(both),
            )
            assert c.get("/v1/handoffs", headers=h(one)).json()["total"] == 0
            (handoff,) = c.get("/v1/handoffs", headers=h(both)).json()["handoffs"]
            assert (
                c.patch(
                    f"/v1/handoffs/{handoff['id']}", json={"status": "taken"}, headers=h(both)
                ).status_code
                == 403
            )
            assert (
                c.patch(
                    f"/v1/handoffs/{handoff['id']}", json={"status": "taken"}, headers=h(admin)
                ).status_code
                == 200
            )
    finally:
        s.close()

"""The admin page at /admin: its files (fast, no browser), then the whole flow in headless Chromium
against the real app under uvicorn: API key, create a KB, upload a file, watch its job, hit-test
it, add a FAQ and find it, rename and delete a KB."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agents.generation.transformers_backend import TransformersGenerator
from api.app import create_app
from api.auth import create_key
from api.routes.admin_page import STATIC_DIR, resolve_static
from api.services import Services
from api.settings import Settings
from retrieval.embedder import SentenceTransformerEmbedder
from tests.browser import chromium_page, live_server

# --- the files (no browser) ---------------------------------------------------------------


def test_admin_page_files_are_served(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no lifespan: nothing is loaded

    page = client.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="admin/static/admin.js"' in page.text

    for name, kind in [
        ("admin.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("admin.css", "text/css"),
    ]:
        r = client.get(f"/admin/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith(kind), (name, r.headers["content-type"])

    # Every module the page imports is there; nothing comes from another origin.
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8") if path.suffix in {".html", ".js", ".css"} else ""
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), path.name
        for module in re.findall(r'from "\./([\w.-]+)"', text):
            assert client.get(f"/admin/static/{module}").status_code == 200, module

    etag = client.get("/admin/static/admin.css").headers["etag"]
    assert client.get("/admin/static/admin.css", headers={"If-None-Match": etag}).status_code == 304

    missing = client.get("/admin/static/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/../settings.py",
        "/admin/static/..%2Fsettings.py",
        "/admin/static/%2e%2e/%2e%2e/api/settings.py",
        "/admin/static/..%2F..%2Fsettings.py",
        "/admin/static/%2Fetc%2Fpasswd",
        "/admin/static/",
    ],
)
def test_admin_static_stays_in_its_folder(settings: Settings, path: str) -> None:
    client = TestClient(create_app(settings))
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "BaseSettings" not in r.text and "root:" not in r.text


def test_resolve_static_refuses_escapes() -> None:
    assert resolve_static("admin.js") == (STATIC_DIR / "admin.js").resolve()
    for path in ["../settings.py", "../../api/settings.py", "/etc/passwd", "..", "", "a\x00.js", "..\\x.js"]:
        assert resolve_static(path) is None, path


# --- the flow in a browser ----------------------------------------------------------------

GUIDE = """# Moonbase Alpha maintenance guide

## Oxygen recyclers

The oxygen recyclers on Moonbase Alpha are serviced every fourteen days. A technician replaces
the zeolite cartridges and checks the pressure seals of each recycler.

## Solar arrays

After each lunar night the solar arrays are brushed clean of regolith dust.
"""
FAQ_ANSWER = "Hold the red button for five seconds, then enter 000000.\nThe new code needs six digits."


@pytest.fixture
def keyed_services(
    settings: Settings, embedder: SentenceTransformerEmbedder, tiny_generator: TransformersGenerator
) -> Iterator[Services]:
    """Services with API keys on (the shared fixture turns them off), so the page's key flow runs."""
    svc = Services(settings.model_copy(update={"auth": "keys"}), embedder=embedder, generator=tiny_generator)
    yield svc
    svc.close()


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_admin_page_end_to_end(keyed_services: Services, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    services = keyed_services
    _, key = create_key(services.metadata, "e2e-admin", "admin", ["*"])
    guide = tmp_path / "moonbase-guide.md"
    guide.write_text(GUIDE, encoding="utf-8")
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ\x90\x00")

    with live_server(create_app(services=services)) as base, chromium_page() as (page, errors):
        page.set_default_timeout(15_000)
        page.goto(f"{base}/admin")
        expect(page.get_by_role("tab", name="Knowledge bases")).to_have_attribute("aria-selected", "true")

        # 1. Without a key the page says what to do; with one it works.
        error = page.get_by_test_id("error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("requires an API key")
        page.get_by_test_id("api-key").fill(key)
        page.get_by_test_id("api-key-save").click()
        expect(page.get_by_test_id("api-key-state")).to_have_text("key saved")
        expect(error).to_be_hidden()
        expect(page.get_by_test_id("kb-row")).to_have_count(0)

        # 2. Create a knowledge base.
        page.get_by_test_id("kb-name").fill("moonbase")
        page.get_by_test_id("kb-description").fill("Station manuals")
        page.get_by_test_id("kb-chunking").select_option("heading")
        page.get_by_test_id("kb-create").click()
        row = page.locator('[data-testid="kb-row"][data-kb="moonbase"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("Station manuals")
        expect(row).to_have_attribute("aria-current", "true")
        expect(page.get_by_test_id("kb-select")).to_have_value("moonbase")

        # 3. Upload: an unsupported type is refused with the server's message, then the guide.
        page.get_by_test_id("tab-documents").click()
        page.get_by_test_id("doc-files").set_input_files(str(bad))
        page.get_by_test_id("doc-upload").click()
        expect(error).to_be_visible()
        expect(page.get_by_test_id("error-message")).to_contain_text("unsupported file type")
        expect(page.get_by_test_id("error-message")).to_contain_text(".md")
        expect(page.get_by_test_id("upload-progress-box")).to_be_hidden()
        page.get_by_test_id("error-dismiss").click()
        expect(error).to_be_hidden()

        page.get_by_test_id("doc-metadata").fill('{"team": "ops"}')
        page.get_by_test_id("doc-files").set_input_files(str(guide))
        page.get_by_test_id("doc-upload").click()
        job = page.get_by_test_id("upload-job").get_by_test_id("job")
        expect(job.get_by_test_id("job-status")).to_have_text("done", timeout=120_000)
        expect(job.get_by_test_id("job-progress")).to_have_text("1/1")
        expect(page.get_by_test_id("upload-progress")).to_be_hidden()
        doc = page.locator('[data-testid="doc-row"][data-doc-id="moonbase-guide.md"]')
        expect(doc.get_by_test_id("doc-title")).to_have_text("Moonbase Alpha maintenance guide")
        expect(doc).to_contain_text('{"team":"ops"}')
        expect(page.get_by_test_id("docs-count")).to_have_text("1 document")
        page.screenshot(path=str(tmp_path / "admin-documents.png"), full_page=True)

        # The Jobs tab lists it too.
        page.get_by_test_id("tab-jobs").click()
        listed = page.get_by_test_id("job-list").get_by_test_id("job")
        expect(listed).to_have_count(1)
        expect(listed.get_by_test_id("job-status")).to_have_text("done")
        expect(listed.get_by_test_id("job-progress")).to_have_text("1/1")
        expect(listed.get_by_test_id("job-cancel")).to_have_count(0)

        # 4. Hit testing: the recycler section, found by both retrievers at rank 1.
        page.get_by_test_id("tab-search").click()
        page.get_by_test_id("search-query").fill("How often are the oxygen recyclers serviced?")
        page.get_by_test_id("search-mode").select_option("hybrid")
        page.get_by_test_id("search-k").fill("3")
        page.get_by_test_id("search-filters").fill('{"team": "ops"}')
        page.get_by_test_id("search-run").click()
        top = page.get_by_test_id("hit").first
        expect(top.get_by_test_id("hit-title")).to_have_text("Moonbase Alpha maintenance guide")
        expect(top.get_by_test_id("hit-text")).to_contain_text("zeolite cartridges")
        expect(top.locator('[data-retriever="dense"]')).to_contain_text("dense #1")
        expect(top.locator('[data-retriever="sparse"]')).to_contain_text("sparse #1")
        expect(top.get_by_test_id("hit-score")).to_contain_text("score ")
        expect(page.get_by_test_id("faq-hit")).to_have_count(0)

        # A filter that matches nothing finds nothing.
        page.get_by_test_id("search-filters").fill('{"team": "nobody"}')
        page.get_by_test_id("search-run").click()
        expect(page.get_by_test_id("search-empty")).to_be_visible()
        page.get_by_test_id("search-filters").fill("")

        # 5. A FAQ with two variants, then found as a FAQ hit with its answer verbatim.
        page.get_by_test_id("tab-faqs").click()
        page.get_by_test_id("faq-questions").fill(
            "How do I reset the airlock code?\nI forgot the airlock code"
        )
        page.get_by_test_id("faq-answer").fill(FAQ_ANSWER)
        page.get_by_test_id("faq-save").click()
        faq_row = page.get_by_test_id("faq-row")
        expect(faq_row).to_have_count(1)
        expect(faq_row.get_by_test_id("faq-row-questions").locator("li")).to_have_count(2)

        page.get_by_test_id("tab-search").click()
        page.get_by_test_id("search-query").fill("how can I reset the airlock code")
        page.get_by_test_id("search-run").click()
        faq_hit = page.get_by_test_id("faq-hit").first
        expect(faq_hit.get_by_test_id("faq-hit-question")).to_contain_text("airlock code")
        expect(faq_hit.get_by_test_id("hit-retrievers")).to_contain_text("#1")
        assert faq_hit.get_by_test_id("faq-hit-answer").text_content() == FAQ_ANSWER

        page.screenshot(path=str(tmp_path / "admin-hit-testing.png"), full_page=True)

        # 6. Rename a scratch knowledge base, then delete it (after a confirm).
        page.get_by_test_id("tab-kbs").click()
        page.get_by_test_id("kb-name").fill("scratch")
        page.get_by_test_id("kb-create").click()
        scratch = page.locator('[data-testid="kb-row"][data-kb="scratch"]')
        scratch.get_by_test_id("kb-edit").click()
        page.get_by_test_id("kb-edit-name").fill("scratch-2")
        page.get_by_test_id("kb-edit-save").click()
        expect(page.get_by_test_id("kb-edit-dialog")).to_be_hidden()
        renamed = page.locator('[data-testid="kb-row"][data-kb="scratch-2"]')
        expect(renamed).to_be_visible()
        expect(scratch).to_have_count(0)

        renamed.get_by_test_id("kb-delete").click()
        expect(page.get_by_test_id("confirm-text")).to_contain_text("scratch-2")
        page.get_by_test_id("confirm-cancel").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
        expect(renamed).to_be_visible()
        renamed.get_by_test_id("kb-delete").click()
        page.get_by_test_id("confirm-ok").click()
        expect(renamed).to_have_count(0)
        moonbase = page.locator('[data-testid="kb-row"][data-kb="moonbase"]')
        expect(moonbase.get_by_test_id("kb-row-documents")).to_have_text("1")
        expect(moonbase.get_by_test_id("kb-row-faqs")).to_have_text("1")

        page.screenshot(path=str(tmp_path / "admin-kbs.png"), full_page=True)
        # The refused upload and the key-less first load are expected failures; nothing else.
        unexpected = [e for e in errors if not re.search(r"status of (401|415)", e)]
        assert not unexpected, unexpected


# --- the copilot sections in a browser ------------------------------------------------------

CORRECTED = "Press Help > Contact us: a person answers within the hour.\nOr call 555-0100."


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_admin_page_copilot_sections(keyed_services: Services, tmp_path: Path) -> None:
    """Assistants created, refused (4xx shown in the form), edited and deleted through the page; a
    handoff (seeded over the HTTP API) shown with its conversation, taken and closed; a disliked
    answer turned into a FAQ in the assistant's knowledge base."""
    import httpx
    from playwright.sync_api import expect

    services = keyed_services
    _, key = create_key(services.metadata, "e2e-copilot", "admin", ["*"])
    services.metadata.ensure_kb("support")
    services.metadata.ensure_kb("billing")

    with live_server(create_app(services=services)) as base, chromium_page() as (page, errors):
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        page.set_default_timeout(15_000)
        page.goto(f"{base}/admin#assistants")
        page.get_by_test_id("api-key").fill(key)
        page.get_by_test_id("api-key-save").click()
        expect(page.get_by_test_id("api-key-state")).to_have_text("key saved")
        page.get_by_test_id("tab-assistants").click()
        expect(page.get_by_test_id("assistant-kb")).to_have_count(2)  # the existing KBs to choose from
        expect(page.get_by_test_id("assistant-row")).to_have_count(0)

        # 1. Client-side checks, then the server's 422 shown in the form with the field named.
        form_error = page.get_by_test_id("assistant-form-error")
        page.get_by_test_id("assistant-save").click()
        expect(form_error).to_contain_text("name")
        page.get_by_test_id("assistant-name").fill("helpdesk")
        page.get_by_test_id("assistant-save").click()
        expect(form_error).to_contain_text("at least one knowledge base")
        page.locator('[data-testid="assistant-kb"][data-kb="support"]').check()
        page.get_by_test_id("assistant-webhook").fill("ftp://example.invalid/hook")
        page.get_by_test_id("assistant-save").click()
        expect(form_error).to_contain_text("webhook_url")
        expect(form_error).to_contain_text("HTTP 422")
        expect(page.get_by_test_id("assistant-webhook")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_test_id("assistant-row")).to_have_count(0)

        # 2. Created with every field; user text is shown as text, never parsed as HTML.
        page.get_by_test_id("assistant-webhook").fill("")
        page.get_by_test_id("assistant-description").fill("<b>desk</b> & co")
        page.get_by_test_id("assistant-strict").uncheck()
        page.get_by_test_id("assistant-faq-threshold").fill("0.8")
        page.get_by_test_id("assistant-top-k").fill("3")
        page.get_by_test_id("assistant-adapter").select_option("base")
        page.get_by_test_id("assistant-no-answer").fill("We have nothing on that yet.")
        page.get_by_test_id("assistant-system-prompt").fill("Be brief.")
        page.get_by_test_id("assistant-save").click()
        row = page.locator('[data-testid="assistant-row"][data-assistant="helpdesk"]')
        expect(row).to_be_visible()
        expect(form_error).to_be_hidden()
        expect(row.get_by_test_id("assistant-row-kbs")).to_have_text("support")
        expect(row.get_by_test_id("assistant-row-faq-threshold")).to_have_text("0.8")
        expect(row.get_by_test_id("assistant-row-strict")).to_have_text("not strict")
        expect(row.get_by_test_id("assistant-row-adapter")).to_have_text("base")
        expect(row).to_contain_text("<b>desk</b> & co")
        expect(row.locator("b")).to_have_count(0)
        made = http.get("/v1/assistants/helpdesk").json()
        assert made["kbs"] == ["support"] and made["strict"] is False and made["faq_threshold"] == 0.8
        assert made["top_k"] == 3 and made["adapter"] == "base" and made["system_prompt"] == "Be brief."
        assert made["no_answer_reply"] == "We have nothing on that yet." and made["webhook_url"] is None
        assert made["handoff_confidence"] == 0.1

        # A taken name: the 409 in the form, nothing added.
        page.get_by_test_id("assistant-name").fill("helpdesk")
        page.locator('[data-testid="assistant-kb"][data-kb="billing"]').check()
        page.get_by_test_id("assistant-save").click()
        expect(form_error).to_contain_text("HTTP 409")
        expect(page.get_by_test_id("assistant-row")).to_have_count(1)

        # 3. Edit: a second knowledge base and another top_k; what was not touched stays.
        row.get_by_test_id("assistant-edit").click()
        expect(form_error).to_be_hidden()
        expect(page.get_by_test_id("assistant-name")).to_have_value("helpdesk")
        expect(page.get_by_test_id("assistant-faq-threshold")).to_have_value("0.8")
        expect(page.get_by_test_id("assistant-adapter")).to_have_value("base")
        page.locator('[data-testid="assistant-kb"][data-kb="billing"]').check()
        page.get_by_test_id("assistant-top-k").fill("5")
        page.get_by_test_id("assistant-save").click()
        expect(row.get_by_test_id("assistant-row-kbs").locator(".badge")).to_have_count(2)
        expect(row.get_by_test_id("assistant-row-kbs")).to_contain_text("billing")
        edited = http.get("/v1/assistants/helpdesk").json()
        assert sorted(edited["kbs"]) == ["billing", "support"] and edited["top_k"] == 5
        assert edited["system_prompt"] == "Be brief." and edited["faq_threshold"] == 0.8

        # 4. Seed over the API: a customer asks for a person (a handoff), then dislikes the reply.
        sid = http.post("/v1/assistants/helpdesk/sessions", json={"user": "cust-1"}).json()["id"]
        turn = http.post(
            f"/v1/assistants/helpdesk/sessions/{sid}/messages",
            json={"content": "Can I talk to a human please?"},
        )
        assert turn.status_code == 200, turn.text
        out = turn.json()
        assert out["answer_source"] == "handoff" and out["handoff"]["status"] == "open"
        hid = out["handoff"]["id"]
        rated = http.post(
            f"/v1/assistants/helpdesk/sessions/{sid}/messages/{out['id']}/feedback",
            json={"rating": "down", "comment": "I wanted the <i>phone</i> number"},
        )
        assert rated.status_code == 200, rated.text

        page.get_by_test_id("tab-handoffs").click()
        handoff = page.locator(f'[data-testid="handoff"][data-handoff-id="{hid}"]')
        expect(handoff.get_by_test_id("handoff-status")).to_have_text("open")
        expect(handoff.get_by_test_id("handoff-assistant")).to_have_text("helpdesk")
        messages = handoff.get_by_test_id("handoff-message")
        expect(messages).to_have_count(2)
        expect(messages.first).to_contain_text("Can I talk to a human please?")
        expect(messages.nth(1)).to_contain_text(out["answer"])

        page.get_by_test_id("handoff-assignee-input").fill("ana")
        handoff.get_by_test_id("handoff-take").click()
        expect(page.get_by_test_id("handoff")).to_have_count(0)  # no longer open
        page.get_by_test_id("handoff-status-filter").select_option("taken")
        expect(handoff.get_by_test_id("handoff-status")).to_have_text("taken")
        expect(handoff.get_by_test_id("handoff-assignee")).to_contain_text("ana")
        taken = http.get(f"/v1/handoffs/{hid}").json()
        assert taken["status"] == "taken" and taken["assignee"] == "ana"
        handoff.get_by_test_id("handoff-close").click()
        expect(page.get_by_test_id("handoff")).to_have_count(0)
        page.get_by_test_id("handoff-status-filter").select_option("closed")
        expect(handoff.get_by_test_id("handoff-status")).to_have_text("closed")
        expect(handoff.get_by_test_id("handoff-take")).to_have_count(0)
        assert http.get(f"/v1/handoffs/{hid}").json()["status"] == "closed"

        # 5. The disliked answer, with its question and comment, becomes a FAQ.
        page.get_by_test_id("tab-feedback").click()
        card = page.get_by_test_id("feedback")
        expect(card).to_have_count(1)
        expect(card.get_by_test_id("feedback-question")).to_have_text("Can I talk to a human please?")
        expect(card.get_by_test_id("feedback-answer")).to_have_text(out["answer"])
        expect(card.get_by_test_id("feedback-comment")).to_have_text("I wanted the <i>phone</i> number")
        expect(card.locator("i")).to_have_count(0)
        card.get_by_test_id("feedback-make-faq").click()
        answer_box = card.get_by_test_id("feedback-faq-answer")
        expect(answer_box).to_have_value(out["answer"])  # starts from the answer given
        answer_box.fill("   ")
        card.get_by_test_id("feedback-faq-save").click()
        expect(card.get_by_test_id("feedback-faq-error")).to_contain_text("corrected answer")
        answer_box.fill(CORRECTED)
        card.get_by_test_id("feedback-faq-save").click()
        first_kb = edited["kbs"][0]  # the FAQ goes to the assistant's first knowledge base
        expect(card.get_by_test_id("feedback-faq-done")).to_contain_text(f"in {first_kb}")
        faqs = http.get(f"/v1/kbs/{first_kb}/faqs").json()["faqs"]
        (faq,) = [f for f in faqs if f["id"].startswith("feedback-")]
        assert faq["answer"] == CORRECTED and faq["questions"] == ["Can I talk to a human please?"]
        page.screenshot(path=str(tmp_path / "admin-feedback.png"), full_page=True)

        # 6. Delete the assistant (after a confirm).
        page.get_by_test_id("tab-assistants").click()
        row.get_by_test_id("assistant-delete").click()
        expect(page.get_by_test_id("confirm-text")).to_contain_text("helpdesk")
        page.get_by_test_id("confirm-ok").click()
        expect(page.get_by_test_id("assistant-row")).to_have_count(0)
        assert http.get("/v1/assistants/helpdesk").status_code == 404
        http.close()

        # The key-less first load and the refused creates (422, 409) are expected; nothing else.
        unexpected = [e for e in errors if not re.search(r"status of (401|409|422)", e)]
        assert not unexpected, unexpected

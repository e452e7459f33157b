"""The admin HTTP API: knowledge bases, uploads as jobs, documents, FAQs, hit testing, bad input."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services

BEES = (
    b"# Honeybees\n\nHoneybees perform a waggle dance to tell the hive where flowers are.\n\n"
    b"## Hives\n\nA strong hive holds about 50,000 worker bees in summer.\n"
)
TEA = b"Tea processing\n\nGreen tea leaves are steamed or pan-fired right after picking to stop oxidation.\n"


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, services)) as c:
        yield c


def wait(client: TestClient, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current: dict[str, Any] = client.get(f"/v1/jobs/{job['id']}").json()
        if current["status"] in {"done", "failed", "cancelled"} or time.monotonic() > deadline:
            return current
        time.sleep(0.05)


def upload(client: TestClient, kb: str, *files: tuple[str, bytes], **data: str) -> dict[str, Any]:
    r = client.post(
        f"/v1/kbs/{kb}/documents",
        files=[("files", (name, body, "application/octet-stream")) for name, body in files],
        data=data,
    )
    assert r.status_code == 202, r.text
    return wait(client, r.json()["job"])


def test_kb_lifecycle(client: TestClient) -> None:
    r = client.post(
        "/v1/kbs", json={"name": "support", "description": "help centre", "chunking": "parent_child"}
    )
    assert r.status_code == 201 and r.json()["chunking"] == "parent_child"
    assert client.post("/v1/kbs", json={"name": "support"}).status_code == 409
    assert client.post("/v1/kbs", json={"name": "../etc"}).json()["error"]["code"] == "invalid_request"
    r = client.patch("/v1/kbs/support", json={"name": "helpdesk"})
    assert r.status_code == 200 and r.json()["name"] == "helpdesk"
    assert client.get("/v1/kbs/support").status_code == 404
    assert [k["name"] for k in client.get("/v1/kbs").json()["kbs"]] == ["helpdesk"]
    assert client.delete("/v1/kbs/helpdesk").status_code == 204
    assert client.get("/v1/kbs").json()["kbs"] == []
    assert client.delete("/v1/kbs/helpdesk").json()["error"]["code"] == "kb_not_found"


def test_upload_is_a_job_then_searchable_with_retriever_ranks(client: TestClient, services: Services) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    csv = b"Plan,Price,Seats\nPro,$20,5\nTeam,$50,20\n"
    job = upload(
        client, "kb", ("bees.md", BEES), ("plans.csv", csv), metadata=json.dumps({"product": "hive"})
    )
    assert job["status"] == "done" and job["done"] == job["total"] == 2 and job["failures"] == []
    docs = client.get("/v1/kbs/kb/documents").json()
    assert docs["total"] == 2 and {d["doc_id"] for d in docs["documents"]} == {"bees.md", "plans.csv"}
    assert all(d["status"] == "indexed" and d["metadata"] == {"product": "hive"} for d in docs["documents"])
    r = client.post("/v1/kbs/kb/search", json={"query": "how many bees live in a hive", "k": 3})
    body = r.json()
    assert body["mode"] == "hybrid" and body["hits"][0]["doc_id"] == "bees.md"
    assert body["hits"][0]["retrievers"]["dense"]["rank"] >= 1
    rows = client.post("/v1/kbs/kb/search", json={"query": "Team plan seats", "mode": "sparse"}).json()[
        "hits"
    ]
    assert rows[0]["doc_id"] == "plans.csv" and "Plan: Team; Price: $50; Seats: 20" in rows[0]["text"]
    assert set(rows[0]["retrievers"]) == {"sparse"}
    none = client.post("/v1/kbs/kb/search", json={"query": "bees", "filters": {"product": "other"}}).json()
    assert none["hits"] == []
    stats = client.get("/v1/kbs/kb").json()
    assert stats["documents"] == 2 and stats["chunks"] >= 2


def test_update_replaces_and_delete_removes(client: TestClient) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    upload(client, "kb", ("faq.md", BEES))
    upload(client, "kb", ("faq.md", TEA))  # same id, new content: replaces
    hits = client.post("/v1/kbs/kb/search", json={"query": "waggle dance", "k": 5}).json()["hits"]
    assert all("waggle" not in h["text"] for h in hits)
    assert client.get("/v1/kbs/kb").json()["documents"] == 1
    assert client.delete("/v1/kbs/kb/documents/faq.md").status_code == 204
    assert client.post("/v1/kbs/kb/search", json={"query": "green tea", "k": 5}).json()["hits"] == []
    assert client.delete("/v1/kbs/kb/documents/faq.md").status_code == 404
    assert client.get("/v1/kbs/kb/documents/nope.md").status_code == 404


def test_duplicate_upload_is_reported_not_indexed_twice(client: TestClient) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    upload(client, "kb", ("a.md", BEES))
    job = upload(client, "kb", ("copy.md", BEES))
    assert job["status"] == "done" and "duplicate" in job["failures"][0]["reason"]
    assert client.get("/v1/kbs/kb").json()["documents"] == 1


def test_bad_uploads(client: TestClient, services: Services) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    r = client.post("/v1/kbs/kb/documents", files=[("files", ("x.exe", b"MZ", "application/octet-stream"))])
    assert r.status_code == 415 and ".pdf" in r.json()["error"]["message"]
    r = client.post(
        "/v1/kbs/kb/documents", files=[("files", ("a.md", BEES, "text/markdown"))], data={"metadata": "{"}
    )
    assert r.status_code == 422 and "metadata" in r.json()["error"]["message"]
    services.settings.max_upload_bytes = 1000
    big = b"x" * 5000
    r = client.post("/v1/kbs/kb/documents", files=[("files", ("big.txt", big, "text/plain"))])
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    services.settings.max_upload_bytes = 50_000_000
    assert (
        client.post("/v1/kbs/nokb/documents", files=[("files", ("a.md", BEES, "text/markdown"))]).status_code
        == 404
    )
    # A malformed PDF and a zip bomb: the job finishes, each file reported, nothing indexed.
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * 60_000_000)
    job = upload(client, "kb", ("broken.pdf", b"%PDF-1.4 garbage"), ("bomb.docx", bomb.getvalue()))
    assert job["status"] == "done" and len(job["failures"]) == 2
    assert client.get("/v1/kbs/kb").json()["documents"] == 0
    assert not list((services.settings.data_dir / "uploads").glob("*/*.part"))


def test_faq_crud_import_and_verbatim_answer(client: TestClient, tmp_path: Any) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    answer = "Open Settings → Security, then “Reset password”."
    r = client.post(
        "/v1/kbs/kb/faqs",
        json={"questions": ["How do I reset my password?", "forgot password"], "answer": answer},
    )
    assert r.status_code == 201
    faq = r.json()
    hit = client.post("/v1/kbs/kb/search", json={"query": "I can't remember my password"}).json()["faqs"][0]
    assert hit["faq_id"] == faq["id"] and hit["answer"] == answer
    r = client.put(
        f"/v1/kbs/kb/faqs/{faq['id']}",
        json={"questions": ["How do I change my e-mail?"], "answer": "Profile."},
    )
    assert r.json()["questions"] == ["How do I change my e-mail?"]
    assert client.post("/v1/kbs/kb/faqs", json={"questions": [" "], "answer": "x"}).status_code == 422
    csv = "question,answer,topic\nWhere is my invoice?||Find my bill,Billing page.,billing\n,no question,x\n"
    r = client.post("/v1/kbs/kb/faqs/import", files={"file": ("faqs.csv", csv.encode(), "text/csv")})
    job = wait(client, r.json()["job"])
    assert job["status"] == "done" and len(job["failures"]) == 1  # the row without a question
    faqs = client.get("/v1/kbs/kb/faqs").json()
    assert faqs["total"] == 2
    billing = next(f for f in faqs["faqs"] if f["answer"] == "Billing page.")
    assert billing["questions"] == ["Where is my invoice?", "Find my bill"] and billing["metadata"] == {
        "topic": "billing"
    }
    assert client.delete(f"/v1/kbs/kb/faqs/{faq['id']}").status_code == 204
    assert client.delete(f"/v1/kbs/kb/faqs/{faq['id']}").status_code == 404
    assert client.get("/v1/kbs/kb").json()["faqs"] == 1


def test_jobs_list_cancel_and_unknown(client: TestClient) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    upload(client, "kb", ("a.md", BEES))
    jobs = client.get("/v1/jobs", params={"kb": "kb"}).json()["jobs"]
    assert len(jobs) == 1 and jobs[0]["status"] == "done" and jobs[0]["kb"] == "kb"
    assert client.post(f"/v1/jobs/{jobs[0]['id']}/cancel").json()["status"] == "done"  # finished: no-op
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_hit_test_validation(client: TestClient) -> None:
    client.post("/v1/kbs", json={"name": "kb"})
    assert client.post("/v1/kbs/kb/search", json={"query": "  "}).status_code == 422
    assert client.post("/v1/kbs/kb/search", json={"query": "x" * 3000}).status_code == 422
    assert client.post("/v1/kbs/kb/search", json={"query": "x", "mode": "fuzzy"}).status_code == 422
    assert client.post("/v1/kbs/kb/search", json={"query": "x", "filters": {"a b": 1}}).status_code == 422
    assert client.post("/v1/kbs/kb/search", json={"query": "x", "filters": {"p": True}}).status_code == 422
    assert client.post("/v1/kbs/nope/search", json={"query": "x"}).status_code == 404

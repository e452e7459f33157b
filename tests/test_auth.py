"""API keys: roles, knowledge-base scope, hashing at rest, loopback-only no-auth mode."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api import auth
from api.app import create_app
from api.services import Services
from api.settings import Settings


@pytest.fixture
def keyed(services: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    services.settings.auth = "keys"
    keys = {
        "admin": auth.create_key(services.metadata, "root", "admin", ["*"])[1],
        "support_admin": auth.create_key(services.metadata, "sa", "admin", ["support"])[1],
        "reader": auth.create_key(services.metadata, "r", "reader", ["support"])[1],
    }
    with TestClient(create_app(services.settings, services)) as c:
        yield c, keys


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_requests_without_a_valid_key_are_refused(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = keyed
    r = client.get("/v1/kbs")
    assert r.status_code == 401 and "ragnet keys create" in r.json()["error"]["message"]
    assert client.get("/v1/kbs", headers=h("rgn_0_wrong")).status_code == 401
    assert client.post("/v1/search/answer", json={"kb": "support", "question": "hi"}).status_code == 401
    assert client.get("/healthz").status_code == 200  # health stays open


def test_roles_and_scopes(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = keyed
    assert client.post("/v1/kbs", json={"name": "support"}, headers=h(keys["admin"])).status_code == 201
    assert client.post("/v1/kbs", json={"name": "sales"}, headers=h(keys["support_admin"])).status_code == 403
    assert (
        client.post("/v1/kbs", json={"name": "sales"}, headers={"X-API-Key": keys["admin"]}).status_code
        == 201
    )
    # The reader may query its kb but not write to it, nor see other kbs.
    r = client.post(
        "/v1/kbs/support/faqs", json={"questions": ["q?"], "answer": "a"}, headers=h(keys["reader"])
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert (
        client.post("/v1/kbs/support/search", json={"query": "q"}, headers=h(keys["reader"])).status_code
        == 200
    )
    assert (
        client.post("/v1/kbs/sales/search", json={"query": "q"}, headers=h(keys["reader"])).status_code == 403
    )
    assert [k["name"] for k in client.get("/v1/kbs", headers=h(keys["reader"])).json()["kbs"]] == ["support"]
    r = client.post("/v1/search/answer", json={"kb": "sales", "question": "hi"}, headers=h(keys["reader"]))
    assert r.status_code == 403
    r = client.post(
        "/v1/kbs/support/faqs", json={"questions": ["q?"], "answer": "a"}, headers=h(keys["support_admin"])
    )
    assert r.status_code == 201


def test_keys_are_hashed_at_rest_and_revocable(services: Services) -> None:
    record, secret = auth.create_key(services.metadata, "ops", "reader", ["*"])
    db = services.settings.data_dir / "ragnet.db"
    with sqlite3.connect(db) as conn:
        stored = [r[0] for r in conn.execute("select hash from api_keys")]
    assert secret not in stored and all(len(s) == 64 for s in stored)
    assert auth.authenticate(services.metadata, secret) == auth.Principal("ops", "reader", ("*",))
    with pytest.raises(ValueError, match="already exists"):
        auth.create_key(services.metadata, "ops", "reader", ["*"])
    assert auth.revoke_key(services.metadata, record["id"])
    assert auth.authenticate(services.metadata, secret) is None
    assert not auth.revoke_key(services.metadata, "ops")


def test_no_auth_mode_is_loopback_only(tmp_path: object) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Settings(auth="none", host="0.0.0.0")
    assert Settings(auth="none", host="127.0.0.1").auth == "none"

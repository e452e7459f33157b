"""API keys: roles (admin writes, reader queries), scoped to knowledge bases, hashed at rest.

A key looks like ``rgn_<16 hex id>_<43 url-safe chars>``; only its SHA-256 is stored (the secret
has 256 bits of entropy, so a fast hash is enough and a lookup is one indexed query). Requests
carry it as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. With ``RAGNET_AUTH=none``
(loopback only) every request acts as an admin of every knowledge base.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from sqlalchemy import insert, select, update

from api.deps import ServicesDep
from api.errors import RequestError
from retrieval.metadata import MetadataStore, api_keys, now

Role = Literal["admin", "reader"]
ROLES: tuple[Role, ...] = ("admin", "reader")
ALL = "*"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    kbs: tuple[str, ...]

    def can_read(self, kb: str) -> bool:
        return ALL in self.kbs or kb in self.kbs

    def can_write(self, kb: str) -> bool:
        return self.role == "admin" and self.can_read(kb)

    def check(self, kb: str, *, write: bool = False) -> None:
        if not (self.can_write(kb) if write else self.can_read(kb)):
            need = "an admin key" if write else "a key"
            raise RequestError(f"this request needs {need} for knowledge base {kb!r}", 403, "forbidden")

    def require_admin(self) -> None:
        if self.role != "admin" or ALL not in self.kbs:
            raise RequestError(
                "this request needs an admin key for all knowledge bases ('*')", 403, "forbidden"
            )


LOCAL = Principal("local (auth=none)", "admin", (ALL,))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(metadata: MetadataStore, name: str, role: Role, kbs: list[str]) -> tuple[dict[str, Any], str]:
    """Store a new key; returns (its record, the secret — shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not kbs:
        raise ValueError("name at least one knowledge base, or '*' for all")
    key_id = secrets.token_hex(8)
    secret = f"rgn_{key_id}_{secrets.token_urlsafe(32)}"
    record = {
        "id": key_id,
        "name": name,
        "hash": _digest(secret),
        "role": role,
        "kbs": kbs,
        "created_at": now(),
    }
    with metadata.begin() as conn:
        if conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first() is not None:
            raise ValueError(f"a key named {name!r} already exists; revoke it or choose another name")
        conn.execute(insert(api_keys).values(**record))
    return _view(record), secret


def list_keys(metadata: MetadataStore) -> list[dict[str, Any]]:
    with metadata.connect() as conn:
        return [
            _view(dict(r._mapping)) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at))
        ]


def revoke_key(metadata: MetadataStore, name_or_id: str) -> bool:
    with metadata.begin() as conn:
        done = conn.execute(
            update(api_keys)
            .where(
                (api_keys.c.name == name_or_id) | (api_keys.c.id == name_or_id),
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=now())
        )
    return bool(done.rowcount)


def active_keys(metadata: MetadataStore) -> int:
    with metadata.connect() as conn:
        return len(conn.execute(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None))).all())


def authenticate(metadata: MetadataStore, secret: str) -> Principal | None:
    with metadata.connect() as conn:
        row = conn.execute(
            select(api_keys).where(api_keys.c.hash == _digest(secret), api_keys.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    return Principal(row.name, row.role, tuple(row.kbs))


def _view(record: dict[str, Any]) -> dict[str, Any]:
    revoked = record.get("revoked_at")
    return {
        "id": record["id"],
        "name": record["name"],
        "role": record["role"],
        "kbs": list(record["kbs"]),
        "created_at": record["created_at"].isoformat(),
        "revoked": revoked is not None,
    }


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def get_principal(request: Request, services: ServicesDep) -> Principal:
    if services.settings.auth == "none":
        return LOCAL
    secret = _secret(request)
    if secret is None:
        raise RequestError(
            "an API key is required: send 'Authorization: Bearer <key>' "
            "(create one with `ragnet keys create`)",
            401,
            "unauthorized",
        )
    principal = authenticate(services.metadata, secret)
    if principal is None:
        raise RequestError("unknown or revoked API key", 401, "unauthorized")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]

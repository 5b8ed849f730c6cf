"""API keys in the sessions database (SQLite under the data dir, or RAGLINE_SESSIONS_URL).

Only the sha256 of a key is stored: a key is 256 random bits, so a fast hash is enough and a leaked
database gives no usable key. Each key belongs to a tenant and names the collections it may read;
`*` means every collection no other tenant has claimed. A collection named explicitly by an active
key belongs to that key's tenant, and no other tenant's key may name it: that is what keeps tenants
apart. Usage (requests, prompt and completion tokens) is summed per key in the same row.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from pipelines.settings import validate_collection
from serving.sessions import open_engine

ALL = "*"
KEY_PREFIX = "rlk_"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER_MIN = {"s": 60.0, "sec": 60.0, "second": 60.0, "m": 1.0, "min": 1.0, "minute": 1.0}

metadata = MetaData()
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(64), index=True, nullable=False),
    Column("collections", Text, nullable=False),  # JSON list of names, or ["*"]
    Column("key_hash", String(64), unique=True, nullable=False),  # sha256 hex; the key is never stored
    Column("hint", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("rate_per_min", Float, nullable=True),  # None = no limit
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("requests", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
)


class UnknownKeyError(LookupError):
    pass


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_rate(text: str) -> float:
    """'60/min', '2/s', '1000/h' or a bare number (per minute) → requests per minute."""
    text = text.strip()
    m = _RATE_RE.match(text)
    try:
        per_min = float(m.group(1)) * _PER_MIN.get(m.group(2), 1 / 60) if m else float(text)
    except ValueError:
        raise ValueError(f"rate limit {text!r}: use N/min, N/s or N/h") from None
    if per_min <= 0:
        raise ValueError(f"rate limit {text!r} must be > 0")
    return per_min


def format_rate(per_min: float | None) -> str:
    return "unlimited" if per_min is None else f"{per_min:g}/min"


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    collections: tuple[str, ...]
    hint: str
    rate_per_min: float | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "collections": list(self.collections),
            "hint": self.hint,
            "rate_limit": format_rate(self.rate_per_min),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        collections=tuple(json.loads(row.collections)),
        hint=row.hint,
        rate_per_min=row.rate_per_min,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        requests=row.requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
    )


class KeyStore:
    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        metadata.create_all(self.engine)

    # --- administration (the CLI) ---------------------------------------------------------------
    def create(
        self, tenant: str, collections: Sequence[str], rate_per_min: float | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its plaintext, which exists only in this return value."""
        if not TENANT_RE.match(tenant):
            raise ValueError(f"invalid tenant {tenant!r}: 1-63 lowercase letters, digits, '.', '-', '_'")
        names = list(dict.fromkeys(collections))
        if not names:
            raise ValueError("a key needs at least one collection (or '*')")
        for name in names:
            if name != ALL:
                validate_collection(name)
        if rate_per_min is not None and rate_per_min <= 0:
            raise ValueError("the rate limit must be > 0")
        owners = self.owners()
        taken = {n: owners[n] for n in names if owners.get(n, tenant) != tenant}
        if taken:
            raise ValueError(
                "collections belong to other tenants: " + ", ".join(f"{n} ({t})" for n, t in taken.items())
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = uuid.uuid4().hex[:12]
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key_id,
                    tenant=tenant,
                    collections=json.dumps(names),
                    key_hash=hash_key(secret),
                    hint=secret[: len(KEY_PREFIX) + 4],
                    rate_per_min=rate_per_min,
                    created_at=datetime.now(UTC),
                    requests=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                )
            )
        key = self.get(key_id)
        assert key is not None
        return key, secret

    def get(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return _key(row) if row else None

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_key(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        key = self.get(key_id)
        if key is None:
            raise UnknownKeyError(f"no API key with id {key_id!r}")
        if not done.rowcount:
            raise ValueError(f"API key {key_id} was already revoked")
        return key

    # --- the request path ---------------------------------------------------------------------
    def authenticate(self, secret: str) -> ApiKey | None:
        """The key with this plaintext (revoked ones too: the caller says why it refuses), counting
        the request against it. None for an unknown key."""
        digest = hash_key(secret)
        with self.engine.begin() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
            if row is None or row.revoked_at is not None:
                return _key(row) if row else None
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == row.id)
                .values(requests=api_keys.c.requests + 1, last_used_at=datetime.now(UTC))
            )
        return _key(row)

    def add_usage(self, key_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(
                    prompt_tokens=api_keys.c.prompt_tokens + int(prompt_tokens),
                    completion_tokens=api_keys.c.completion_tokens + int(completion_tokens),
                )
            )

    def owners(self) -> dict[str, str]:
        """collection → tenant, for every collection an active key names explicitly."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(api_keys.c.tenant, api_keys.c.collections).where(api_keys.c.revoked_at.is_(None))
            ).all()
        return {name: r.tenant for r in rows for name in json.loads(r.collections) if name != ALL}

    def readable(self, key: ApiKey, names: Iterable[str]) -> list[str]:
        """Those of NAMES that KEY may read."""
        names = list(names)
        if ALL not in key.collections:
            return [n for n in names if n in key.collections]
        owners = self.owners()
        return [n for n in names if owners.get(n, key.tenant) == key.tenant]

    def may_read(self, key: ApiKey, collection: str) -> bool:
        return bool(self.readable(key, [collection]))

"""The API-key store on a real SQLite file: hashed keys, tenants that own their collections, usage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from serving.keys import ALL, KeyStore, UnknownKeyError, api_keys, format_rate, parse_rate


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(f"sqlite:///{tmp_path / 'nested' / 'sessions.db'}")


def test_only_the_hash_of_a_key_is_stored(store: KeyStore) -> None:
    key, secret = store.create("acme", ["handbook"])
    assert secret.startswith("rlk_") and len(secret) > 40
    with store.engine.connect() as conn:
        row = conn.execute(select(api_keys)).one()
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in row), "the plaintext key must not be stored"
    found = store.authenticate(secret)
    assert found is not None and found.id == key.id and found.tenant == "acme"
    assert store.authenticate(secret + "x") is None
    _, other = store.create("acme", ["handbook"])
    assert other != secret


def test_a_collection_belongs_to_one_tenant(store: KeyStore) -> None:
    acme, _ = store.create("acme", ["handbook", "wiki"])
    store.create("acme", ["handbook"])  # the same tenant may hold many keys
    with pytest.raises(ValueError, match=r"handbook \(acme\)"):
        store.create("globex", ["handbook"])
    globex, _ = store.create("globex", [ALL])
    assert store.readable(acme, ["handbook", "wiki", "other"]) == ["handbook", "wiki"]
    # '*' reads what no other tenant has claimed
    assert store.readable(globex, ["handbook", "wiki", "other"]) == ["other"]
    assert not store.may_read(globex, "handbook") and store.may_read(globex, "other")


def test_revoking_releases_nothing_but_the_key(store: KeyStore) -> None:
    key, secret = store.create("acme", ["handbook"])
    revoked = store.revoke(key.id)
    assert not revoked.active and store.authenticate(secret) == revoked  # found, so refused as revoked
    with pytest.raises(ValueError, match="already revoked"):
        store.revoke(key.id)
    with pytest.raises(UnknownKeyError):
        store.revoke("nope")
    store.create("globex", ["handbook"])  # no active key claims it any more


def test_requests_and_tokens_are_summed_per_key(store: KeyStore) -> None:
    key, secret = store.create("acme", ["handbook"])
    other, _ = store.create("acme", ["handbook"])
    store.authenticate(secret)
    store.authenticate(secret)
    store.add_usage(key.id, 100, 20)
    store.add_usage(key.id, 50, 5)
    got = store.get(key.id)
    assert got is not None
    assert (got.requests, got.prompt_tokens, got.completion_tokens) == (2, 150, 25)
    assert got.last_used_at is not None
    assert store.get(other.id).to_dict()["requests"] == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tenant", "collections", "rate"),
    [("Acme", ["handbook"], None), ("acme", [], None), ("acme", ["Bad Name"], None), ("acme", ["x"], 0.0)],
)
def test_bad_keys_are_refused(
    store: KeyStore, tenant: str, collections: list[str], rate: float | None
) -> None:
    with pytest.raises(ValueError):
        store.create(tenant, collections, rate)


def test_rate_limits_parse() -> None:
    assert parse_rate("60/min") == 60.0
    assert parse_rate("2/s") == 120.0
    assert parse_rate("30/h") == 0.5
    assert parse_rate("10") == 10.0
    assert format_rate(parse_rate("2 / minute")) == "2/min" and format_rate(None) == "unlimited"
    for bad in ("3/week", "fast", "0/min", "-1"):
        with pytest.raises(ValueError):
            parse_rate(bad)

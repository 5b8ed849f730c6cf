"""API keys on a real Serve app with RAGLINE_AUTH=true: 401 without a valid key, 403 across tenants
on every route that reads a collection, 429 past a key's rate, tokens summed per key, sessions kept
per tenant, and the `ragline keys` commands. Two tenants: acme owns `e2e`, globex owns `hostile`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pipelines.settings import Settings
from ragline.cli import app as cli
from serving.keys import KeyStore
from serving.sessions import SessionStore
from tests.conftest import E2E_COLLECTION, HOSTILE_COLLECTION
from tests.serving.browser import ARTIFACTS, launch
from tests.serving.extra_apps import delete_extra_app, start_extra_app

pytestmark = pytest.mark.e2e

APP = "authz"


@pytest.fixture(scope="module")
def store(settings: Settings) -> KeyStore:
    return KeyStore(settings.sessions_database)  # the database the app reads


@pytest.fixture(scope="module")
def keys(store: KeyStore) -> Iterator[dict[str, str]]:
    made = {
        "acme": store.create("acme", [E2E_COLLECTION]),
        "globex": store.create("globex", [HOSTILE_COLLECTION]),
        "acme_all": store.create("acme", ["*"]),
    }
    yield {name: secret for name, (_, secret) in made.items()}
    for key, _ in made.values():  # frees the collections for other tests' tenants
        if store.get(key.id).active:  # type: ignore[union-attr]
            store.revoke(key.id)


@pytest.fixture(scope="module")
def auth_service(service: str, settings: Settings) -> Iterator[str]:
    yield start_extra_app(service, settings, APP, auth=True)
    delete_extra_app(APP)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]["message"]


def test_v1_routes_need_a_valid_key(auth_service: str, keys: dict[str, str]) -> None:
    search = f"{auth_service}/v1/search"
    body = {"query": "volcano"}
    missing = httpx.post(search, json=body, timeout=60)
    assert "Authorization: Bearer" in _error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    for headers in (
        {"Authorization": f"Basic {keys['acme']}"},
        {"Authorization": "Bearer"},
        _bearer("rlk_not-a-key"),
        _bearer(keys["acme"] + "x"),
    ):
        _error(httpx.post(search, json=body, headers=headers, timeout=60), 401, "unauthorized")
    _error(httpx.get(f"{auth_service}/v1/models", timeout=60), 401, "unauthorized")
    _error(
        httpx.post(f"{auth_service}/v1/feedback", json={"message_id": "m", "rating": 1}), 401, "unauthorized"
    )
    ok = httpx.post(search, json=body, headers=_bearer(keys["acme"]), timeout=60)
    assert ok.status_code == 200 and ok.json()["results"]


def test_health_page_and_docs_stay_open(auth_service: str) -> None:
    for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json"):
        assert httpx.get(f"{auth_service}{path}", timeout=60).status_code == 200, path
    metrics = httpx.get(f"{auth_service}/metrics", timeout=60)  # open to a scraper without a key
    assert metrics.status_code == 200, metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE ragline_requests_total counter" in metrics.text


CROSS_TENANT = [
    ("/v1/search", {"query": "anything"}),
    ("/v1/chat", {"message": "anything", "max_tokens": 4}),
    ("/v1/chat", {"message": "anything", "max_tokens": 4, "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "anything"}], "max_tokens": 4}),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "anything"}], "max_tokens": 4, "stream": True},
    ),
]


@pytest.mark.parametrize(("path", "body"), CROSS_TENANT)
@pytest.mark.parametrize(
    ("who", "target"),
    [("acme", HOSTILE_COLLECTION), ("acme_all", HOSTILE_COLLECTION), ("globex", E2E_COLLECTION)],
)
def test_a_key_never_reads_another_tenants_collection(
    auth_service: str, keys: dict[str, str], path: str, body: dict, who: str, target: str
) -> None:
    field = "model" if path == "/v1/chat/completions" else "collection"
    r = httpx.post(
        f"{auth_service}{path}", json={**body, field: target}, headers=_bearer(keys[who]), timeout=60
    )
    assert target in _error(r, 403, "forbidden")


def test_the_default_collection_is_checked_too(auth_service: str, keys: dict[str, str]) -> None:
    # the app's default collection is e2e (acme's): globex asking without naming one is refused
    r = httpx.post(f"{auth_service}/v1/search", json={"query": "volcano"}, headers=_bearer(keys["globex"]))
    _error(r, 403, "forbidden")
    own = httpx.post(
        f"{auth_service}/v1/search",
        json={"query": "blue pennant", "collection": HOSTILE_COLLECTION},
        headers=_bearer(keys["globex"]),
        timeout=60,
    )
    assert own.status_code == 200 and own.json()["collection"] == HOSTILE_COLLECTION


def test_models_lists_only_the_keys_collections(auth_service: str, keys: dict[str, str]) -> None:
    def models(who: str) -> set[str]:
        r = httpx.get(f"{auth_service}/v1/models", headers=_bearer(keys[who]), timeout=60)
        assert r.status_code == 200, r.text
        return {m["id"] for m in r.json()["data"]}

    assert models("acme") == {E2E_COLLECTION}
    assert models("globex") == {HOSTILE_COLLECTION}
    assert E2E_COLLECTION in models("acme_all") and HOSTILE_COLLECTION not in models("acme_all")


def test_a_key_past_its_rate_gets_429_with_retry_after(
    auth_service: str, store: KeyStore, keys: dict[str, str]
) -> None:
    _, limited = store.create("acme", [E2E_COLLECTION], rate_per_min=2)
    statuses, refused = [], None
    for _ in range(6):  # a burst of 2, then one request every 30 s
        r = httpx.get(f"{auth_service}/v1/models", headers=_bearer(limited), timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 429:
            refused = r
            break
    assert statuses[:2] == [200, 200] and refused is not None, statuses
    _error(refused, 429, "rate_limited")
    assert 0 < int(refused.headers["retry-after"]) <= 30
    other = httpx.get(f"{auth_service}/v1/models", headers=_bearer(keys["acme"]), timeout=60)
    assert other.status_code == 200  # the limit is per key


def _json(result: Result) -> dict:
    """The command's JSON line (Ray's workers may print log lines after it)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.output.splitlines()[0])


def _stream_done(url: str, body: dict, headers: dict[str, str]) -> dict:
    with httpx.stream("POST", url, json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    return json.loads(lines[-1].removeprefix("data: "))


def test_tokens_are_summed_per_key_and_sessions_kept_per_tenant(
    auth_service: str, store: KeyStore, keys: dict[str, str], settings: Settings
) -> None:
    from openai import OpenAI

    key, secret = store.create("acme", [E2E_COLLECTION])
    headers = _bearer(secret)
    question = {"message": "What is a Fresnel lens?", "max_tokens": 8, "session_id": "shared-id"}
    plain = httpx.post(f"{auth_service}/v1/chat", json=question, headers=headers, timeout=300).json()
    streamed = _stream_done(f"{auth_service}/v1/chat", {**question, "stream": True}, headers)
    client = OpenAI(base_url=f"{auth_service}/v1", api_key=secret)  # sends 'Authorization: Bearer'
    reply = client.chat.completions.create(
        model=E2E_COLLECTION, messages=[{"role": "user", "content": "How is black tea made?"}], max_tokens=8
    )
    assert not plain["degraded"] and not streamed["degraded"] and reply.usage is not None
    prompt = plain["usage"]["prompt_tokens"] + streamed["usage"]["prompt_tokens"] + reply.usage.prompt_tokens
    completion = (
        plain["usage"]["completion_tokens"]
        + streamed["usage"]["completion_tokens"]
        + reply.usage.completion_tokens
    )
    assert prompt > 0 and completion > 0
    got = store.get(key.id)
    assert got is not None and (got.requests, got.prompt_tokens, got.completion_tokens) == (
        3,
        prompt,
        completion,
    )

    listed = CliRunner().invoke(cli, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(k for k in _json(listed)["keys"] if k["id"] == key.id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)

    # Another tenant using the same session id starts its own conversation.
    other = {**question, "collection": HOSTILE_COLLECTION, "message": "What does a blue pennant mean?"}
    r = httpx.post(f"{auth_service}/v1/chat", json=other, headers=_bearer(keys["globex"]), timeout=300)
    assert r.status_code == 200 and r.json()["session_id"] == "shared-id"
    sessions = SessionStore(settings.sessions_database)
    hashed = hashlib.sha256(b"shared-id").hexdigest()[:32]
    assert len(sessions.history(f"acme/{hashed}", turns=10)) == 4  # two acme turns
    assert len(sessions.history(f"globex/{hashed}", turns=10)) == 2
    assert sessions.history("shared-id") == []

    # Feedback only on one's own tenant's messages: another tenant's message is unknown (404).
    rate = {"message_id": plain["message_id"], "rating": 1}
    feedback = f"{auth_service}/v1/feedback"
    _error(httpx.post(feedback, json=rate, headers=_bearer(keys["globex"]), timeout=30), 404, "http_error")
    own = httpx.post(feedback, json=rate, headers=headers, timeout=30)
    assert own.status_code == 200 and len(sessions.feedback_for(plain["message_id"])) == 1


def test_the_chat_page_asks_for_a_key_and_sends_it(auth_service: str, keys: dict[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(f"{auth_service}/")
        expect(page.locator("#keyrow")).to_be_visible()
        expect(page.locator("#keynote")).to_contain_text("API key is required")
        page.fill("#apikey", keys["acme"])
        page.click("#usekey")
        expect(page.locator("#collection option")).to_have_text([E2E_COLLECTION])  # only the key's
        page.fill("#question", "What is a Fresnel lens?")
        page.click("#send")
        expect(page.locator("ol.sources li").first).to_be_visible(timeout=180_000)
        page.screenshot(path=str(ARTIFACTS / "chat-page-with-key.png"), full_page=True)
        browser.close()


def test_keys_cli_creates_lists_and_revokes(auth_service: str, store: KeyStore) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--tenant", "acme", "-c", E2E_COLLECTION, "--rate-limit", "100/min", "--json"]
    )
    assert made.exit_code == 0, made.output
    created = _json(made)
    secret = created["key"]
    assert created["tenant"] == "acme" and created["rate_limit"] == "100/min"
    listed = runner.invoke(cli, ["keys", "list", "--json"])
    row = next(k for k in _json(listed)["keys"] if k["id"] == created["id"])
    assert "key" not in row and secret not in listed.output  # shown once, at creation
    assert httpx.get(f"{auth_service}/v1/models", headers=_bearer(secret), timeout=60).status_code == 200

    taken = runner.invoke(cli, ["keys", "create", "--tenant", "globex", "-c", E2E_COLLECTION])
    assert taken.exit_code == 2 and "belong to other tenants" in taken.output

    revoked = runner.invoke(cli, ["keys", "revoke", created["id"]])
    assert revoked.exit_code == 0, revoked.output
    r = httpx.get(f"{auth_service}/v1/models", headers=_bearer(secret), timeout=60)
    assert "revoked" in _error(r, 401, "unauthorized")
    assert runner.invoke(cli, ["keys", "revoke", "no-such-id"]).exit_code == 1
    table = runner.invoke(cli, ["keys", "list"])
    assert table.exit_code == 0 and created["id"] in table.output and "revoked" in table.output

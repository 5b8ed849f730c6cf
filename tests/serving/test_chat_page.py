"""The chat page in a real headless browser (Debian's chromium, driven by Playwright): ask, watch
the streamed answer, open a source. A screenshot is kept in test-artifacts/chat-page.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import E2E_COLLECTION as COLLECTION

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network and a root user (see the machine notes): no sandbox, no background calls.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.e2e


def test_chat_page_streams_an_answer_with_clickable_sources(service: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (Debian package chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"{service}/")
        expect(page.locator("#collection option", has_text=COLLECTION)).to_have_count(1)
        page.select_option("#collection", COLLECTION)
        page.fill("#question", "How should a bicycle chain be lubricated?")
        page.click("#send")
        sources = page.locator("ol.sources li")
        expect(sources.first).to_be_visible(timeout=180_000)
        assert page.locator(".answer").first.inner_text().strip()
        expect(page.locator("ol.sources a").first).to_contain_text("Bicycle Chain Maintenance")
        page.locator("ol.sources a").first.click()
        expect(page.locator(".passage.open").first).to_contain_text("chain")
        page.screenshot(path=str(ARTIFACTS / "chat-page.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "chat-page.png").stat().st_size > 10_000

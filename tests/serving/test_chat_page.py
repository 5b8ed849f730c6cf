"""The chat page in a real headless browser (Debian's chromium, driven by Playwright): ask, watch
the streamed answer, open a source. A screenshot is kept in test-artifacts/chat-page.png."""

from __future__ import annotations

import pytest

from tests.conftest import E2E_COLLECTION as COLLECTION
from tests.serving.browser import ARTIFACTS, launch

pytestmark = pytest.mark.e2e


def test_chat_page_streams_an_answer_with_clickable_sources(service: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
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

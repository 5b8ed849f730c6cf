"""The chat page in a real headless browser (Debian's chromium, driven by Playwright): ask, watch
the streamed answer, follow a citation to its source card, rate the answer, ask a follow-up in the
same session, start a new chat. Screenshots are kept in test-artifacts/chat-page*.png."""

from __future__ import annotations

import re

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
        assert page.locator("#collection option").first.inner_text() == COLLECTION  # the default first
        page.fill("#question", "How should a bicycle chain be lubricated?")
        page.click("#send")
        sources = page.locator("ol.sources li")
        expect(sources.first).to_be_visible(timeout=180_000)
        first = page.locator(".turn").first
        assert first.locator(".answer p").first.inner_text().strip()  # rendered as paragraphs
        expect(page.locator("ol.sources a.source").first).to_contain_text("Bicycle Chain Maintenance")
        expect(first.locator(".badge").first).to_have_text(re.compile(r"(high|medium|low) relevance"))
        title = first.locator("ol.sources a.source").first
        title.click()  # a source's title opens its passage ...
        expect(first.locator("ol.sources li").first.locator(".passage")).to_contain_text("chain")
        title.click()  # ... and closes it
        expect(first.locator(".passage.open")).to_have_count(0)
        cites = first.locator("a.cite")
        if cites.count():  # a citation in the answer opens the card of the source it names
            n = cites.first.get_attribute("data-source")
            cites.first.click()
            expect(first.locator(f"ol.sources li:nth-child({n}) .passage")).to_have_class(re.compile("open"))

        first.get_by_label("comment").fill("clear and short")
        first.get_by_label("good answer").click()  # to /v1/feedback, with the message id
        expect(first.locator(".feedback .meta")).to_have_text("thanks")
        page.screenshot(path=str(ARTIFACTS / "chat-page.png"), full_page=True)

        page.fill("#question", "And how often should I do that?")  # a follow-up: the session carries it
        page.click("#send")
        expect(page.locator(".turn")).to_have_count(2)
        follow_up = page.locator(".turn").first
        expect(follow_up.locator("ol.sources li").first).to_be_visible(timeout=180_000)
        expect(follow_up.locator("ol.sources a.source")).to_contain_text(["Bicycle Chain Maintenance"])
        page.screenshot(path=str(ARTIFACTS / "chat-page-follow-up.png"), full_page=True)

        page.click("#newchat")
        expect(page.locator(".turn")).to_have_count(0)
        browser.close()
    assert (ARTIFACTS / "chat-page.png").stat().st_size > 10_000


def test_markdown_in_an_answer_is_rendered_as_elements_never_as_html(service: str) -> None:
    """The page's own renderer on hostile text: formatting becomes elements, markup stays text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(f"{service}/")
        html = page.evaluate(
            """() => { const d = document.createElement("div");
                renderAnswer(d, "**Bold** and `code` [1].\\n\\n- one <img src=x onerror=f()>\\n- two", 9);
                return d.innerHTML; }"""
        )
        browser.close()
    assert "<strong>Bold</strong>" in html and "<code>code</code>" in html and 'class="cite"' in html
    assert "<ul><li>one &lt;img src=x onerror=f()&gt;</li><li>two</li></ul>" in html

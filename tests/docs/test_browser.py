"""The docs pages in headless Debian chromium with every non-loopback request refused: both render
the operations, and Swagger UI's "Try it out" produces then consumes on a live server."""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SUMMARIES = ["List topics", "Create a topic", "Delete a topic", "Produce messages", "Consume messages",
             "Truncate a topic", "CORS preflight", "Preflight of the topic list"]


@pytest.fixture
def page(tmp_path):
    """A chromium page that refuses (and records) every request leaving the machine."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.blocked = []

        def only_loopback(route):
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                page.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        page.set_default_timeout(30_000)
        yield page
        page.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
        context.close()
        browser.close()


def operation(page: Page, operation_id: str):
    block = page.locator(f"#operations-topics-{operation_id}")
    block.locator(".opblock-summary").first.click()
    block.get_by_role("button", name="Try it out").click()
    return block


def fill(block, name: str, value: str) -> None:
    block.locator(f'tr[data-param-name="{name}"] input').first.fill(value)


def test_swagger_lists_operations_and_try_it_out_produces_then_consumes(page, server):
    urllib.request.urlopen(urllib.request.Request(f"{server.url}/topics/browser", method="PUT"), timeout=30).close()
    page.goto(f"{server.url}/docs/")
    page.get_by_role("link", name="Swagger UI").click()
    expect(page.locator(".opblock")).to_have_count(len(SUMMARIES))
    for summary in SUMMARIES:
        expect(page.locator(".opblock-summary-description", has_text=summary)).to_have_count(1)

    produce = operation(page, "produce")
    fill(produce, "topic", "browser")
    fill(produce, "X-Sizes", "5:5:3")
    produce.locator('input[type="file"]').set_input_files(
        {"name": "batch.bin", "mimeType": "application/octet-stream", "buffer": b"helloworldabc"}
    )
    produce.get_by_role("button", name="Execute").click()
    expect(produce.locator(".live-responses-table tr.response .response-col_status").first).to_have_text("204")

    consume = operation(page, "consume")
    fill(consume, "topic", "browser")
    fill(consume, "X-Id", "0")
    fill(consume, "X-Limit", "10")
    consume.get_by_role("button", name="Execute").click()
    live = consume.locator(".live-responses-table")
    expect(live.locator("tr.response .response-col_status").first).to_have_text("200")
    expect(live).to_contain_text("x-sizes: 5:5:3")

    with urllib.request.urlopen(
        urllib.request.Request(f"{server.url}/topics/browser", headers={"X-Id": "0", "X-Limit": "10"}), timeout=30
    ) as response:
        assert response.read() == b"helloworldabc"
    assert page.blocked == []


def test_redoc_renders_every_operation_offline(page, server):
    page.goto(f"{server.url}/docs/")
    page.get_by_role("link", name="Redoc").click()
    menu = page.locator('[role="menuitem"], li[data-item-id]')
    for summary in SUMMARIES:
        expect(page.locator("li[data-item-id]", has_text=summary).first).to_be_visible()
    expect(page.locator("h2", has_text="Produce messages")).to_be_visible()
    assert menu.count() >= len(SUMMARIES)
    assert page.blocked == []

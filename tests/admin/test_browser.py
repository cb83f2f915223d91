"""The admin in a real headless Chromium against a real ``manage.py serve``.

Log in, open the topics and a topic, read a message whose body is a script tag (shown as
text, never run), wipe the volume reads come from, press Recover, see the report and the
files back. Screenshots of every page go to the test's tmp dir; set
``HARAQA_SCREENSHOTS_DIR=docs/screenshots`` to refresh the README's copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from ..conftest import REPO
from .conftest import tree

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
XSS = b"<script>alert(1)</script>"
PASSWORD = "a-long-test-password-9"


def request(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    import urllib.request

    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status


def read_message(url: str, topic: str, message_id: int) -> bytes:
    import urllib.request

    req = urllib.request.Request(f"{url}/topics/{topic}", headers={"X-Id": str(message_id), "X-Limit": "1"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.read()


def produce(url: str, topic: str, messages: list[bytes]) -> None:
    sizes = ":".join(str(len(m)) for m in messages)
    assert request("POST", f"{url}/topics/{topic}", b"".join(messages), {"X-Sizes": sizes}) == 204


def create_superuser(data_dir: Path) -> None:
    """The README's non-interactive path: ``createsuperuser --noinput`` with DJANGO_SUPERUSER_*."""
    env = {
        **os.environ,
        "HARAQA_DATA_DIR": str(data_dir),
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"], cwd=REPO, env=env, check=True,
        capture_output=True,
    )


@pytest.fixture
def browser_page(tmp_path: Path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        yield page
        browser.close()


def test_admin_end_to_end_in_chromium(server_factory, volumes, tmp_path, browser_page):
    server = server_factory(volumes, "--workers", "2", "--entries", "5")
    create_superuser(tmp_path / "data")
    assert request("PUT", f"{server.url}/topics/web/pages") == 201
    produce(server.url, "web/pages", [XSS, b'{"user": "ada", "tags": ["<b>", 2]}', os.urandom(24)])
    assert request("PUT", f"{server.url}/topics/orders") == 201
    for batch in range(4):
        produce(server.url, "orders", [b"order %d-%d" % (batch, i) for i in range(batch * 3 + 1)])
    assert request("PUT", f"{server.url}/topics/scratch") == 201

    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def screenshot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    # Log in: the admin sends anonymous visitors to its login page.
    page.goto(f"{server.url}/admin/queues/topic/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    screenshot("login")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/queues/topic/")

    # Topics: every topic with its figures, and the chart drawn from our static files.
    page.wait_for_selector("#topic-chart.queues-chart-ready")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    orders = rows.filter(has_text="orders")
    assert orders.locator("td").nth(2).inner_text() == "22"  # messages 0..21
    assert page.locator('#topic-chart svg[data-series="bytes"] rect').count() == 2
    assert page.locator("#result_list .queues-badge-ok").count() == 3 * len(volumes)
    screenshot("topics")

    # One topic: segments per volume and the message browser.
    page.click("#result_list a:text-is('web/pages')")
    page.wait_for_selector(".queues-messages")
    assert page.locator(".queues-volume").count() == len(volumes)
    assert page.locator(".queues-messages tbody tr").count() == 3
    first_preview = page.locator(".queues-messages tbody tr").first.locator("pre")
    assert first_preview.inner_text() == XSS.decode()
    screenshot("topic")

    # The message: the script tag is text on the page and never runs.
    page.click(".queues-messages tbody tr >> nth=0 >> a:text-is('0')")
    page.wait_for_selector("#message-body")
    assert page.locator("#message-body").inner_text() == XSS.decode()
    assert page.evaluate("() => [...document.scripts].some(s => s.textContent.includes('alert(1)'))") is False
    assert dialogs == []
    screenshot("message")

    # Produce from the form, truncate and delete through their confirmation pages.
    page.goto(f"{server.url}/admin/queues/topic/orders/")
    page.fill("#id_body", "hello from\nthe admin")
    page.click("input[type=submit][value=Produce]")
    page.wait_for_selector(".messagelist .success")
    assert page.locator(".queues-messages tbody tr").first.locator("pre").inner_text() == "hello from\nthe admin"
    assert read_message(server.url, "orders", 22) == b"hello from\nthe admin"  # the browser sent CRLF
    page.fill("#id_before_id", "10")
    page.click("input[type=submit][value='Truncate…']")
    page.wait_for_selector("text=Truncate orders?")
    screenshot("truncate-confirm")
    page.click("input[type=submit][value='Yes, truncate']")
    page.wait_for_selector(".messagelist .success")
    assert "first stored id 0 -> 10" in page.locator(".messagelist").inner_text()
    page.click("a.historylink")
    page.wait_for_selector("#history")
    actions = page.locator("#history tbody tr")
    assert actions.count() == 2  # newest first, with who did it
    assert "Truncated (before_id=10): first stored id 0 -> 10" in actions.nth(0).inner_text()
    assert "admin" in actions.nth(1).inner_text() and "Produced message 22" in actions.nth(1).inner_text()
    screenshot("topic-history")
    page.goto(f"{server.url}/admin/queues/topic/scratch/")
    page.click("a.deletelink")
    page.wait_for_selector("text=Delete scratch?")
    screenshot("delete-confirm")
    page.click("input[type=submit][value='Yes, delete']")
    page.wait_for_url("**/admin/queues/topic/")
    assert page.locator("#result_list tbody tr").count() == 2
    page.goto(f"{server.url}/admin/")
    assert page.locator("#recent-actions-module").inner_text().count("orders") == 2  # produce, truncate
    screenshot("index")

    # Wipe the volume reads come from, then repair it from the others.
    healthy = tree(volumes[0])
    shutil.rmtree(volumes[-1])
    page.goto(f"{server.url}/admin/queues/volume/")
    health = page.locator("#volume-table tbody tr").nth(len(volumes) - 1).locator(".queues-badge")
    assert health.inner_text() == "missing"
    screenshot("volumes-damaged")
    page.click("input[type=submit][value=Recover]")
    page.wait_for_selector("#run-report", timeout=60_000)  # the page polls the run, then reloads
    assert page.locator(".queues-run-result").inner_text() == "Result: repaired"
    assert page.locator("#run-problems").inner_text().count("repaired") >= 2
    assert tree(volumes[-1]) == healthy
    assert page.locator("#volume-table .queues-badge-ok").count() == len(volumes)
    screenshot("volumes-recovered")
    page.click("a.historylink")
    page.wait_for_selector("#history")
    assert page.locator("#history tbody tr", has_text="Recovery started").count() == len(volumes)
    screenshot("volumes-history")

    # The repaired volume serves the topic again; sorted by first id (orders now starts at 10).
    page.goto(f"{server.url}/admin/queues/topic/")
    page.wait_for_selector("#topic-chart.queues-chart-ready")
    assert page.locator("#result_list tbody tr").count() == 2
    first_names = lambda: page.locator("#result_list tbody th").all_inner_texts()  # noqa: E731
    page.click("#result_list thead a:has-text('First id')")
    page.wait_for_url("**o=-first_id")
    assert first_names() == ["orders", "web/pages"]
    page.click("#result_list thead a:has-text('First id')")
    page.wait_for_url("**o=first_id")
    assert first_names() == ["web/pages", "orders"]
    page.click("input[type=submit][value=Filter]")  # the filter keeps the sort
    page.wait_for_url("**q=&mode=prefix&o=first_id")
    assert first_names() == ["web/pages", "orders"]
    assert dialogs == [] and failed == []

    target = os.environ.get("HARAQA_SCREENSHOTS_DIR")
    if target:
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)

"""The pages for people, in a real browser: the demo at `/` and the API docs, against a live server.

The server is uvicorn in a subprocess on 127.0.0.1 with the bundled models; the browser is Debian's chromium,
driven by Playwright (whose own browser download cannot work offline). Every test also checks that no request
left the machine: Swagger UI and ReDoc load from a CDN unless the app serves their files itself."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import ROOT

CHROMIUM = os.environ.get("CHARSERVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_docs_pages_point_at_local_files_only() -> None:
    """Without a browser: the docs pages name no other host, and the files they load are served."""
    with TestClient(create_app(Settings(models=[]))) as client:
        for path in ("/docs", "/redoc", "/"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "cdn" not in page.text and "googleapis" not in page.text, path
            assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text), path
            for asset in re.findall(r"[\"'](/static/[^\"']+)[\"']", page.text):
                assert client.get(asset).status_code == 200, asset
        assert client.get("/docs/oauth2-redirect").status_code == 200
        assert "/" not in client.get("/openapi.json").json()["paths"]  # the pages are not API operations


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real uvicorn serving the bundled models on a free local port, as `make serve` starts it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHARSERVE_ACCESS_LOG": "false"}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
            try:
                with urlopen(f"{url}/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server was not ready within 240 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does where it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: str) -> Iterator:
    """A fresh page that records every host it asks; the test's end checks that each was this machine."""
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    asked: list[str] = []
    blocked: set[str] = set()  # stopped inside the browser by the page's Content-Security-Policy: never sent
    page.on("request", lambda request: asked.append(request.url))
    page.on(
        "requestfailed",
        lambda request: blocked.add(request.url) if "csp" in (request.failure or "").lower() else None,
    )
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert asked, "the page made no request at all"
    # data: and blob: URLs have no host: they never leave the browser
    elsewhere = {url for url in asked if urlsplit(url).hostname not in LOCAL_HOSTS | {None}} - blocked
    assert not elsewhere, f"requests left the machine: {sorted(elsewhere)}"


def submit(page, form: str, field: str, text: str) -> None:
    """On a fresh demo page: type `text` into the field and press the form's button."""
    page.goto("/")
    page.fill(f"#{field}", text)
    page.click(f"#{form} button")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_render_offline(page, path: str) -> None:
    page.goto(path)
    for operation in ("/correct", "/classify", "/poem"):
        page.get_by_text(operation, exact=True).first.wait_for(state="visible")
    assert page.get_by_text("charserve").first.is_visible()


def test_demo_corrects_and_underlines(page) -> None:
    submit(page, "correct-form", "correct-input", "Ths sentense has erors")
    fixes = page.locator("#correct-output .fix")
    fixes.nth(2).wait_for()
    assert page.inner_text("#correct-output").strip() == "This sentence has errors"
    assert fixes.all_inner_texts()[0].startswith("This")
    tip = fixes.first.locator(".tip")
    assert not tip.is_visible()
    fixes.first.hover()
    tip.wait_for(state="visible")
    assert "was “Ths”" in tip.inner_text()


def test_demo_shows_confidence_and_alternatives_when_present(page) -> None:
    """Corrections may carry a confidence and alternatives; the page shows them, and degrades without them."""
    body = {
        "results": [
            {
                "text": "This sentence",
                "corrections": [
                    {"start": 0, "end": 3, "original": "Ths", "suggestion": "This", "confidence": 0.42,
                     "alternatives": [{"suggestion": "Thus", "confidence": 0.31},
                                      {"suggestion": "Tis", "confidence": 0.1}]},
                    {"start": 4, "end": 12, "original": "sentense", "suggestion": "sentence"},
                ],
            }
        ]
    }  # fmt: skip
    page.route("**/correct", lambda route: route.fulfill(json=body))
    submit(page, "correct-form", "correct-input", "Ths sentense")
    uncertain = page.locator("#correct-output .fix.uncertain")
    uncertain.wait_for()
    uncertain.hover()
    tip = uncertain.locator(".tip").inner_text()
    assert "confidence 42%" in tip and "Thus (31%)" in tip and "Tis (10%)" in tip
    plain = page.locator("#correct-output .fix").nth(1)
    plain.hover()
    assert plain.locator(".tip").inner_text() == "was “sentense”"


def test_demo_streams_a_poem(page) -> None:
    page.goto("/")
    page.select_option("#poem-form-select", "qiyan_jueju")
    page.fill("#poem-acrostic", "春夏秋冬")
    with page.expect_response("**/poem") as answer:
        page.click("#poem-form button")
    assert answer.value.headers["content-type"].startswith("text/event-stream")
    page.get_by_text("greedy (temperature 0)").wait_for()
    lines = page.inner_text("#poem-output").split("\n")
    assert [line[0] for line in lines] == list("春夏秋冬")
    assert all(len(line) == 7 for line in lines)


def test_demo_shows_each_streamed_character(page) -> None:
    """The server writes a short poem faster than a browser reads it, so the characters often arrive in one
    chunk; here they come as events split across chunks, the last one unfinished, and no `poem` event."""
    events = "".join(f"event: char\ndata: {json.dumps({'char': ch})}\n\n" for ch in "春风吹雨，")
    cut = events + "event: char\ndata: {"
    page.route("**/poem", lambda route: route.fulfill(body=cut, content_type="text/event-stream"))
    page.goto("/")
    page.click("#poem-form button")
    page.wait_for_function("document.getElementById('poem-output').textContent === '春风吹雨，'")
    page.get_by_text("the stream ended before the poem did").wait_for()


def test_demo_poem_error_is_shown(page) -> None:
    submit(page, "poem-form", "poem-acrostic", "ABC")
    error = page.locator("#poem-output .error")
    error.wait_for()
    assert error.inner_text().startswith("422: ") and "vocabulary" in error.inner_text()


def test_demo_classifies_with_a_bar_per_type(page) -> None:
    submit(page, "classify-form", "classify-input", "Antonio_Veciana\nKneuterdijk Palace")
    names = page.locator("#classify-output .name")
    names.nth(1).wait_for()
    assert names.count() == 2
    for i in range(2):
        assert names.nth(i).locator(".bar").count() == 5
    assert names.first.locator("strong").inner_text() == "Antonio_Veciana → Person"
    width = names.first.locator(".bar.top .fill").evaluate("e => e.getBoundingClientRect().width")
    track = names.first.locator(".bar.top .track").evaluate("e => e.getBoundingClientRect().width")
    assert width > 0.5 * track  # the winning type's bar fills most of its track


def test_demo_sends_the_api_key_typed(page) -> None:
    """Where the server asks for API keys, the page sends the one typed as a bearer token, and opens the key
    field when a request is refused for the lack of one."""
    seen: list[str | None] = []

    def refuse(route) -> None:
        seen.append(route.request.headers.get("authorization"))
        route.fulfill(status=401, json={"detail": "a valid API key is required"})

    page.route("**/classify", refuse)
    submit(page, "classify-form", "classify-input", "Antonio_Veciana")
    page.locator("#classify-output .error").wait_for()
    assert page.locator("#api-key").is_visible() and seen == [None]
    page.fill("#api-key", "s3cret")
    with page.expect_response("**/classify"):
        page.click("#classify-form button")
    assert seen == [None, "Bearer s3cret"]


def test_screenshot_of_the_demo(page, tmp_path: Path) -> None:
    """The page renders (a screenshot is taken; CHARSERVE_SCREENSHOT keeps it somewhere to look at)."""
    page.goto("/")
    page.click("#correct-form button")
    page.locator("#correct-output .fix").first.wait_for()
    page.click("#classify-form button")
    page.locator("#classify-output .name").first.wait_for()
    page.click("#poem-form button")
    page.get_by_text("greedy (temperature 0)").wait_for()
    out = Path(os.environ.get("CHARSERVE_SCREENSHOT", tmp_path / "demo.png"))
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000

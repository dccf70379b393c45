"""A real browser (Debian's chromium, driven by Playwright) for the admin flow.

Playwright cannot download its own browsers here, so the system chromium is used.
Without it the browser tests skip, except when OAUTH2_INTEGRATOR_REQUIRE_BROWSER is
set (``make test`` and CI set it): there a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import authserver  # noqa: F401  (the shared DOT server)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(django_db_setup: None) -> Iterator[object]:
    """One chromium per test module.

    Playwright's sync API keeps an asyncio loop running in this thread while it is
    open, and Django refuses ORM calls under a running loop. The tests' own ORM
    calls happen between browser steps, never concurrently with it, so they are
    allowed for exactly as long as the browser is open.
    """
    executable = chromium_path()
    if executable is None:
        if os.environ.get("OAUTH2_INTEGRATOR_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium).")
        pytest.skip("chromium is not installed (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, request):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()

"""Headless Chromium for tests that look at pages as a person would: Debian's ``chromium`` package driven by
Playwright for Python (``playwright install`` is never run: Playwright only drives the system browser).

Use the fixtures by importing them into a test module or a conftest: ``from tests.browser import browser, page``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI, require_tool

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A Chromium browser for the test module (module scope: Playwright's sync API keeps an event loop of its
    own running, which should not outlive the tests that use it)."""
    executable = require_tool(CHROMIUM, "--version", "Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed (CI installs it: pyproject.toml test extra)")
        pytest.skip("playwright is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh page in a context of its own (no cookies from other tests)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()

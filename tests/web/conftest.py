"""A real headless browser for the web page's tests: Debian's chromium (/usr/bin/chromium, which
`./dev test` installs when it is missing) driven by Playwright's bundled driver, never a browser
Playwright downloads. Without chromium the browser tests skip and say why, except under CI=true,
where they fail: CI must run them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Chromium with a fresh, empty profile (its --user-data-dir); a new page is a new tab, with its own
    sessionStorage, so each page signs in on its own."""
    if not CHROMIUM.exists():
        reason = f"no browser: {CHROMIUM} is missing (`./dev test` installs Debian's chromium package)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield context
        finally:
            context.close()

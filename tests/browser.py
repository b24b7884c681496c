"""A real browser for the front-end tests: Debian's Chromium driven by Playwright.

`browser` (session-scoped) is a headless Chromium; `page_for(browser)` gives a fresh
context and page with console errors collected. Under CI=true a missing Chromium or
Playwright fails the tests; elsewhere they are skipped with the reason. Screenshots go to
`screenshot_dir()` (`$KERNELGATE_SCREENSHOTS`, default `<tmp>/kernelgate-screenshots`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.ci import IN_CI, require  # noqa: F401 - IN_CI, for the browser tests


def _need(problem: str) -> None:
    require(f"the browser tests need {problem}")


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("KERNELGATE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "kernelgate-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's binary, no downloaded browser), one per test module:
    sync Playwright holds an event loop in the main thread while it runs, which breaks
    the async tests of the modules that come after."""
    executable = shutil.which("chromium")
    if executable is None:
        _need("no chromium on PATH (Debian package 'chromium')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("the playwright package is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


class Page:
    """A page in its own browser context, and the console errors it logged."""

    def __init__(self, browser, viewport=(1400, 900)) -> None:
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def screenshot(self, name: str) -> Path:
        path = screenshot_dir() / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page_for(browser):
    """Factory: page_for() -> Page; every page is closed at the end of the test."""
    pages: list[Page] = []

    def make(**kwargs) -> Page:
        page = Page(browser, **kwargs)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()

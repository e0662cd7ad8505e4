"""A real browser for the page tests: Debian's chromium, driven by Playwright (nothing downloaded).

Each test gets a fresh page; errors the page's scripts throw (and failed requests the test did
not expect) fail the test, so a broken script cannot hide behind a screenshot.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
#: The flags of /work/shared/recipes: headless, and nothing reaching out to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: run scripts/bootstrap.sh")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class PageErrors(list[str]):
    """What went wrong in the page: uncaught errors and console errors."""


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    errors = PageErrors()
    opened.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    # An HTTP error the page handles (a 400 of the validator) is logged by the browser as
    # "Failed to load resource": that is the page working, not failing.
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    opened.errors = errors  # type: ignore[attr-defined]
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Save what the page shows (kept under the test's tmp_path) and return the file."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path

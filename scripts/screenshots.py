"""Take the README's screenshots (docs/img/*.png) from a real run of the demo in Debian's chromium.

    .venv/bin/python scripts/screenshots.py

Starts ``examples/demo.py`` (in memory, on free ports), drives the explorer and the chat page the
way a person would, and saves one picture of each into ``docs/img/``; then stops the demo.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from playwright.async_api import Page, async_playwright

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "img"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BAD_TD = """{
  "@context": "https://www.w3.org/2022/wot/td/v1.1",
  "title": "Lamp",
  "securityDefinitions": {"nosec": {"scheme": "nosec"}},
  "security": "nosec",
  "properties": {
    "on": {"type": "boolean", "forms": [{"href": 42}]}
  },
  "actions": {"toggle": {}}
}"""


async def shoot(page: Page, name: str, *, full_page: bool = False) -> None:
    path = OUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KiB")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "examples" / "demo.py"), "--memory", "--port", "0", "--runtime-port", "0",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert demo.stdout is not None
    out = ""
    try:
        while "Serving until Ctrl-C." not in out:
            line = (await asyncio.wait_for(demo.stdout.readline(), 300)).decode()
            if not line:
                raise RuntimeError(f"the demo ended early:\n{out}")
            out += line
        explorer = re.search(r"explorer +(\S+)", out)
        chat = re.search(r"chat +(\S+)", out)
        assert explorer and chat, out
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page(viewport={"width": 1200, "height": 760})
            await page.goto(explorer[1] + "#/agents")
            await page.locator("#live[data-state=live]").wait_for()
            await page.locator("#list-items .card").nth(3).wait_for()
            await shoot(page, "explorer-agents")
            await page.get_by_role("link", name="Billing").click()
            await page.locator(".capability").first.wait_for()
            await page.set_viewport_size({"width": 1200, "height": 1000})
            await shoot(page, "explorer-agent")
            await page.set_viewport_size({"width": 1200, "height": 760})
            await page.goto(explorer[1] + "#/search")
            await page.get_by_role("tab", name="SPARQL").click()
            await page.get_by_label("Example queries").select_option(label="Capabilities of every agent")
            await page.locator("#sparql-form").get_by_role("button", name="Run").click()
            await page.locator("table.sparql tbody tr").first.wait_for()
            await shoot(page, "explorer-sparql")
            await page.goto(explorer[1] + "#/validate")
            await page.get_by_label("Thing Description (JSON)").fill(BAD_TD)
            await page.get_by_role("button", name="Validate", exact=True).click()
            await page.locator("ol.problems li").first.wait_for()
            await page.evaluate("document.getElementById('td-text').rows = 11")
            await shoot(page, "explorer-validate", full_page=True)
            await page.goto(chat[1])
            await page.locator("#candidates a").first.wait_for()
            for question in ("Will it rain in Berlin tomorrow?", "And why is my bill so high?"):
                await page.get_by_label("Your message").fill(question)
                await page.keyboard.press("Enter")
                await (
                    page.locator(".turn.assistant:not([aria-busy]) .answered")
                    .nth(0 if "rain" in question else 1)
                    .wait_for()
                )
            await shoot(page, "chat")
            await browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        await demo.wait()


if __name__ == "__main__":
    asyncio.run(main())

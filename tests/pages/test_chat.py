"""The runtime's chat page in a real browser: real directory, runtime (MiniLM router) and SDK agents."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.agents import Deployment, chat_agent
from tests.pages.conftest import screenshot

pytestmark = pytest.mark.slow

#: Collects every text the newest answer shows, in order: a streamed answer shows its parts first.
WATCH_ANSWERS = """() => {
  window.shown = [];
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.target.matches && record.target.matches('.turn.assistant .text')) {
        for (const node of record.addedNodes) window.shown.push(node.textContent);
      }
    }
  }).observe(document.getElementById('transcript'), {subtree: true, childList: true});
}"""


async def test_a_chat_turn_streams_and_shows_the_agent_and_why(
    deployment: Deployment,
    page: Page,
    tmp_path: Path,
) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), ws=True)
    url = await deployment.start()

    await page.goto(f"{url}/chat?tenant=acme&channel=web")
    await expect(page.locator("#candidates")).to_contain_text("2 agents in subset stable")
    await page.evaluate(WATCH_ANSWERS)
    await page.get_by_label("Your message").fill("will it rain tomorrow?")
    await page.keyboard.press("Enter")

    answer = page.locator(".turn.assistant").last
    await expect(answer.locator(".text")).to_have_text("WeatherAgent: will it rain tomorrow?")
    await expect(answer.locator(".answered")).to_contain_text("Answered by WeatherAgent · vector · score")
    await expect(answer.locator(".runner-ups")).to_contain_text("BillingAgent")
    shown = await page.evaluate("window.shown")
    # Each part was shown as it came: the first word alone, then more, then the whole reply.
    assert shown[shown.index("WeatherAgent:") :] == [
        "WeatherAgent:",
        "WeatherAgent: will",
        "WeatherAgent: will it",
        "WeatherAgent: will it rain",
        "WeatherAgent: will it rain tomorrow?",
        "WeatherAgent: will it rain tomorrow?",
    ], shown
    link = answer.locator("a.agent").first
    explorer = f"{deployment.directory}/explorer#/thing/{quote('urn:test:agent:weather', safe='')}"
    await expect(link).to_have_attribute("href", explorer)
    await screenshot(page, tmp_path, "chat")

    # The next turn goes to the agent that fits it, over its own binding (WebSocket).
    await page.get_by_label("Your message").fill("I want a refund")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".turn.assistant").last.locator(".answered")).to_contain_text(
        "Answered by BillingAgent"
    )

    # Reopened from the runtime's store: both turns with the agent of each.
    conversation = (await page.locator("#conversation-id").inner_text()).removeprefix("Conversation ")
    await page.get_by_role("button", name="New conversation").click()
    await expect(page.locator(".turn")).to_have_count(0)
    await expect(page.locator("button.conversation")).to_contain_text(["will it rain tomorrow?2 turns"])
    await page.locator("button.conversation", has_text="will it rain tomorrow?").click()
    await expect(page.locator("#conversation-id")).to_have_text(f"Conversation {conversation}")
    await expect(page.locator(".turn.assistant .answered")).to_have_text(
        [
            re.compile(r"Answered by WeatherAgent · vector · score \d\.\d\d · subset stable"),
            re.compile(r"Answered by BillingAgent · \S+ · score \d\.\d\d"),
        ]
    )
    await screenshot(page, tmp_path, "reopened")

    # On a phone-sized window: nothing scrolls sideways, every control has a label.
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)"
    )
    assert unlabelled == []
    await screenshot(page, tmp_path, "phone")

    # The link leads to the agent's page in the directory's explorer.
    await page.goto(explorer)
    await expect(page.locator("#thing-title")).to_contain_text("WeatherAgent")
    assert page.errors == []  # type: ignore[attr-defined]

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/chat/config.json") as response:
            config = await response.json()
        async with http.get(f"{url}/chat/conversations?tenantId=acme") as response:
            listed = (await response.json())["conversations"]
        async with http.get(f"{url}/chat/conversations?tenantId=acme&limit=0") as response:
            assert response.status == 400 and (await response.json())["errorCode"] == "INVALID_REQUEST"
    assert [(c["conversationId"], c["title"], c["turns"]) for c in listed] == [
        (conversation, "will it rain tomorrow?", 2)
    ]
    assert config["tenants"] == {"acme": ["web"]}
    assert config["explorer"] == f"{deployment.directory}/explorer"

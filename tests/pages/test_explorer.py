"""The directory's explorer in a real browser, against a real directory and real SDK agents."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import REPO
from tests.pages.conftest import screenshot
from tests.servers import running_directory
from wot_agents import Agent, Capability, ChatRequest, ChatStream, DirectoryClient, chat_handler
from wot_agents._json_positions import json_positions, position_of

pytestmark = pytest.mark.slow


def agent(title: str, description: str, examples: list[str]) -> Agent:
    made = Agent(
        title,
        id=f"urn:test:pages:{title.lower()}",
        description=description,
        capabilities=[
            Capability(id=f"urn:test:pages:{title.lower()}:main", name=f"{title} help", examples=examples)
        ],
        tenants=["acme"],
        channels=["web"],
    )

    @chat_handler(made)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return f"{title} answers"

    return made


async def wait_registered(url: str, count: int) -> None:
    async with DirectoryClient(url) as client, asyncio.timeout(15):
        while await client.count() < count:  # noqa: ASYNC110 (polling over HTTP)
            await asyncio.sleep(0.05)


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    """A directory with two SDK agents registered by themselves: Weather on HTTP, Billing on WS."""
    async with running_directory() as url, AsyncExitStack() as stack:
        weather = agent("Weather", "Tells the forecast.", ["will it rain tomorrow?", "forecast in Rome"])
        billing = agent("Billing", "Explains bills and payments.", ["show my bill", "why is my invoice high"])
        await stack.enter_async_context(weather.serve(http=True, directory=url, registration_ttl=60))
        await stack.enter_async_context(billing.serve(ws=True, directory=url, registration_ttl=60))
        await wait_registered(url, 2)
        yield url


def no_page_errors(page: Page) -> None:
    assert page.errors == []  # type: ignore[attr-defined]


async def test_search_finds_an_agent(directory: str, page: Page, tmp_path: Path) -> None:
    await page.goto(f"{directory}/explorer#/search")
    await page.get_by_label("Words (title, description, capabilities)").fill("rain tomorrow")
    await page.get_by_label("Tenant").fill("acme")
    await page.get_by_role("button", name="Search", exact=True).click()
    results = page.locator("#search-results")
    await expect(results.locator("#search-count")).to_have_text("1 description found")
    await expect(results.locator(".card h3")).to_have_text(["Weather"])
    await expect(page.locator("#filter-url")).to_contain_text("q=rain+tomorrow&tenant=acme")
    await screenshot(page, tmp_path, "search")

    # The same agent through JSONPath and SPARQL.
    await page.get_by_role("tab", name="JSONPath").click()
    await page.get_by_label("RFC 9535 JSONPath").fill("$[?@.title=='Billing'].id")
    await page.get_by_role("button", name="Run").click()
    await expect(results.locator("pre")).to_contain_text("urn:test:pages:billing")
    await page.get_by_role("tab", name="SPARQL").click()
    await page.get_by_label("Example queries").select_option(label="Agents and their titles")
    await page.locator("#sparql-form").get_by_role("button", name="Run").click()
    await expect(results.locator("table.sparql tbody tr")).to_have_count(2)
    await expect(results.locator("table.sparql")).to_contain_text("Weather")
    await screenshot(page, tmp_path, "sparql")
    no_page_errors(page)


async def test_a_description_page_shows_capabilities_forms_security_and_registration(
    directory: str, page: Page, tmp_path: Path
) -> None:
    await page.goto(directory + "/explorer")
    await page.get_by_role("link", name="Billing").click()
    await expect(page.locator("#thing-title")).to_contain_text("Billing")
    thing = page.locator("#thing")
    await expect(thing.locator(".capability")).to_contain_text("why is my invoice high")
    chat = thing.locator("#actions-chat")
    await expect(chat.locator("table.forms tbody tr").first).to_contain_text("ws")
    await expect(chat.locator("table.forms")).to_contain_text("invokeaction")
    await expect(thing.locator("#security + p")).to_contain_text("Applied to every form")
    await expect(thing).to_contain_text("Expires")
    await expect(thing).to_contain_text("TTL60 s")
    await thing.get_by_text("Show the description as stored").click()
    raw = json.loads(await thing.locator("details.raw pre").inner_text())
    assert raw["id"] == "urn:test:pages:billing" and raw["registration"]["ttl"] == 60
    await screenshot(page, tmp_path, "thing")
    no_page_errors(page)


async def test_a_registration_over_the_api_appears_live(directory: str, page: Page, tmp_path: Path) -> None:
    await page.goto(directory + "/explorer#/agents")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#list-items .card")).to_have_count(2)
    await page.evaluate("window.loadedOnce = true")  # gone if the page were reloaded
    translator = agent("Translator", "Translates between languages.", ["say thank you in German"])
    async with translator.serve(http=True) as running, DirectoryClient(directory) as client:
        await client.register(running.description.to_dict(), ttl=60)
        card = page.locator('#list-items .card[data-id="urn:test:pages:translator"]')
        await expect(card).to_contain_text("Translates between languages.")
        await expect(page.locator("#list-count")).to_have_text("3 agents")
        await expect(card).to_have_class(re.compile(r"\bfresh\b"))  # news is highlighted
        await expect(page.locator("#announcer")).to_have_text("urn:test:pages:translator registered")
        await screenshot(page, tmp_path, "live")
        # A renewal (an empty merge patch: only the registration changes) refreshes quietly.
        selector = '#list-items .card[data-id="urn:test:pages:translator"]'
        await page.evaluate(f"document.querySelector('{selector}').setAttribute('data-seen', '')")
        await client.patch("urn:test:pages:translator", {})
        await expect(page.locator(f"{selector}:not([data-seen])")).to_have_count(1)  # drawn again
        await expect(card).not_to_have_class(re.compile(r"\bfresh\b"))
        await expect(page.locator("#announcer")).to_have_text("urn:test:pages:translator registered")
        await client.delete("urn:test:pages:translator")
        await expect(card).to_have_count(0)
    await expect(page.locator("#announcer")).to_have_text("urn:test:pages:translator removed")
    assert await page.evaluate("window.loadedOnce") is True
    no_page_errors(page)


BAD_TD = """{
  "@context": "https://www.w3.org/2022/wot/td/v1.1",
  "title": "Lamp",
  "securityDefinitions": {"nosec": {"scheme": "nosec"}},
  "security": "nosec",
  "properties": {
    "on": {
      "type": "boolean",
      "forms": [{"href": 42}]
    }
  }
}"""


async def test_a_bad_td_gets_its_problems_listed_at_their_lines(
    directory: str, page: Page, tmp_path: Path
) -> None:
    await page.goto(directory + "/explorer#/validate")
    await page.get_by_label("Thing Description (JSON)").fill(BAD_TD)
    await page.get_by_role("button", name="Validate", exact=True).click()
    problems = page.locator("ol.problems li")
    await expect(problems).to_have_count(1)
    await expect(problems.first).to_contain_text("line 9, column 18")
    await expect(problems.first).to_contain_text("/properties/on/forms/0/href")
    await expect(page.locator("#td-gutter .bad")).to_have_text(["9"])
    await problems.first.get_by_role("button").click()  # selects the line in the editor
    selected = await page.evaluate(
        "(() => { const t = document.getElementById('td-text');"
        " return t.value.slice(t.selectionStart, t.selectionEnd); })()"
    )
    assert selected == '"href": 42}]'
    await screenshot(page, tmp_path, "validate")

    # A file upload, and text that is not JSON at all: the line of the syntax error.
    upload = tmp_path / "broken.json"
    upload.write_text('{\n  "title": "x",\n  oops\n}')
    await page.get_by_label("Upload a file").set_input_files(str(upload))
    await expect(problems.first).to_contain_text("line 3, column 3")
    await page.get_by_role("button", name="Load an example").click()
    await page.get_by_role("button", name="Validate", exact=True).click()
    await expect(page.locator("#validate-result")).to_have_text("Valid: this description can be registered.")
    no_page_errors(page)


async def test_phone_sized_keyboard_and_labels(directory: str, browser: Any, tmp_path: Path) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await page.goto(directory + "/explorer")
        await expect(page.locator("#list-items .card")).to_have_count(2)
        for view in ("#/agents", "#/search", "#/validate"):
            await page.goto(f"{directory}/explorer{view}")
            fits = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert fits, f"{view} scrolls sideways on a phone"
        unlabelled = await page.evaluate(
            "[...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)"
        )
        assert unlabelled == []
        await screenshot(page, tmp_path, "phone")
        # Keyboard only: the skip link first, then the views' links.
        await page.goto(directory + "/explorer#/validate")
        await page.keyboard.press("Tab")
        await expect(page.locator("a.skip")).to_be_focused()
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Agents")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#list-title")).to_have_text("Agents")
    finally:
        await context.close()


async def test_root_is_the_td_for_wot_clients_and_the_explorer_for_browsers(directory: str) -> None:
    async with aiohttp.ClientSession() as http:
        for accept in (None, "*/*", "application/td+json", "application/json, text/html;q=0.5"):
            headers = {"Accept": accept} if accept else {}
            async with http.get(f"{directory}/", headers=headers) as response:
                assert response.content_type == "application/td+json", accept
                assert (await response.json())["@type"] == "ThingDirectory"
                assert response.headers["Vary"] == "Accept"
        browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        async with http.get(f"{directory}/", headers={"Accept": browser_accept}) as response:
            assert response.content_type == "text/html"
            assert "Directory explorer" in await response.text()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            etag = response.headers["ETag"]
        async with http.get(f"{directory}/explorer", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        async with http.get(f"{directory}/explorer/common.js") as response:
            assert response.content_type == "text/javascript"
        for missing in ("/explorer/nothing.js", "/explorer/..%2F_app.py", "/explorer/__init__.py"):
            async with http.get(directory + missing) as response:
                assert response.status == 404, missing
                assert response.content_type == "application/problem+json"


async def test_validate_endpoint_answers_problems_with_positions(directory: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{directory}/explorer/validate", data=BAD_TD) as response:
            assert response.status == 400 and response.content_type == "application/problem+json"
            problem = await response.json()
        assert problem["validationErrors"] == [
            {
                "field": "properties.on.forms.0.href",
                "description": problem["validationErrors"][0]["description"],
                "pointer": "/properties/on/forms/0/href",
                "line": 9,
                "column": 18,
            }
        ]
        async with http.post(f"{directory}/explorer/validate", data="[1, 2,") as response:
            assert response.status == 400
            (error,) = (await response.json())["validationErrors"]
        assert (error["line"], error["column"]) == (1, 7) and "not valid JSON" in error["description"]
        valid = (REPO / "examples" / "weather-agent.json").read_text()
        async with http.post(f"{directory}/explorer/validate", data=valid) as response:
            assert response.status == 200 and await response.json() == {"valid": True}


def test_json_positions_point_at_keys_items_and_the_root() -> None:
    text = '\ufeff {\n "a": [1, {"b~/c": "x\\"y"}],\n "d": {}\n}'
    positions = json_positions(text)
    assert positions[""] == (1, 3)
    assert positions["/a"] == (2, 2)
    assert positions["/a/0"] == (2, 8)
    assert positions["/a/1"] == (2, 11)
    assert positions["/a/1/b~0~1c"] == (2, 12)
    assert positions["/d"] == (3, 2)
    assert position_of(positions, "/d/missing/deeper") == (3, 2)

"""The chat page: the runtime's own browser page (``/chat``), talking to its LMOS chat API.

The page (``runtime/chat/``) sends each turn to ``POST /apis/v1/{tenant}/chat/{id}/message`` and
reads the streamed answer (``Accept: text/event-stream``), shows which agent answered and why
(the ``routing`` beside the LMOS reply), lists the agents of the chosen tenant, channel and
subset (``GET /apis/v1/agents``) and reopens stored conversations
(``GET /apis/v1/{tenant}/chat/{id}``), listed by ``/chat/conversations?tenantId=``, the most
recently active first. ``/chat/config.json`` tells it what to offer: the
tenants, channels and subsets the runtime's agents and channels name, and the explorer of the
directory the runtime follows (for links to each agent's description).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aiohttp import web

from wot_agents._pages import PageFiles, shared_pages

from ._runtime import Runtime

__all__ = ["add_chat_page"]

#: Most conversations one listing returns.
MAX_LISTED = 200


@cache
def _pages() -> PageFiles:
    return shared_pages("runtime", "chat")


def page_config(runtime: Runtime) -> dict[str, Any]:
    """What the page offers: tenants with their channels, subsets, and where the explorer is."""
    tenants: dict[str, set[str]] = {}
    subsets = {runtime.settings.default_subset}
    for agent in runtime.catalog.agents.values():
        channels = set(agent.supported_channels or ())
        for tenant in agent.supported_tenants or ():
            tenants.setdefault(tenant, set()).update(channels)
        if agent.subset:
            subsets.add(agent.subset)
    for tenant in list(tenants):
        for channel in runtime.channels.channels(tenant):
            labels = channel.get("metadata", {}).get("labels", {})
            if labels.get("channel"):
                tenants[tenant].add(labels["channel"])
            if labels.get("subset"):
                subsets.add(labels["subset"])
    directory = runtime.settings.directory
    return {
        "tenants": {tenant: sorted(channels) for tenant, channels in sorted(tenants.items())},
        "subsets": sorted(subsets),
        "defaultSubset": runtime.settings.default_subset,
        "router": runtime.settings.router,
        "explorer": directory.rstrip("/") + "/explorer" if directory else None,
    }


def add_chat_page(app: web.Application, runtime_of: Callable[[web.Application], Runtime]) -> None:
    """Serve the page at ``/chat`` (its files at ``/chat/{name}``, its settings at ``/chat/config.json``)."""

    async def page(request: web.Request) -> web.StreamResponse:
        return _pages().response(request, "index.html")

    async def page_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _pages():
            return web.json_response({"error": f"no page file {name!r}"}, status=404)
        return _pages().response(request, name)

    async def config(request: web.Request) -> web.StreamResponse:
        return web.json_response(page_config(runtime_of(request.app)), headers={"Cache-Control": "no-store"})

    async def conversations(request: web.Request) -> web.StreamResponse:
        tenant = request.query.get("tenantId", "")
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not tenant or not 1 <= limit <= MAX_LISTED:
            message = f"give tenantId, and a limit from 1 to {MAX_LISTED}"
            return web.json_response({"errorCode": "INVALID_REQUEST", "message": message}, status=400)
        found = await runtime_of(request.app).store.conversations(tenant, limit=limit)
        return web.json_response({"tenantId": tenant, "conversations": [c.to_dict() for c in found]})

    app.router.add_get("/chat", page)
    app.router.add_get("/chat/config.json", config)
    app.router.add_get("/chat/conversations", conversations)
    app.router.add_get("/chat/{name}", page_file)

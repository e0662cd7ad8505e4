"""Find the directory announced on the LAN, then watch the agents come and go (Ctrl-C stops)."""

import asyncio
import contextlib

from discovery import Browser, find_directory


async def main() -> None:
    url = await find_directory(within=5)  # DirectoryNotFound if none answers in time
    print("directory", url, flush=True)
    async with Browser() as browser:  # Browser(directories_only=True) for directories
        async for event in browser:  # "added" / "updated" / "removed"
            agent = event.agent  # browser.agents: the current view, by name
            print(event.kind, agent.name, agent.url, agent.error or "valid", flush=True)


with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the browser closes, no traceback
    asyncio.run(main())

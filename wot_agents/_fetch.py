"""Fetching a TD by URL: the one place a stranger's description comes in over HTTP.

Used by ``consume(url)`` and :func:`request_description` (node-wot's ``requestThingDescription``),
by the mDNS browser for announced agents, and by anything else that reads a TD from a URL. The
host may be broken or hostile, so every fetch is bounded: only the URLs given (no redirects, no
proxies from the environment), one deadline for connect + headers + body, a byte limit counted on
the decoded body (a gzip bomb stops at the limit), and the TD is validated before anyone sees it.
Each failure is one of the project's errors, never a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ssl import SSLContext
from urllib.parse import urlsplit

import aiohttp

from ._errors import (
    ConnectError,
    DescriptionError,
    InteractionError,
    RemoteError,
    RequestTimeout,
    ValidationError,
)
from ._model import AgentDescription
from ._validation import validate_json

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_MAX_TD_BYTES",
    "fetch_description",
    "open_fetch_session",
    "request_description",
]

DEFAULT_FETCH_TIMEOUT = 3.0
#: Generous for a TD (typically 2-50 KB), small enough that 100 agents cannot exhaust memory.
DEFAULT_MAX_TD_BYTES = 1024 * 1024
_ACCEPT = "application/td+json, application/json;q=0.9"


def open_fetch_session(max_connections: int = 16, *, ssl: SSLContext | None = None) -> aiohttp.ClientSession:
    """A session for TD fetches: bounded connections, no proxies from the environment, no cookies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, force_close=True, ssl=ssl or True),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def request_description(
    url: str,
    *,
    time_limit: float = DEFAULT_FETCH_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_TD_BYTES,
    ssl: SSLContext | None = None,
) -> AgentDescription:
    """The valid TD served at ``url`` (http or https), fetched with the limits above.

    ``ssl`` verifies an https server against a private CA (``TlsConfig.client_context()``). A
    redirect is an error naming where it points: give the TD's own URL.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DescriptionError(f"cannot fetch a TD from {url!r}: only http:// and https:// URLs are fetched")
    async with open_fetch_session(1, ssl=ssl) as session:
        return (await fetch_description(session, [url], time_limit=time_limit, max_bytes=max_bytes))[1]


async def fetch_description(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    *,
    time_limit: float = DEFAULT_FETCH_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_TD_BYTES,
) -> tuple[str, AgentDescription]:
    """The first URL that answers with a valid TD, and that TD; all within ``time_limit`` seconds.

    Addresses are tried in order only when one cannot be connected to; an answer that is wrong
    (an error status, too large, invalid) ends the fetch, as it came from the announced service.
    """
    if not urls:
        raise ConnectError("the announcement has no address to fetch the TD from")
    last: InteractionError | None = None
    try:
        async with asyncio.timeout(time_limit):
            for url in urls:
                try:
                    return url, await _fetch_one(session, url, max_bytes)
                except ConnectError as exc:
                    last = exc
    except TimeoutError:
        raise RequestTimeout(f"no complete TD within {time_limit:g} s", href=urls[0]) from None
    assert last is not None
    raise last


async def _fetch_one(session: aiohttp.ClientSession, url: str, max_bytes: int) -> AgentDescription:
    try:
        async with session.get(url, allow_redirects=False, headers={"Accept": _ACCEPT}) as response:
            if 300 <= response.status < 400 and "Location" in response.headers:
                raise RemoteError(
                    f"GET {url} answered {response.status}, a redirect to {response.headers['Location']!r}; "
                    "redirects are not followed: give the TD's own URL",
                    status=response.status,
                    href=url,
                )
            if response.status != 200:
                raise RemoteError(f"GET {url} answered {response.status}", status=response.status, href=url)
            if (response.content_length or 0) > max_bytes:
                raise DescriptionError(f"{url}: TD of {response.content_length} bytes exceeds {max_bytes}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise DescriptionError(f"{url}: TD larger than the limit of {max_bytes} bytes")
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise ConnectError(f"cannot fetch {url}: {exc}", href=url) from None
    except aiohttp.ClientError as exc:  # a malformed response: bad status line, headers, encoding
        raise RemoteError(f"broken HTTP answer from {url}: {exc}", href=url) from None
    problems = validate_json(bytes(body), max_bytes=max_bytes)
    if problems:
        raise ValidationError(problems, source=url)
    return AgentDescription.from_json(bytes(body), max_bytes=max_bytes)

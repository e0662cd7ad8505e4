"""The HTTP binding, client side: any TD's HTTP forms, ours or another implementation's.

Methods come from ``htv:methodName`` or the binding template's defaults; streams are
Server-Sent Events; a ``201 Created`` with a ``Location`` to an invocation is followed until
the action completes, so a long-running action looks like any other to the caller.

Credentials are presented for a form, so they go only to the form's origin (scheme, host,
port): redirects are followed here rather than by aiohttp, and only within that origin, and a
status resource on another origin is refused. A hostile agent cannot send the caller's token
on to a third party by naming it in a ``Location``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..._errors import PayloadError
from ..._model import Form
from ..._problem import ProblemDetails
from ..._sse import EVENT_STREAM, EventStreamParser, parse_events
from ..._trace import trace_headers
from .._interfaces import Interaction, Stream
from .._vocabulary import (
    CONTENT_TYPE,
    HTTP_METHODS,
    MAX_REPLY,
    SSE_SUBPROTOCOL,
    STREAM_OPS,
    decode_payload,
    encode_payload,
    http_method,
)

__all__ = ["HttpClient"]

#: Polling an action status resource starts fast and backs off to this interval (seconds).
MAX_POLL_INTERVAL = 1.0
#: Redirects followed (within the form's origin) before giving up, as browsers do.
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpClient:
    """One connection pool for every HTTP interaction of a consumer."""

    schemes = frozenset({"http", "https"})

    def __init__(
        self, *, max_connections: int = 100, tls: ssl.SSLContext | None = None, max_reply: int = MAX_REPLY
    ) -> None:
        self._max_connections = max_connections
        #: The TLS context for https (with a client certificate: mutual TLS); None: the system's.
        self.tls = tls
        #: The largest reply body or server-sent event read; larger is a ``RemoteError``.
        self.max_reply = max_reply
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self.tls or True)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    def accepts(self, form: Form, op: str) -> bool:
        if op in STREAM_OPS:
            return form.subprotocol == SSE_SUBPROTOCOL
        return form.subprotocol is None and (form.method_name is not None or op in HTTP_METHODS)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, interaction: Interaction, *, accept: str, body: bool) -> dict[str, str]:
        headers = {"Accept": accept, **trace_headers(), **interaction.auth.headers}
        for header in interaction.form.headers or ():
            name, value = header.get("htv:fieldName"), header.get("htv:fieldValue")
            if isinstance(name, str) and isinstance(value, str):
                headers.setdefault(name, value)
        if body:
            headers["Content-Type"] = interaction.form.content_type or CONTENT_TYPE
        return headers

    async def request(self, interaction: Interaction, payload: Any = None) -> Any:
        method = http_method(interaction.form, interaction.op)
        has_body = interaction.op in ("writeproperty", "invokeaction") and (
            payload is not None or interaction.op == "writeproperty"
        )
        data = encode_payload(payload) if has_body else None
        headers = self._headers(interaction, accept=CONTENT_TYPE, body=has_body)
        try:
            async with asyncio.timeout(interaction.timeout):
                response = await self._send(interaction, method, interaction.href, data, headers)
                async with response:
                    value = await _reply(response, interaction, self.max_reply)
                    if response.status == 201 and "Location" in response.headers:
                        location = response.headers["Location"]
                        status_url = _same_origin(interaction, location, response.url, 201)
                        return await self._await_invocation(interaction, status_url)
                    return value
        except TimeoutError:
            raise interaction.timed_out() from None
        except aiohttp.ClientConnectionError as exc:
            raise interaction.unreachable(exc) from exc
        except aiohttp.ClientError as exc:  # an answer that is not HTTP: a header too long, a bad chunk
            raise interaction.refused(None, f"a broken HTTP answer: {exc}") from exc

    async def _await_invocation(self, interaction: Interaction, url: str) -> Any:
        """Poll an action status resource (inside the caller's timeout) until the action is done."""
        interval = 0.02
        headers = self._headers(interaction, accept=CONTENT_TYPE, body=False)
        while True:
            async with await self._send(interaction, "GET", url, None, headers) as response:
                status = await _reply(response, interaction, self.max_reply)
            state = status.get("status") if isinstance(status, dict) else None
            if state == "completed":
                return status.get("output")
            if state in ("failed", "cancelled"):
                error = status.get("error") or {}
                raise interaction.refused(None, f"the action {state}: {error.get('detail', '')}", error)
            await asyncio.sleep(interval)
            interval = min(interval * 2, MAX_POLL_INTERVAL)

    async def stream(self, interaction: Interaction) -> Stream[Any]:
        headers = self._headers(interaction, accept=EVENT_STREAM, body=False)
        try:
            async with asyncio.timeout(interaction.timeout):
                response = await self._send(
                    interaction,
                    "GET",
                    interaction.href,
                    None,
                    headers,
                    client_timeout=aiohttp.ClientTimeout(total=None, sock_connect=interaction.timeout),
                )
        except TimeoutError:
            raise interaction.timed_out() from None
        except aiohttp.ClientConnectionError as exc:
            raise interaction.unreachable(exc) from exc
        except aiohttp.ClientError as exc:  # an answer that is not HTTP: a header too long, a bad chunk
            raise interaction.refused(None, f"a broken HTTP answer: {exc}") from exc
        if response.status >= 300:
            try:
                await _reply(response, interaction, self.max_reply)
            finally:
                response.release()

        async def close() -> None:
            response.close()

        return Stream(_sse_values(response, interaction, self.max_reply), close)

    async def _send(
        self,
        interaction: Interaction,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        *,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """One request with the form's credentials, following redirects only within the form's origin.

        The caller owns (and must release) the response returned.
        """
        extra: dict[str, Any] = {} if client_timeout is None else {"timeout": client_timeout}
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._client().request(
                method,
                url,
                data=data,
                headers=headers,
                params=dict(interaction.auth.query),
                allow_redirects=False,
                **extra,
            )
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                return response
            response.release()
            url = _same_origin(interaction, location, response.url, response.status)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                # RFC 9110 15.4: 303 (and, as every client does, 301/302 after POST) becomes a GET.
                method, data = "GET", None
                headers = {name: value for name, value in headers.items() if name != "Content-Type"}
        raise interaction.refused(None, f"more than {MAX_REDIRECTS} redirects")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _same_origin(interaction: Interaction, location: str, base: object, status: int) -> str:
    """``location`` resolved against ``base``; a ``RemoteError`` when it leaves the form's origin."""
    url = urljoin(str(base), location)
    if _origin(url) != _origin(interaction.href):
        raise interaction.refused(
            status,
            f"refused to follow {url}: it is not on the form's origin, and the form's credentials"
            " are only sent there",
            {"location": url},
        )
    return url


async def _reply(response: aiohttp.ClientResponse, interaction: Interaction, limit: int) -> Any:
    """The decoded body of a reply; a non-2xx status becomes a ``RemoteError`` with its problem.

    At most ``limit`` bytes are read: a larger answer is a ``RemoteError`` (the connection is
    dropped, not drained), so a hostile agent cannot fill the caller's memory.
    """
    too_large = f"the reply is larger than the limit of {limit} bytes"
    if (response.content_length or 0) > limit:
        raise interaction.refused(response.status, too_large)
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            response.close()
            raise interaction.refused(response.status, too_large)
    if response.status >= 300:
        problem = ProblemDetails.from_body(bytes(body), status=response.status, reason=response.reason)
        raise interaction.refused(response.status, problem.message, problem.to_dict())
    return decode_payload(body)


async def _sse_values(
    response: aiohttp.ClientResponse, interaction: Interaction, limit: int
) -> AsyncIterator[Any]:
    """The ``data`` of each Server-Sent Event, decoded as JSON when it is JSON (events up to ``limit``)."""
    try:
        async for event in parse_events(
            response.content.iter_any(), parser=EventStreamParser(max_event=limit)
        ):
            yield decode_payload(event.data.encode()) if event.data.strip() else event.data
    except aiohttp.ClientError as exc:
        raise interaction.unreachable(f"the stream broke: {exc}") from exc
    except PayloadError:
        raise
    except ValueError as exc:  # an event over the parser's bound
        raise interaction.refused(response.status, f"the stream broke: {exc}") from exc

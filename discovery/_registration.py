"""Keeping a TD registered in a Thing Description Directory (WoT Discovery 7.3.2.1.2, 7.3.1.2).

A registration carries ``registration.ttl`` so a directory forgets an agent that died without
saying goodbye. :class:`Registration` is the loop an agent runs next to its server: register,
renew (an empty merge patch) at half the ttl, retry with capped exponential backoff and jitter
while the directory is down, register again when the directory answers 404 (it restarted
without its data, or purged the TD), push a changed TD at once, delete the TD on clean close
(also when the answer to its first registration had not arrived: the directory may hold it).
All of it through :class:`wot_agents.DirectoryClient`. Given no directory, it finds one by
DNS-SD, and looks again when the one it found stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence

from wot_agents import DirectoryClient, DirectoryError, DirectoryNotFound

from ._directory import find_directory
from ._document import Description, as_document
from ._lifecycle import Lifecycle

__all__ = ["Registration"]

log = logging.getLogger(__name__)

#: Answers that repeating the same request will not fix; retried slowly in case an operator does.
_PERMANENT = frozenset({400, 401, 403, 409, 413, 415, 422})
_DELETE_TIME_LIMIT = 2.0
_FIND_TIME_LIMIT = 3.0
#: Consecutive failures to reach a directory found by DNS-SD before looking for another one.
_UNREACHABLE_LIMIT = 3


class Registration(Lifecycle):
    """Registers ``description`` in ``directory`` and keeps it there while open.

    ``directory`` is a :class:`DirectoryClient` (shared, opened and closed by the caller), a
    URL, for which the registration opens a client of its own (``token`` for protected writes),
    or None: the first directory announced by DNS-SD on ``interfaces``.
    The first attempt runs in the background: an agent starts even while the directory is down;
    :meth:`wait_registered` waits for the first success.
    """

    def __init__(
        self,
        directory: DirectoryClient | str | None,
        description: Description,
        *,
        ttl: float = 60.0,
        token: str | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._client = directory if isinstance(directory, DirectoryClient) else None
        self._url = directory if isinstance(directory, str) else None
        self._by_dns_sd = directory is None
        self._interfaces = interfaces
        self._owns_client = not isinstance(directory, DirectoryClient)
        self._token = token
        self._document = as_document(description)
        self._ttl = ttl
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._id: str | None = self._document.get("id")
        self._registered_once = asyncio.Event()
        self._wake = asyncio.Event()
        self._dirty = True  # the directory does not have the current document yet
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sent = False  # a registration was sent: close deletes the TD (see _deregister)

    @property
    def thing_id(self) -> str | None:
        """The id in the directory (the TD's own, or the one the directory gave an anonymous TD)."""
        return self._id

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise RuntimeError("the registration is closed")
        if self._url is not None:
            await self._open(self._url)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wot-registration")

    @property
    def directory(self) -> str | None:
        """The directory's URL, once known (found by DNS-SD when none was given)."""
        return self._client.url if self._client is not None else None

    async def _open(self, url: str) -> None:
        client = DirectoryClient(url, token=self._token)
        await client.__aenter__()
        self._client = client

    async def wait_registered(self) -> None:
        """Return once the directory has accepted the TD (bound it with ``asyncio.timeout``)."""
        await self._registered_once.wait()

    async def update(self, description: Description) -> None:
        """Send a changed TD now instead of at the next renewal."""
        document = as_document(description)
        if document == self._document:
            return
        self._document = document
        self._dirty = True
        self._wake.set()

    async def aclose(self) -> None:
        """Stop renewing and delete the TD from the directory (best effort, bounded); idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None and self._id is not None and self._sent:
            await self._deregister(self._client, self._id)
        await self._forget_client()

    async def _deregister(self, client: DirectoryClient, thing_id: str) -> None:
        """Delete the TD, also when no answer to its registration arrived (best effort, bounded).

        A directory may have stored the TD while its answer was on the way when the agent
        stopped: without this delete, the TD would stay listed until its ttl ran out. An
        anonymous TD has no id to delete before the answer that carries it.
        """
        acknowledged = self._registered_once.is_set()
        try:
            async with asyncio.timeout(_DELETE_TIME_LIMIT):
                await client.delete(thing_id)
        except DirectoryError as exc:
            if acknowledged or exc.status not in (404, None):
                log.warning("could not deregister %s: %s", thing_id, exc)
            else:  # never stored, or the directory is down: nothing to undo that we know of
                log.info("%s was not deregistered: %s", thing_id, exc)
        except TimeoutError:
            log.warning("could not deregister %s within %.0f s", thing_id, _DELETE_TIME_LIMIT)

    async def _forget_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()  # before the request: an update() during it must not be lost
            try:
                if self._client is None:
                    url = await find_directory(within=_FIND_TIME_LIMIT, interfaces=self._interfaces)
                    await self._open(url)
                await self._sync()
            except (DirectoryError, DirectoryNotFound) as exc:
                failures += 1
                status = exc.status if isinstance(exc, DirectoryError) else None
                delay = self._backoff(failures, permanent=status in _PERMANENT)
                log.warning("directory registration of %s failed (%s); retry in %.1f s", self._id, exc, delay)
                if self._by_dns_sd and status is None and failures % _UNREACHABLE_LIMIT == 0:
                    await self._forget_client()  # look for a directory again
            else:
                failures = 0
                delay = self._ttl / 2
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _sync(self) -> None:
        """Make the directory hold the current document with a fresh ttl, in one request if it can."""
        assert self._client is not None
        if not self._dirty and self._id is not None:
            try:
                await self._client.patch(self._id, {})  # renews the ttl
                return
            except DirectoryError as exc:
                if exc.status != 404:
                    raise
                log.info("the directory lost %s; registering it again", self._id)
        document = self._document if self._id is None else {**self._document, "id": self._id}
        self._dirty = False
        self._sent = True  # from here on the directory may hold the TD, answer or not
        try:
            self._id = await self._client.register(document, ttl=self._ttl)
        except BaseException:
            self._dirty = True
            raise
        self._registered_once.set()

    def _backoff(self, failures: int, *, permanent: bool) -> float:
        if permanent:
            return self._retry_max
        delay = min(self._retry_max, self._retry_initial * 2 ** (failures - 1))
        # Never later than a renewal would be: the registration must not expire while retrying.
        return float(min(delay, self._ttl / 2) * random.uniform(0.8, 1.2))

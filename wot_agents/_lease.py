"""Leader election with a Kubernetes ``Lease`` (coordination.k8s.io/v1), as client-go does it.

Several replicas run; the work that must have one writer at a time (reconciling LMOS channels,
mirroring Services) runs only in the replica holding the Lease. The holder renews it every
``renew_every`` seconds; the others try to take it over once it has not been renewed for
``lease_seconds``. Every write carries the ``resourceVersion`` it read, so two replicas racing for
an expired Lease cannot both win (the loser gets 409 Conflict). A holder that cannot renew before
its own lease would run out stops leading first, so two leaders never overlap while clocks agree
within the margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from ._backoff import Backoff
from ._errors import KubernetesError
from ._kubernetes import KUBE_LEASES, KubeClient, KubeResource

__all__ = ["LeaderElection"]

log = logging.getLogger("wot_agents.kubernetes")


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(moment: datetime) -> str:
    """A MicroTime as Kubernetes writes it: RFC 3339 with microseconds, in UTC."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaderElection:
    """Holds the Lease ``name`` in ``namespace`` whenever it can; runs ``lead`` while it does.

    ``lead`` is started (as a task) on becoming leader and cancelled on losing the Lease or on
    close; it may be started again later. On close, a held Lease is released (its holder cleared),
    so another replica takes over at once instead of after ``lease_seconds``.
    """

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        lead: Callable[[], Coroutine[Any, Any, None]],
        *,
        identity: str | None = None,
        lease_seconds: float = 15.0,
        renew_every: float = 5.0,
        kind: KubeResource = KUBE_LEASES,
    ) -> None:
        if renew_every >= lease_seconds:
            raise ValueError("renew_every must be shorter than lease_seconds")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self.kind = kind
        self._lead = lead
        self._leading: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._renewed: datetime | None = None
        self.changed = asyncio.Event()  # set on every gain or loss of leadership

    @property
    def is_leader(self) -> bool:
        return self._leading is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def aclose(self) -> None:
        """Stop leading and release the Lease if held; idempotent."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self.is_leader:
            await self._stop_leading()
            with contextlib.suppress(KubernetesError):
                await self._release()

    async def _run(self) -> None:
        # Tried again at the renewal cadence, failure or not: a backoff would let the Lease expire.
        pace = Backoff(self.renew_every)
        while True:
            try:
                held = await self._try_acquire_or_renew()
            except KubernetesError as exc:
                log.warning("lease %s: %s", self.name, exc)
                held = False
            now = _now()
            if held:
                self._renewed = now
                if not self.is_leader:
                    log.info("lease %s: %s is the leader", self.name, self.identity)
                    self._leading = asyncio.create_task(self._lead(), name=f"leader-{self.name}")
                    self.changed.set()
            elif self.is_leader and (
                self._renewed is None
                or now - self._renewed > timedelta(seconds=self.lease_seconds - self.renew_every)
            ):
                log.warning("lease %s: lost by %s", self.name, self.identity)
                await self._stop_leading()
            await pace.wait()

    async def _stop_leading(self) -> None:
        task, self._leading = self._leading, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.changed.set()

    def _spec(self, now: datetime, acquired: str | None, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    async def _try_acquire_or_renew(self) -> bool:
        now = _now()
        current = await self.client.get(self.kind, self.namespace, self.name)
        if current is None:
            lease = {
                "apiVersion": self.kind.api_version,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, None, 0),
            }
            try:
                await self.client.create(self.kind, self.namespace, lease)
            except KubernetesError as exc:
                if exc.status == 409:
                    return False  # another replica created it first
                raise
            return True
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or now > renewed + timedelta(seconds=duration)
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        current["spec"] = self._spec(now, acquired, transitions)
        try:
            await self.client.replace(self.kind, self.namespace, current)
        except KubernetesError as exc:
            if exc.status == 409:
                return False  # someone else renewed or took it meanwhile
            raise
        return True

    async def _release(self) -> None:
        current = await self.client.get(self.kind, self.namespace, self.name)
        if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        current["spec"] = {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
        await self.client.replace(self.kind, self.namespace, current)

"""The runtime's core: one user turn -> candidate agents -> a routing decision -> the agent's reply.

:class:`Runtime` is an async context manager owning the catalog's source, the router and the
forwarder; the HTTP app (``runtime/_app.py``) is a thin shell around :meth:`Runtime.chat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, overload

from router import (
    AgentFilter,
    Decision,
    Embedder,
    LLMClient,
    Router,
    VectorRouter,
    create_router,
    get_embedder,
    render_agents,
)
from wot_agents import (
    AgentDescription,
    AgentIdentity,
    ChatMessage,
    ChatReply,
    ChatRequest,
    LLMRoutingError,
    Membership,
    RoutingError,
    TraceContext,
    TrustPolicy,
)
from wot_agents.trust import TlsConfig

from ._batch import BatchingEmbedder, RouteBatcher
from ._catalog import AgentCatalog, CatalogSource, directory_source, file_source, mdns_source
from ._channels import ChannelFiles, ChannelTable
from ._config import RuntimeSettings
from ._forward import Breaker, Forwarder
from ._lmos import AGENT_NOT_FOUND, INTERNAL_SERVER_ERROR, INVALID_REQUEST, Conversation, LmosError
from ._metrics import Metrics
from ._store import ConversationStore, SQLiteConversationStore, StoredTurn

__all__ = ["Runtime", "Turn", "TurnRequest"]

log = logging.getLogger("runtime")


@dataclass(frozen=True, slots=True)
class Turn:
    """One answered turn: who answered, why that agent, and the reply."""

    #: None when the runtime answered itself with a clarifying question.
    agent: AgentDescription | None
    decision: Decision
    reply: ChatReply
    subset: str

    def to_dict(self) -> dict[str, Any]:
        """The LMOS ``AssistantMessage`` plus, beside it, the agent and the routing decision."""
        return {
            "content": self.reply.text,
            "anonymizationEntities": [
                entity.model_dump(mode="json") for entity in self.reply.anonymization_entities or ()
            ],
            "agent": {"id": self.agent.id, "name": self.agent.title} if self.agent is not None else None,
            "routing": {
                "method": self.decision.method,
                "score": round(self.decision.score, 6),
                "reason": self.decision.reason,
                "capabilityId": self.decision.capability_id,
                "subset": self.subset,
                # The runner-ups the router weighed (best first), for people asking "why this one?"
                "ranking": [
                    {"agentId": agent, "score": round(score, 6)} for agent, score in self.decision.ranking
                ],
            },
        }


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One user turn as the client sent it: where it belongs, and the LMOS body."""

    tenant: str
    conversation_id: str
    turn_id: str
    conversation: Conversation
    #: ``x-subset``: None lets a ChannelRollout (or the default subset) decide.
    subset: str | None = None
    #: The runtime's span of the client's trace: carried to the agent (see wot_agents.use_trace).
    trace: TraceContext | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    agent: AgentDescription
    decision: Decision
    #: What the agent is sent: the messages, their attachments, the anonymization entities.
    messages: ChatRequest
    subset: str
    channel: str
    candidates: tuple[AgentDescription, ...] = ()


CLARIFY_PROMPT = """You are the front desk of a team of assistants. The user's last message does \
not clearly belong to any of them. Ask the user ONE short clarifying question (one sentence) whose \
answer tells which assistant they need. Answer only with JSON: {{"question": "..."}}.

The assistants:
{agents}"""

_QUESTION = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class _Answered:
    """A turn the runtime answered itself (a clarifying question): no agent."""

    agent: None
    decision: Decision
    subset: str
    channel: str


@dataclass(frozen=True, slots=True)
class _Asked:
    """An accepted question (``LLMClient.ask`` takes a plain string from ``accept`` as "retry")."""

    text: str


class _Unclear(Exception):
    """No agent fits the turn: the runtime may ask the user instead of answering AGENT_NOT_FOUND."""

    def __init__(
        self,
        error: LmosError,
        candidates: list[AgentDescription],
        history: Sequence[ChatMessage],
        channel: str,
        subset: str,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.candidates = candidates
        self.history = history
        self.channel = channel
        self.subset = subset


def _default_source(settings: RuntimeSettings) -> CatalogSource:
    if settings.directory:
        return directory_source(settings.directory, token=settings.directory_token)
    if settings.agents or not settings.mdns:
        return file_source(*settings.agents)
    return mdns_source()


def _router(settings: RuntimeSettings, method: str | None = None) -> Router | None:
    method = method or settings.router
    if method == "explicit":
        return None
    llm = {
        "base_url": settings.llm_base_url,
        "model": settings.llm_model,
        "api_key": settings.llm_api_key,
        "response_format": settings.llm_response_format,
    }

    def embedder(name: str) -> Embedder:
        model = get_embedder(name)
        return BatchingEmbedder(model) if settings.batch_embeddings else model

    if method == "cascade":
        return create_router(
            "vector", embedder=embedder(settings.embedder), cascade=embedder(settings.cascade_embedder)
        )
    if method == "llm":
        return create_router("llm", llm=llm)
    return create_router(method, embedder=embedder(settings.embedder), llm=llm)


class Runtime:
    """Routes turns among the catalog's agents and forwards them; ``async with`` starts everything.

    ``source`` overrides where candidates come from (default: the directory, agent files or mDNS,
    as ``settings`` say); ``router`` overrides the router built from ``settings``.
    """

    def __init__(
        self,
        settings: RuntimeSettings | None = None,
        *,
        source: CatalogSource | None = None,
        router: Router | None = None,
        store: ConversationStore | None = None,
    ) -> None:
        self.settings = settings or RuntimeSettings()
        self.catalog = AgentCatalog()
        self._source = source or _default_source(self.settings)
        self._router = router
        #: The router of each method the settings use (the default and the per-channel ones).
        self._routers: dict[str, Router] = {}
        #: The batcher of each vector router (by the router's id), when ``batch_embeddings``.
        self._batchers: dict[int, RouteBatcher] = {}
        self._owns_router = router is None
        self.metrics = Metrics()
        #: Open SSE and WebSocket streams (the app counts them against ``max_streams``).
        self.open_streams = 0
        self.stopping = False
        #: Set once the first view of the candidates is known and the router has learnt it.
        self.warmed = asyncio.Event()
        self.forwarder = Forwarder(
            metrics=self.metrics,
            timeout=self.settings.agent_timeout,
            timeouts=self.settings.agent_timeouts,
            breaker=Breaker(
                threshold=self.settings.breaker_threshold, cooldown=self.settings.breaker_cooldown
            ),
            **_trust_options(self.settings),
        )
        self.channels = ChannelTable()
        self._owns_store = store is None
        turns, conversations, age = (
            self.settings.store_max_turns,
            self.settings.store_max_conversations,
            self.settings.store_max_age,
        )
        if store is None and (self.settings.store or "").startswith(("postgresql://", "postgres://")):
            from ._postgres import PostgresConversationStore  # replicas sharing their conversations

            store = PostgresConversationStore(
                self.settings.store or "", max_turns=turns, max_conversations=conversations, max_age=age
            )
        self.store: ConversationStore = store or SQLiteConversationStore(
            self.settings.store, max_turns=turns, max_conversations=conversations, max_age=age
        )
        self._stack: AsyncExitStack | None = None
        self._clarifier: LLMClient | None = None
        self.metrics.gauge(
            "runtime_catalog_agents", "Chat agents known to the runtime.", lambda: len(self.catalog)
        )
        self.metrics.gauge(
            "runtime_agents_out_of_routing",
            "Agents their circuit breaker took out of routing.",
            lambda: len(self.forwarder.breaker.open),
        )
        self.metrics.gauge(
            "runtime_open_streams", "Open SSE and WebSocket streams.", lambda: self.open_streams
        )
        # Read at scrape: batched turns / batches is the mean batch of concurrent vector turns.
        self.metrics.gauge(
            "runtime_routing_batches",
            "Batches of vector-routed turns routed so far (one embedding call each).",
            lambda: sum(batcher.batches for batcher in self._batchers.values()),
        )
        self.metrics.gauge(
            "runtime_routing_batched_turns",
            "Vector-routed turns routed in batches so far.",
            lambda: sum(batcher.turns for batcher in self._batchers.values()),
        )
        #: The catalog's agents passing each (tenant, channel, subset) filter, until it changes.
        self._filtered: dict[tuple[str, str, str], tuple[AgentDescription, ...]] = {}
        self.catalog.listen(lambda added, removed: self._filtered.clear())
        self._indexing: asyncio.Queue[tuple[Sequence[AgentDescription], Sequence[str]]] = asyncio.Queue()

    @property
    def router(self) -> Router | None:
        return self._router

    def router_for(self, tenant: str, channel: str) -> Router | None:
        """The router of this tenant's channel: ``routes`` by ``tenant/channel``, ``tenant/*``,
        ``*/channel``, else the default; None routes explicit agents only."""
        routes = self.settings.routes
        method = (
            routes.get(f"{tenant}/{channel}")
            or routes.get(f"{tenant}/*")
            or routes.get(f"*/{channel}")
            or self.settings.router
        )
        return self._routers.get(method)

    @property
    def ready(self) -> bool:
        """Serving: the candidates' source delivered its first view, the router learnt it, and no
        shutdown is under way."""
        return self.warmed.is_set() and self._stack is not None and not self.stopping

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            if self.settings.channels:  # loaded now (a broken file stops the start), then watched
                await stack.enter_async_context(
                    ChannelFiles(
                        self.settings.channels,
                        self.channels,
                        lambda: self.catalog.agents.values(),
                        interval=self.settings.channels_poll_interval,
                        metrics=self.metrics,
                    )
                )
            if self._router is None:
                self._router = await asyncio.to_thread(_router, self.settings)
            if self._router is not None:
                self._routers[self.settings.router] = self._router
            for method in sorted(set(self.settings.routes.values()) - {self.settings.router, "explicit"}):
                extra = await asyncio.to_thread(_router, self.settings, method)
                assert extra is not None
                self._routers[method] = extra
                stack.push_async_callback(extra.aclose)
            settings = self.settings
            if settings.clarify and (settings.llm_base_url or settings.router in ("llm", "hybrid")):
                # In a worker thread: the first LLMClient imports openai (~1 s, the loop would stall).
                self._clarifier = await asyncio.to_thread(
                    LLMClient,
                    base_url=settings.llm_base_url,
                    model=settings.llm_model,
                    api_key=settings.llm_api_key,
                    response_format=settings.llm_response_format,
                )
                stack.push_async_callback(self._clarifier.aclose)
            if self._router is not None and self._owns_router:
                stack.push_async_callback(self._router.aclose)
            if settings.batch_embeddings:  # closed before their routers (the stack unwinds LIFO)
                for router in self._routers.values():
                    if isinstance(router, VectorRouter):
                        batcher = self._batchers[id(router)] = RouteBatcher(router)
                        stack.push_async_callback(batcher.aclose)
            stack.push_async_callback(self.forwarder.aclose)
            if isinstance(self.forwarder.credentials, Membership):  # the runtime's group credential
                await stack.enter_async_context(self.forwarder.credentials)
            if self._owns_store:
                await stack.enter_async_context(self.store)
            purge = asyncio.create_task(self._purge(), name="runtime store purge")

            async def stop_purge() -> None:
                purge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purge

            stack.push_async_callback(stop_purge)
            self.catalog.listen(self._on_change)
            indexer = asyncio.create_task(self._index(), name="runtime router index")

            async def stop_indexer() -> None:
                indexer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await indexer

            stack.push_async_callback(stop_indexer)
            warm = asyncio.create_task(self._warm(), name="runtime warm-up")

            async def stop_warming() -> None:
                warm.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warm

            stack.push_async_callback(stop_warming)
            await stack.enter_async_context(self._source(self.catalog))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def _on_change(self, added: Sequence[AgentDescription], removed: Sequence[str]) -> None:
        for agent_id in removed:
            self.forwarder.forget(agent_id)
        if self.channels:
            self.channels.resolve(self.catalog.agents.values())
        self._indexing.put_nowait((added, removed))

    async def _purge(self) -> None:
        """Enforce the store's age and size bounds now and then (writes enforce the rest)."""
        while True:
            try:
                gone = await self.store.purge()
                if gone:
                    log.info("purged %d conversations past the store's bounds", gone)
            except Exception:
                log.exception("purging the conversation store failed")
            await asyncio.sleep(self.settings.store_purge_interval)

    async def _index(self) -> None:
        """Teach the router each catalog change as it happens, one at a time."""
        while True:
            added, removed = await self._indexing.get()
            try:
                # Turns keep routing meanwhile: a vector router ranks on one view of its index
                # (router/_index.py IndexView), so a change mid-route cannot break a ranking.
                for router in self._routers.values():
                    if added:
                        await router.add(list(added))
                    for agent_id in removed:
                        await router.remove(agent_id)
            except RoutingError as exc:
                log.error("the router could not index the agents: %s", exc)
            finally:
                self._indexing.task_done()

    async def _warm(self) -> None:
        """Ready once the first view of the candidates is known and the router has learnt it."""
        await self.catalog.ready.wait()
        await self._indexing.join()
        for router in self._routers.values():
            await router.refitted()
        self.warmed.set()

    # --- turns -------------------------------------------------------------------------------------

    def candidates(self, tenant: str, channel: str, subset: str) -> Sequence[AgentDescription]:
        """The chat agents serving this tenant, channel and subset: the routing of its Channel when
        there is one, otherwise every agent whose tenants, channels and subset match.

        While no agent is out of routing, concurrent turns of one tenant, channel and subset get
        the very same tuple: the router makes its candidate mask once per batch of them."""
        wired = self.channels.candidate_ids(tenant, channel, subset)
        if wired is None:
            # Filtering every agent is the one per-turn cost that grows with the catalog (~1 ms a
            # turn at 1,000 agents): kept per (tenant, channel, subset) until the catalog changes.
            key = (tenant, channel, subset)
            agents = self._filtered.get(key)
            if agents is None:
                if len(self._filtered) >= 1024:  # bounded: tenants and channels come from clients
                    self._filtered.clear()
                agents = self._filtered[key] = tuple(
                    AgentFilter(tenant, channel, subset).apply(self.catalog.agents.values())
                )
        else:
            agents = tuple(agent for agent_id in wired if (agent := self.catalog.get(agent_id)) is not None)
        if not self.forwarder.breaker.open:
            return agents
        available = self.forwarder.breaker.available
        return tuple(agent for agent in agents if available(agent.id or agent.title))

    def subset_for(self, tenant: str, channel: str, conversation_id: str, asked: str | None) -> str:
        """``x-subset`` when the client sent one; else the rollout's pick for the conversation."""
        if asked:
            return asked
        return self.channels.subset_for(tenant, channel, conversation_id) or self.settings.default_subset

    async def chat(self, request: TurnRequest) -> Turn:
        """Answer one turn; failures are :class:`LmosError` with the LMOS code and HTTP status."""
        try:
            plan = await self._plan(request)
        except _Unclear as unclear:
            return await self._clarify(request, unclear)
        try:
            reply = await self.forwarder.chat(plan.agent, plan.messages, request.conversation_id)
        except LmosError:
            other = self._other_instance(plan)
            if other is None:
                raise
            log.warning("agent %s failed; retrying turn %s on %s", plan.agent.id, request.turn_id, other.id)
            plan = replace(plan, agent=other)
            reply = await self.forwarder.chat(other, plan.messages, request.conversation_id)
        return await self._done(request, plan, reply)

    async def stream(self, request: TurnRequest) -> AsyncGenerator[str | Turn, None]:
        """Answer one turn in parts as the agent streams them (``chatStream``); the last item is
        the :class:`Turn`. Failures before the first part and after it alike are :class:`LmosError`."""
        try:
            plan = await self._plan(request)
        except _Unclear as unclear:
            turn = await self._clarify(request, unclear)
            yield turn.reply.text
            yield turn
            return
        parts: list[str] = []
        whole: list[ChatReply] = []  # the agent's reply once it answered (entities no part carries)
        stream = self.forwarder.chat_stream(plan.agent, plan.messages, request.conversation_id, whole.append)
        try:
            try:
                first = await anext(stream)
            except LmosError:
                other = self._other_instance(plan)
                if other is None:
                    raise
                log.warning(
                    "agent %s failed; retrying turn %s on %s", plan.agent.id, request.turn_id, other.id
                )
                await stream.aclose()
                plan = replace(plan, agent=other)
                stream = self.forwarder.chat_stream(
                    other, plan.messages, request.conversation_id, whole.append
                )
                first = await anext(stream)
            parts.append(first)
            yield first
            async for part in stream:
                parts.append(part)
                yield part
        except StopAsyncIteration:
            pass
        finally:
            await stream.aclose()
        entities = whole[-1].anonymization_entities if whole else None
        reply = ChatReply(
            messages=[ChatMessage(role="assistant", content="".join(parts))], anonymization_entities=entities
        )
        yield await self._done(request, plan, reply)

    def _other_instance(self, plan: _Plan) -> AgentDescription | None:
        """Another instance of the plan's agent: another id with the same capabilities, serving the
        same tenant, channel and subset, not out of routing; the retry goes there."""
        failed = plan.agent
        wanted = {capability.id for capability in failed.capabilities or ()}
        if not wanted:
            return None
        for agent in plan.candidates:
            if agent.id != failed.id and {c.id for c in agent.capabilities or ()} == wanted:
                if self.forwarder.breaker.available(agent.id or agent.title):
                    return agent
        return None

    async def _plan(self, request: TurnRequest) -> _Plan:
        conversation = request.conversation
        channel = conversation.system_context.channel_id
        subset = self.subset_for(request.tenant, channel, request.conversation_id, request.subset)
        candidates = self.candidates(request.tenant, channel, subset)
        # Explicit routing needs no history: the store is read only for a turn the router decides.
        stored = (
            []
            if conversation.input_context.explicit_agent
            else await self.store.turns(
                request.tenant, request.conversation_id, last=self.settings.history_turns
            )
        )
        agent, decision = await self._choose(request, candidates, stored, channel, subset)
        messages = conversation.agent_request(request.conversation_id)
        return _Plan(agent, decision, messages, subset, channel, tuple(candidates))

    async def _clarify(self, request: TurnRequest, unclear: _Unclear) -> Turn:
        """No agent fits and an LLM is configured: ask the user which capability they mean (LMOS's
        disambiguation). When the LLM fails too, the turn is AGENT_NOT_FOUND after all."""
        assert self._clarifier is not None

        def accept(reply: dict[str, Any]) -> _Asked | str:
            question = reply.get("question")
            if not isinstance(question, str) or not question.strip():
                return 'the object needs a non-empty string "question"'
            return _Asked(question.strip()[:500])

        messages = [
            {"role": "system", "content": CLARIFY_PROMPT.format(agents=render_agents(unclear.candidates))},
            *({"role": m.role, "content": m.content} for m in unclear.history[-6:]),
            {"role": "user", "content": request.conversation.query},
        ]
        try:
            question = await self._clarifier.ask(messages, name="clarify", schema=_QUESTION, accept=accept)
        except LLMRoutingError as exc:
            log.warning("no clarifying question for turn %s: %s", request.turn_id, exc)
            raise unclear.error from exc
        decision = Decision(None, 0.0, "no agent fits the turn; asked the user to clarify", "clarification")
        self.metrics.inc("runtime_routing_decisions_total", agent="", method="clarification")
        plan = _Answered(None, decision, unclear.subset, unclear.channel)
        reply = ChatReply(messages=[ChatMessage(role="assistant", content=question.text)])
        return await self._done(request, plan, reply)

    async def _done(self, request: TurnRequest, plan: _Plan | _Answered, reply: ChatReply) -> Turn:
        """Store the answered turn (before the client hears of it), log it, return it."""
        decision = plan.decision
        await self.store.append(
            request.tenant,
            request.conversation_id,
            StoredTurn(
                turn_id=request.turn_id,
                query=request.conversation.query,
                reply=reply.text,
                agent_id=(plan.agent.id or plan.agent.title) if plan.agent is not None else "",
                agent_name=plan.agent.title if plan.agent is not None else "",
                method=decision.method,
                score=decision.score,
                subset=plan.subset,
                channel=plan.channel,
                messages=[
                    m.to_dict() for m in request.conversation.input_context.messages if m.role == "user"
                ][-1:],
            ),
        )
        log.info(
            "turn %s of %s/%s -> %s (%s %.3f) trace %s",
            request.turn_id,
            request.tenant,
            request.conversation_id,
            plan.agent.id if plan.agent is not None else "(the runtime)",
            decision.method,
            decision.score,
            request.trace.trace_id if request.trace else "-",
        )
        return Turn(plan.agent, decision, reply, plan.subset)

    async def _choose(
        self,
        request: TurnRequest,
        candidates: Sequence[AgentDescription],
        stored: Sequence[StoredTurn],
        channel: str,
        subset: str,
    ) -> tuple[AgentDescription, Decision]:
        conversation = request.conversation
        where = f"tenant {request.tenant!r}, channel {channel!r}, subset {subset!r}"
        explicit = conversation.input_context.explicit_agent
        if explicit:
            for agent in candidates:
                if explicit in (agent.id, agent.title):
                    self.metrics.inc(
                        "runtime_routing_decisions_total", agent=agent.id or "", method="explicit"
                    )
                    return agent, Decision(agent.id, 1.0, "named by explicitAgent", "explicit")
            raise LmosError(
                AGENT_NOT_FOUND, f"No agent found with the name {explicit} for {where}", status=404
            )
        router = self.router_for(request.tenant, channel)
        if router is None:
            raise LmosError(INVALID_REQUEST, "Explicit agent name is required", status=400)
        if not candidates:
            raise LmosError(AGENT_NOT_FOUND, f"No agent serves {where}", status=404)
        history = _history(conversation, stored)
        batcher = self._batchers.get(id(router))
        try:
            if batcher is not None:  # concurrent turns share one embedding call
                decision = await batcher.route(conversation.query, history, candidates)
            else:
                decision = await router.route(conversation.query, history, candidates)
        except RoutingError as exc:
            raise LmosError(INTERNAL_SERVER_ERROR, f"routing failed: {exc}", status=500) from exc
        if decision.agent_id is None:
            self.metrics.inc("runtime_abstentions_total")
        previous = stored[-1].agent_id if stored and stored[-1].method != "clarification" else None
        if (
            self.settings.sticky
            and previous is not None
            and decision.agent_id != previous
            and _find(candidates, previous) is not None
        ):
            decision = _sticky(decision, previous, self.settings.switch_margin)
        if decision.agent_id is None:
            error = LmosError(
                AGENT_NOT_FOUND,
                f"No agent fits this turn among those serving {where}: {decision.reason}",
                status=404,
            )
            if self._clarifier is not None:
                raise _Unclear(error, list(candidates), history, channel, subset)
            raise error
        chosen = _find(candidates, decision.agent_id)
        if chosen is None:
            raise LmosError(
                AGENT_NOT_FOUND, f"the router chose {decision.agent_id}, which left meanwhile", status=404
            )
        self.metrics.inc("runtime_routing_decisions_total", agent=decision.agent_id, method=decision.method)
        return chosen, decision


def _find(candidates: Sequence[AgentDescription], agent_id: str) -> AgentDescription | None:
    """The candidate of this id (a scan, not a dict of 1,000 candidates built on every turn)."""
    return next((agent for agent in candidates if (agent.id or agent.title) == agent_id), None)


def _history(conversation: Conversation, stored: Sequence[StoredTurn]) -> Sequence[ChatMessage]:
    """The conversation before this turn: the client's earlier messages when it sent them (LMOS
    clients usually send the whole conversation), else the turns the store remembers."""
    messages = conversation.input_context.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages) - 1)
    if last_user > 0:
        return [ChatMessage(role=m.role, content=m.content) for m in messages[:last_user]]
    return _StoredHistory(stored)


class _StoredHistory(Sequence[ChatMessage]):
    """Stored turns as chat messages, made when first read: the vector router reads the history
    only for a short follow-up, and twelve messages cost ~25 us of a turn's CPU to make."""

    def __init__(self, stored: Sequence[StoredTurn]) -> None:
        self._stored = stored
        self._messages: list[ChatMessage] | None = None

    def _made(self) -> list[ChatMessage]:
        if self._messages is None:
            self._messages = [
                message
                for turn in self._stored
                for message in (
                    ChatMessage(role="user", content=turn.query),
                    ChatMessage(role="assistant", content=turn.reply),
                )
            ]
        return self._messages

    def __len__(self) -> int:
        return 2 * len(self._stored)

    @overload
    def __getitem__(self, index: int) -> ChatMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[ChatMessage]: ...

    def __getitem__(self, index: int | slice) -> ChatMessage | list[ChatMessage]:
        return self._made()[index]


def _sticky(decision: Decision, previous: str, margin: float) -> Decision:
    """Keep the conversation with its agent unless the router is clearly sure of another: it chose
    one scoring at least ``margin`` above the conversation's agent (an abstention keeps it too:
    a follow-up often fits no agent on its own)."""
    kept = next((score for agent_id, score in decision.ranking if agent_id == previous), 0.0)
    if decision.agent_id is not None and decision.score - kept >= margin:
        return decision
    why = (
        "no agent fits the turn alone"
        if decision.agent_id is None
        else f"{decision.agent_id} scored only {decision.score - kept:.3f} above it"
    )
    return Decision(
        previous, kept, f"kept the conversation's agent: {why}", "sticky", ranking=decision.ranking
    )


def _trust_options(settings: RuntimeSettings) -> dict[str, Any]:
    """The Forwarder's trust: a signature policy, the runtime's group membership, its certificate."""
    options: dict[str, Any] = {}
    if settings.require_signatures or settings.trusted_issuers is not None:
        options["trust"] = TrustPolicy(
            require_signature=True,
            trusted=None if settings.trusted_issuers is None else frozenset(settings.trusted_issuers),
        )
    if settings.group is not None:
        if settings.identity is None or settings.directory is None:
            raise ValueError("group= needs identity= (the runtime's key file) and directory= (its authority)")
        identity = AgentIdentity.load_or_create(settings.identity)
        options["credentials"] = Membership(
            settings.directory, identity, settings.group, token=settings.directory_token
        )
    cert, key, ca = settings.tls_cert, settings.tls_key, settings.tls_ca
    if cert or key or ca:
        if not (cert and key and ca):
            raise ValueError("mutual TLS needs tls_cert, tls_key and tls_ca")
        options["tls"] = TlsConfig(Path(cert), Path(key), Path(ca))
    return options

"""LLM routing through any OpenAI-compatible chat endpoint, with structured output.

The model sees the candidates rendered one per line and must answer JSON ``{"agentId", "reason"}``.
Transport failures (timeouts, rate limits, 5xx) are retried by the openai client with backoff
(``max_retries``); unusable replies (not JSON, wrong shape, an agent that is not a candidate) are
sent back to the model with what was wrong, at most ``attempts`` times. After that the router raises
:class:`~wot_agents.LLMRoutingError`: it never returns an agent that was not a candidate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from wot_agents import AgentDescription, ChatMessage, LLMRoutingError

from ._base import RouterBase, conversation
from ._decision import AgentFilter, Decision, agent_key

__all__ = ["LLMClient", "LLMRouter", "render_agents"]

T = TypeVar("T")

#: ``json_schema``: OpenAI structured outputs; ``json_object``: plain JSON mode;
#: ``json_object+schema``: JSON mode with a schema, which llama.cpp's server turns into a grammar.
RESPONSE_FORMATS = ("json_schema", "json_object", "json_object+schema")

ROUTE_PROMPT = """You route a user's request to the one agent best able to handle it.
Candidate agents, one per line as `id: title - description [capabilities]`:
{agents}

Answer only with JSON: {{"agentId": "<an id from the list>", "reason": "<one short sentence>"}}.
Use "agentId": null when no agent fits the request."""


def render_agents(agents: Sequence[AgentDescription], *, width: int = 320) -> str:
    """The candidates compactly: one line each, capabilities by name, long lines cut."""
    lines = []
    for agent in agents:
        capabilities = "; ".join(c.name or c.id for c in agent.capabilities or ())
        line = f"{agent_key(agent)}: {agent.title}"
        if agent.description:
            line += f" - {agent.description}"
        if capabilities:
            line += f" [{capabilities}]"
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(lines)


class LLMClient:
    """Bounded, validated JSON completions over the openai client (shared by the LLM and hybrid routers).

    Made without a ``client``, it imports ``openai`` and builds one: ~0.3 s the first time in a
    process, so a running service makes it off its event loop (``asyncio.to_thread``), as the
    runtime does with its routers.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        attempts: int = 3,
        response_format: str = "json_schema",
        max_tokens: int = 200,
    ) -> None:
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"unknown response format {response_format!r}; choose one of {RESPONSE_FORMATS}")
        if client is None:
            try:
                import openai
            except ImportError as exc:
                raise LLMRoutingError("the LLM router needs the 'llm' extra (openai)") from exc
            client = openai.AsyncOpenAI(
                base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                # A local OpenAI-compatible server needs no key, but the client insists on one.
                api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
                timeout=timeout,
                max_retries=max_retries,
            )
            self._owned = True
        else:
            self._owned = False
        self.client = client
        self.model = model or os.environ.get("WOT_AGENTS_LLM_MODEL") or "gpt-4o-mini"
        self.attempts = attempts
        self.response_format = response_format
        self.max_tokens = max_tokens

    def _format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        if self.response_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        if self.response_format == "json_object+schema":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}

    async def ask(
        self,
        messages: list[dict[str, str]],
        *,
        name: str,
        schema: dict[str, Any],
        accept: Callable[[dict[str, Any]], T | str],
    ) -> T:
        """Complete until ``accept`` takes the parsed reply; a string from ``accept`` says what was wrong."""
        import openai

        messages = list(messages)
        problem = "no attempt made"
        for _ in range(self.attempts):
            try:
                reply = await self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    response_format=self._format(name, schema),
                    temperature=0,
                    max_tokens=self.max_tokens,
                )
            except openai.OpenAIError as exc:  # the client already retried transient failures
                raise LLMRoutingError(f"the LLM endpoint failed: {type(exc).__name__}: {exc}") from exc
            content = (reply.choices[0].message.content or "").strip() if reply.choices else ""
            try:
                parsed = json.loads(content)
            except ValueError:
                problem = f"the reply is not JSON: {content[:200]!r}"
            else:
                result = accept(parsed) if isinstance(parsed, dict) else "the reply is not a JSON object"
                if not isinstance(result, str):
                    return result
                problem = result
            messages += [
                {"role": "assistant", "content": content[:2000]},
                {
                    "role": "user",
                    "content": f"That answer is unusable: {problem}. Answer again, only with the JSON.",
                },
            ]
        raise LLMRoutingError(f"the LLM gave no usable answer in {self.attempts} attempts; last: {problem}")

    async def aclose(self) -> None:
        if self._owned:
            await self.client.close()


def chat_history(history: Sequence[ChatMessage], turns: int) -> list[dict[str, str]]:
    """The last ``turns`` messages as chat completion messages; a system message from the
    conversation is passed as the user's, so that it cannot override the routing prompt."""
    return [
        {"role": turn.role if turn.role in ("user", "assistant") else "user", "content": turn.content}
        for turn in conversation(history)[-turns:]
    ]


class LLMRouter(RouterBase):
    """Asks a chat model which candidate should handle the request (reading the conversation too)."""

    method = "llm"

    def __init__(
        self,
        llm: LLMClient | None = None,
        *,
        where: AgentFilter | None = None,
        history_turns: int = 6,
        **client_options: Any,
    ) -> None:
        self.llm = llm or LLMClient(**client_options)
        self.where = where or AgentFilter()
        self.history_turns = history_turns
        self._agents: dict[str, AgentDescription] = {}

    async def _add(self, agents: Sequence[AgentDescription]) -> int:
        for agent in agents:
            self._agents[agent_key(agent)] = agent
        return len(agents)

    async def remove(self, agent_id: str) -> bool:
        return self._agents.pop(agent_id, None) is not None

    async def choose(
        self,
        query: str,
        history: Sequence[ChatMessage],
        agents: Sequence[AgentDescription],
        *,
        method: str | None = None,
    ) -> Decision:
        """The LLM's pick among exactly these agents (already filtered)."""
        method = method or self.method
        if not agents:
            return Decision(None, 0.0, "no candidate agent passed the filters", method)
        by_key = {agent_key(agent): agent for agent in agents}
        by_title = {agent.title.casefold(): key for key, agent in by_key.items()}
        schema = {
            "type": "object",
            "properties": {
                "agentId": {"anyOf": [{"type": "string", "enum": list(by_key)}, {"type": "null"}]},
                "reason": {"type": "string"},
            },
            "required": ["agentId", "reason"],
            "additionalProperties": False,
        }

        def accept(reply: dict[str, Any]) -> Decision | str:
            if "agentId" not in reply:
                return 'the object has no "agentId" member'
            chosen, reason = reply["agentId"], str(reply.get("reason") or "")[:500]
            if chosen in (None, "", "null", "none"):
                return Decision(None, 0.0, reason or "the LLM found no fitting agent", method)
            if not isinstance(chosen, str):
                return '"agentId" must be a string or null'
            key = chosen if chosen in by_key else by_title.get(chosen.casefold())
            if key is None:
                return f"{chosen!r} is not one of the candidate ids"
            return Decision(key, 1.0, reason or "chosen by the LLM", method)

        messages = [
            {"role": "system", "content": ROUTE_PROMPT.format(agents=render_agents(agents))},
            *chat_history(history, self.history_turns),
            {"role": "user", "content": query},
        ]
        return await self.llm.ask(messages, name="route", schema=schema, accept=accept)

    async def _route(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        """Choose among ``candidates`` (default: the agents added) passing ``where``."""
        pool = list(self._agents.values()) if candidates is None else list(candidates)
        return await self.choose(query, history, (where or self.where).apply(pool))

    async def aclose(self) -> None:
        await self.llm.aclose()

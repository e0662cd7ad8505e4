"""Does the conversation history help the vector router? Two-turn conversations built from LMOS.

    python bench/router_history.py [--conversations 500]

LMOS's data is single-turn, so conversations are made (seeded) from its rows:

- follow-up: the user asked an LMOS query for agent A, the assistant answered, and the user now
  says something short that only makes sense with that context ("how long will that take?");
  expected: A. Follow-ups are generic templates, the same for every agent.
- switch: the user asked a query for A and now asks a full query for another agent B; expected: B.
  History must not drag a new topic back to the old agent.
- single: the query alone, no history; the path without history is unchanged by construction.

For each way of using the history (ignore it; mix the last user turn's embedding into the
query's with weight w, for every query or only for short ones: ``VectorRouter.history_weight``
and ``follow_up_words``) it prints the accuracy of each kind. Weights are chosen on
conversations from LMOS train rows (``val``), reported on test rows.
Skips with a message when ../shared/data/routing is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_datasets

from router import CachedEmbedder, EmbeddingCache, MiniLMEmbedder, VectorRouter
from wot_agents import AgentDescription, ChatMessage

FOLLOW_UPS = (
    "how long will that take?",
    "and what does it cost?",
    "can you do that for me now?",
    "what do I need for it?",
    "ok, how do I do it?",
    "and if that doesn't work?",
    "can I do that online?",
    "yes please, go ahead",
    "why is that?",
    "is there a deadline?",
)
REPLY = "Sure, I can help you with that."

Row = tuple[str, str | None]
#: (last user turn or None, query, expected agent, kind)
Conversation = tuple[str | None, str, str, str]


def conversations(rows: list[Row], count: int, rng: random.Random) -> list[Conversation]:
    made: list[Conversation] = []
    for _ in range(count):
        (first, agent), (second, other) = rng.sample(rows, 2)
        assert agent is not None and other is not None
        made.append((first, rng.choice(FOLLOW_UPS), agent, "follow-up"))
        if other != agent:
            made.append((first, second, other, "switch"))
        made.append((None, first, agent, "single"))
    return made


def accuracy(router: VectorRouter, talks: list[Conversation]) -> dict[str, float]:
    """Accuracy per kind of conversation, routed as ``route`` does (no abstention)."""
    hits: dict[str, list[bool]] = {}
    for context, query, expected, kind in talks:
        history = (
            [ChatMessage(role="user", content=context), ChatMessage(role="assistant", content=REPLY)]
            if context
            else []
        )
        decision = router.route_sync(query, history=history)
        hits.setdefault(kind, []).append(decision.agent_id == expected)
    return {kind: 100 * float(np.mean(values)) for kind, values in hits.items()}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=500)
    args = parser.parse_args()
    if router_datasets.missing():
        return 0
    print(f"machine: {router_datasets.machine()}")
    agents, val, test = router_datasets.lmos()
    rng = random.Random(router_datasets.SEED)
    splits = {
        "val": conversations(val, args.conversations, rng),
        "test": conversations(test, args.conversations, rng),
    }
    cache = EmbeddingCache()
    embedder = CachedEmbedder(MiniLMEmbedder(), cache)  # queries are cached too: nine passes
    variants = [(0.0, 0)] + [(w, s) for s in (1000, 6) for w in (0.3, 0.5, 0.7, 1.0)]
    async with VectorRouter(embedder, threshold=0.0, cache=cache) as router:
        await router.add([AgentDescription.from_dict(agent) for agent in agents])
        await router.refitted()
        for split, talks in splits.items():
            for weight, words in variants:
                router.history_weight, router.follow_up_words = weight, words
                result = accuracy(router, talks)
                when = (
                    "never"
                    if not weight
                    else ("every query" if words == 1000 else f"queries <= {words} words")
                )
                print(
                    f"{split:<5} history weight {weight:.1f} ({when:<20})"
                    f"  follow-up {result['follow-up']:6.2f}%  switch {result['switch']:6.2f}%"
                    f"  single {result['single']:6.2f}%",
                    flush=True,
                )
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

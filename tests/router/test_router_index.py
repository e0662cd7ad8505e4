"""The capability index: incremental updates, row reuse, the disk cache and the ANN path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from router import CachedEmbedder, CapabilityIndex, EmbeddingCache, TorchMiniLMEmbedder, WordLlamaEmbedder
from router._index import _VectorTable
from wot_agents import AgentDescription


class CountingEmbedder:
    """Wraps a real embedder and counts the texts it was asked to embed."""

    def __init__(self, inner: WordLlamaEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.embed(texts)


def test_upsert_embeds_only_new_or_changed_agents(wordllama, agents, make_agent) -> None:
    counter = CountingEmbedder(wordllama)
    index = CapabilityIndex(counter)
    assert index.upsert(agents) == 4
    first = len(counter.texts)
    assert index.upsert(agents) == 0  # unchanged: nothing embedded again
    assert len(counter.texts) == first
    changed = make_agent(
        "urn:test:music", "Music agent", "Plays songs.", [("play", "play music", ["play a song"])]
    )
    assert index.upsert([changed]) == 1
    assert counter.texts[first:] == ["Music agent. Plays songs.", "play: play music", "play a song"]
    assert len(index) == 4
    assert index.get("urn:test:music").description == "Plays songs."


def test_remove_frees_rows_that_later_agents_reuse(wordllama, agents) -> None:
    index = CapabilityIndex(wordllama)
    index.upsert(agents)
    texts = index.table("texts")
    size, alive = texts.size, texts.alive
    billing_rows = int(np.count_nonzero(texts.owner[: texts.size] == index.get("urn:test:billing").slot))
    assert index.remove("urn:test:billing")
    assert not index.remove("urn:test:billing")
    assert "urn:test:billing" not in index
    assert texts.alive == alive - billing_rows
    index.upsert([agents[1]])
    assert texts.size == size  # the freed rows were reused, the table did not grow
    query = wordllama.embed(["refund my order"])[0]
    _, _, owners, _ = index.search("texts", query, 3)
    assert index.agent_at(int(owners[0])).id == "urn:test:billing"


def test_cache_serves_a_second_index_without_embedding(wordllama, agents, tmp_path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    try:
        CapabilityIndex(CachedEmbedder(wordllama, cache)).upsert(agents)
        counter = CountingEmbedder(wordllama)
        second = CapabilityIndex(CachedEmbedder(counter, cache))
        second.upsert(agents)
        assert counter.texts == []
        stored = cache.get_many(wordllama.name, ["play some jazz"])[0]
        assert stored is not None
        assert np.allclose(stored, wordllama.embed(["play some jazz"])[0], atol=1e-6)
        # Another model name is another key: nothing is shared across models.
        assert cache.get_many("other-model", ["play some jazz"]) == [None]
    finally:
        cache.close()


def test_agent_without_capabilities_is_indexed_by_description_and_actions(wordllama) -> None:
    agent = AgentDescription.from_dict(
        {
            "@context": "https://www.w3.org/2022/wot/td/v1.1",
            "id": "urn:test:lamp",
            "title": "Lamp",
            "description": "A dimmable light",
            "actions": {
                "toggle": {"description": "switch the light on or off", "forms": [{"href": "http://x/t"}]}
            },
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
            "security": "nosec_sc",
        }
    )
    index = CapabilityIndex(wordllama)
    index.upsert([agent])
    assert index.table("texts").alive == 2
    assert index.table("centroids").alive == 1


def test_ann_search_agrees_with_exact_search() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = _VectorTable(32, ann_threshold=1 << 30)
    approximate = _VectorTable(32, ann_threshold=1000)
    for table in (exact, approximate):
        for start in range(0, 3000, 500):
            table.add(start // 500, list(range(500)), vectors[start : start + 500])
    assert approximate._ann is not None and exact._ann is None
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    hits = 0
    for query in queries / np.linalg.norm(queries, axis=1, keepdims=True):
        exact_rows, exact_sims = exact.search(query, 10, None)
        ann_rows, ann_sims = approximate.search(query, 10, None)
        hits += len(set(exact_rows.tolist()) & set(ann_rows.tolist()))
        assert ann_sims[0] == pytest.approx(exact_sims[0], abs=1e-4) or ann_rows[0] != exact_rows[0]
    assert hits / 500 > 0.95  # recall@10 of the HNSW index
    # Removing rows removes them from the ANN index too, and a filter still applies.
    approximate.remove(list(range(500)))
    rows, _ = approximate.search(queries[0], 20, None)
    assert not set(rows.tolist()) & set(range(500))
    allowed = np.zeros(6, dtype=bool)
    allowed[3] = True
    rows, _ = approximate.search(queries[0], 5, allowed)
    assert len(rows) == 5 and set(approximate.owner[rows].tolist()) == {3}


def test_onnx_minilm_gives_the_embeddings_of_the_packaged_torch_model(minilm) -> None:
    texts = ["will it rain tomorrow?", "I want my money back", "a much longer sentence " * 20, "ok"]
    onnx = minilm.embed(texts)
    torch = TorchMiniLMEmbedder().embed(texts)
    assert onnx.shape == torch.shape == (4, 384)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert (onnx * torch).sum(axis=1).min() > 0.99999

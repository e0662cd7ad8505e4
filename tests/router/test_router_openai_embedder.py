"""The OpenAI embeddings client against a real llama.cpp server: shapes, the disk cache, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import openai
import pytest

from router import CachedEmbedder, EmbeddingCache, OpenAIEmbedder, VectorRouter
from tests.servers import free_port
from wot_agents import EmbedderError

TEXTS = ["will it rain tomorrow?", "refund my order", "will it rain tomorrow?"]


@pytest.fixture
def embedder_at() -> Iterator[Callable[[str], OpenAIEmbedder]]:
    """Embedders on an OpenAI endpoint; their clients (and connection pools) closed afterwards."""
    clients: list[openai.OpenAI] = []

    def make(base_url: str) -> OpenAIEmbedder:
        # 120 s: SmolLM2 on 2 busy cores (load ~11) once took over 30 s for these three texts; the
        # offline checks fail at connect, at once, whatever the timeout.
        clients.append(openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120))
        return OpenAIEmbedder("smollm2", client=clients[-1], batch_size=1)  # see OpenAIEmbedder on llama.cpp

    yield make
    for client in clients:
        client.close()


def test_vectors_have_the_models_shape_and_are_normalised(llama_embeddings, embedder_at) -> None:
    embedder = embedder_at(llama_embeddings)
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (3, 576) and embedder.dim == 576  # SmolLM2-135M's hidden size
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-4)  # the same text, the same vector
    assert float(vectors[0] @ vectors[1]) < 0.999


def test_the_disk_cache_answers_a_second_run_without_the_server(
    llama_embeddings, tmp_path, embedder_at
) -> None:
    path = tmp_path / "embeddings.sqlite"
    first_cache = EmbeddingCache(path)
    first = CachedEmbedder(embedder_at(llama_embeddings), first_cache).embed(TEXTS)
    first_cache.close()
    # nothing listens on this port: any request would fail
    offline = embedder_at(f"http://127.0.0.1:{free_port()}/v1")
    second_cache = EmbeddingCache(path)
    try:
        again = CachedEmbedder(offline, second_cache).embed(TEXTS)
        np.testing.assert_array_equal(first, again)
        with pytest.raises(EmbedderError, match="smollm2"):
            CachedEmbedder(offline, second_cache).embed(["a text nobody embedded"])
    finally:
        second_cache.close()


def test_a_server_error_is_an_embedder_error(llama_server, embedder_at) -> None:
    # the chat server was started without --embedding: it answers /v1/embeddings with an error
    with pytest.raises(EmbedderError, match="embedding request to smollm2 failed"):
        embedder_at(llama_server).embed(["will it rain tomorrow?"])


async def test_the_vector_router_runs_on_it(llama_embeddings, agents, embedder_at) -> None:
    async with VectorRouter(embedder_at(llama_embeddings), rule="nearest", threshold=0.0) as router:
        await router.add(agents)
        decision = await router.route("play some jazz")  # an example of the music agent, verbatim
        assert decision.agent_id == "urn:test:music" and decision.score == pytest.approx(1.0, abs=1e-4)

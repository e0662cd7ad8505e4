"""MiniLM quantised to int8 (``minilm-int8``): nearly the fp32 model's embeddings, under a name of its own."""

from __future__ import annotations

import numpy as np

from router import MiniLMEmbedder, get_embedder


def test_int8_minilm_embeds_like_the_fp32_model_under_its_own_name(minilm: MiniLMEmbedder) -> None:
    texts = ["will it rain tomorrow?", "I want my money back", "a much longer sentence " * 20, "ok"]
    quantized = get_embedder("minilm-int8")
    assert isinstance(quantized, MiniLMEmbedder) and quantized.quantized
    # A distinct name: embedding caches and calibrated gates never mix its vectors with fp32 ones.
    assert (quantized.name, minilm.name) == ("all-MiniLM-L6-v2-int8", "all-MiniLM-L6-v2")
    vectors = quantized.embed(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * minilm.embed(texts)).sum(axis=1)
    # Close to fp32 (a two-letter text least: ~0.96), and not fp32 itself.
    assert cosines.min() > 0.95 and cosines.mean() > 0.98 and cosines.max() < 0.99999
    # The quantised graph is made once and kept beside the exported fp32 graph.
    graphs = sorted(path.name for path in quantized._cache_dir.glob("all-MiniLM-L6-v2-*.onnx"))
    assert any(name.endswith("-int8.onnx") for name in graphs), graphs
    # Related texts stay closer than unrelated ones.
    rain, refund = quantized.embed(["is it going to rain?", "please refund my order"])
    assert float(rain @ vectors[0]) > float(rain @ vectors[1])
    assert float(refund @ vectors[1]) > float(refund @ vectors[0])

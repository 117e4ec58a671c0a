"""The estimator seam: turn observed cost changes into a gradient estimate, ask/tell.

An estimator sees one update window at a time: the inputs and targets the controller
presents at each hardware step (each sample held ``tau_x`` steps). It *asks* for the
probes it wants run (:class:`~devsim.hardware.Request`: inputs, perturbations, the local
signals it needs), is *told* what the chip reported, possibly over several rounds, and
then gives an :class:`Estimate` that any optimizer in :mod:`trainer.optim` can consume::

    estimator.start(window)
    while (request := estimator.ask()) is not None:
        estimator.tell(chip.run(request))
    estimate = estimator.result()

Who runs the requests is the executor's business (:mod:`trainer.executors`): the plain
loop above, or compiled forms that give the same bits. Estimators see only the chip's
controller side (:class:`~devsim.hardware.Hardware`); an estimator that is outside the
rule (the backpropagation baseline) says so and is also handed the experimenter's
:class:`~devsim.bench.Bench`.

Subclasses write a window as one generator, :meth:`Estimator.rounds`, which yields each
request and receives its result; the base class turns it into ask/tell.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Generator, Mapping, NamedTuple

import numpy as np

from devsim.hardware import Hardware, Request, Result
from devsim.training import EstimatorParams, Footprint, Timescales

__all__ = ["Estimate", "Estimator", "EstimatorParams", "Footprint", "Setup", "Timescales",
           "Window", "layer_gradient"]


class Window(NamedTuple):
    """What the controller presents during one update window of T steps."""

    x: np.ndarray
    """Inputs, one row per step (T, n_in)."""
    y: np.ndarray
    """Targets, one row per step (T, n_out)."""
    new_sample: np.ndarray
    """True on the first step of each newly presented sample (T,)."""


class Estimate(NamedTuple):
    """A gradient estimate and what was observed while forming it."""

    gradient: np.ndarray
    """Flat estimate in the hardware's parameter layout."""
    cost: float
    """Mean cost of the inferences the estimate was formed from."""
    info: Mapping[str, float] = MappingProxyType({})
    """Extra diagnostic scalars, named as in :meth:`EstimatorParams.diagnostics`."""


class Setup(NamedTuple):
    """What an estimator is built with."""

    chip: Hardware
    """The chip's controller side."""
    rng: np.random.Generator
    """The estimator's own random stream."""
    timescales: Timescales
    """The loop's clocks."""
    bench: object | None = None
    """The experimenter's :class:`~devsim.bench.Bench`, for estimators outside the rule
    (:attr:`~devsim.training.EstimatorParams.outside_the_rule`) only; None for every
    other."""


class Estimator:
    """Forms one estimate per update window, asking for probes and told their results;
    may keep state between windows."""

    _rounds = None
    _request: Request | None = None
    _estimate: Estimate | None = None

    def rounds(self, window: Window) -> Generator[Request, Result, Estimate]:
        """The window as a generator: yield each request, receive its result, return the
        estimate."""
        raise NotImplementedError

    def window_steps(self, window: Window) -> int:
        """Hardware steps the window costs, known before it runs (the contract tables
        hold every estimator to it)."""
        raise NotImplementedError

    def start(self, window: Window) -> None:
        """Begin a window."""
        self._rounds, self._estimate = self.rounds(window), None
        self._advance(None)

    def ask(self) -> Request | None:
        """The next request to run, or None when the estimate is ready."""
        return self._request

    def tell(self, result: Result) -> None:
        """The chip's result of the request last asked for."""
        if self._request is None:
            raise RuntimeError("tell() without a request asked for")
        self._advance(result)

    def result(self) -> Estimate:
        """The window's estimate, once no request is left."""
        if self._estimate is None:
            raise RuntimeError("the window's requests have not all been told")
        return self._estimate

    def _advance(self, result):
        try:
            self._request = (next(self._rounds) if result is None
                             else self._rounds.send(result))
        except StopIteration as done:  # (a finished window keeps no generator: checkpoints
            self._request, self._estimate = None, done.value  # pickle estimators)
            self._rounds = None


def layer_gradient(chip: Hardware, node_signal: np.ndarray,
                   inputs: list[np.ndarray]) -> np.ndarray:
    """Each synapse's local estimate from its node's signal and its own input, for every
    layer whose input is in ``inputs``: the sum over the window's steps of (node
    estimate) x (presynaptic input), as the chip's synapse circuits form it
    (:meth:`~devsim.hardware.Hardware.local_gradient`: dW = node_signal_l^T @ x_l,
    db = sum_t node_signal_l for a dense layer)."""
    offsets = chip.node_offsets
    return np.concatenate([chip.local_gradient(i, node_signal[:, offsets[i]:offsets[i + 1]], x)
                           for i, x in enumerate(inputs)])

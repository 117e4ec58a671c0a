"""The training loop: data stream + estimator + optimizer + hardware writes.

One :meth:`TrainingLoop.update` is one update window of ``tau_theta`` hardware steps:
the controller presents samples (each held ``tau_x`` steps), the executor runs the
probes the estimator asks for, the optimizer turns the estimate into a step, and the
step is written to the devices.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

import numpy as np

from devsim import parallel
from devsim.data import SampleStream
from devsim.hardware import Hardware
from trainer.base import Estimator, Timescales, Window
from trainer.executors import Executor, Plain
from trainer.kernels import norm
from trainer.optim import Transform

__all__ = ["TrainingLoop", "UpdateStats", "Timescales"]


class UpdateStats(NamedTuple):
    """What one update window did."""

    cost: float
    estimate_norm: float
    update_norm: float
    info: Mapping[str, float] = MappingProxyType({})
    """The estimator's extra diagnostic scalars (and the loop's, see ``diagnose``)."""
    skipped: bool = False
    """The cost, the estimate or the step was not finite, so nothing was written."""


class TrainingLoop:
    """Drives one chip through update windows."""

    def __init__(self, chip: Hardware, x: np.ndarray, y: np.ndarray, estimator: Estimator,
                 optimizer: Transform, timescales: Timescales, rng: np.random.Generator,
                 executor: Executor | None = None,
                 diagnose: Callable[[Window, np.ndarray], Mapping[str, float]] | None = None):
        """``diagnose(window, estimate)`` (optional) adds scalars to each window's info,
        from outside the chip (say, the cosine to the exact gradient)."""
        self.chip, self.x, self.y = chip, x, y
        self.estimator, self.optimizer, self.timescales = estimator, optimizer, timescales
        self.executor = executor or Plain(chip)
        self.diagnose = diagnose
        self.stream = SampleStream(len(x), timescales.tau_x, rng)
        self.opt_state = optimizer.init(np.zeros(chip.n_params))

    def next_window(self) -> Window:
        """The samples of the next window, from the stream."""
        idx, new = self.stream.next(self.timescales.tau_theta)
        return Window(self.x[idx], self.y[idx], new)

    def update(self) -> UpdateStats:
        """Run one window and write its update, unless something in it is not finite."""
        return self.advance(self.chip.steps + 1)[-1]

    def advance(self, until: int) -> list[UpdateStats]:
        """Run update windows, stopping at the first that brings the chip to ``until``
        hardware steps or is skipped, or earlier: the executor decides how many it runs
        per call (:meth:`trainer.executors.Executor.advance`; the same windows either
        way). Their stats in order."""
        return self.executor.advance(self, until)

    def update_window(self) -> UpdateStats:
        """One window through the executor's :meth:`~trainer.executors.Executor.window`,
        then the optimizer's step and the write (what every executor's windows equal)."""
        window = self.next_window()
        with parallel.single_threaded_blas():
            estimate = self.executor.window(self.estimator, window)
            estimate_norm = float(norm(estimate.gradient))
            info = estimate.info
            if self.diagnose is not None:
                info = {**info, **self.diagnose(window, estimate.gradient)}
            if math.isfinite(estimate.cost) and math.isfinite(estimate_norm):
                step, opt_state = self.optimizer.update(estimate.gradient, self.opt_state)
                update_norm = float(norm(step))
                if math.isfinite(update_norm):
                    self.opt_state = opt_state
                    self.chip.write(step)
                    return UpdateStats(estimate.cost, estimate_norm, update_norm, info)
        return UpdateStats(estimate.cost, estimate_norm, math.nan, info, skipped=True)

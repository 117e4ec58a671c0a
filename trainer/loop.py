"""The training loop: data stream + estimator + optimizer + hardware writes.

One :meth:`TrainingLoop.update` is one update window of ``tau_theta`` hardware
steps: the controller presents samples (each held ``tau_x`` steps), the estimator
probes the hardware, the optimizer turns the estimate into a step, and the step is
written to the devices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple

import numpy as np

from devsim.data import SampleStream
from devsim.hardware import Hardware
from devsim.params import Params, param
from trainer.base import Estimator, Window
from trainer.optim import Transform


@dataclass(frozen=True)
class Timescales(Params):
    """The MGD clocks, in hardware steps."""

    tau_x: int = param(1, ge=1)
    """Steps each input sample is held."""
    tau_theta: int = param(100, ge=1)
    """Steps per update window: parameters are written once per window."""


class UpdateStats(NamedTuple):
    """What one update window did."""

    cost: float
    estimate_norm: float
    update_norm: float
    info: Mapping[str, float] = MappingProxyType({})
    """The estimator's extra diagnostic scalars for this window."""
    skipped: bool = False
    """The cost, the estimate or the step was not finite, so nothing was written."""


class TrainingLoop:
    """Drives one hardware through update windows."""

    def __init__(self, hardware: Hardware, x: np.ndarray, y: np.ndarray,
                 estimator: Estimator, optimizer: Transform, timescales: Timescales,
                 rng: np.random.Generator):
        self.hardware, self.x, self.y = hardware, x, y
        self.estimator, self.optimizer, self.timescales = estimator, optimizer, timescales
        self.stream = SampleStream(len(x), timescales.tau_x, rng)
        self.opt_state = optimizer.init(np.zeros(hardware.n_params))

    def update(self) -> UpdateStats:
        """Run one window and write its update, unless something in it is not finite."""
        idx, new = self.stream.next(self.timescales.tau_theta)
        estimate = self.estimator.estimate(self.hardware, Window(self.x[idx], self.y[idx], new))
        estimate_norm = float(np.linalg.norm(estimate.gradient))
        if math.isfinite(estimate.cost) and math.isfinite(estimate_norm):
            step, opt_state = self.optimizer.update(estimate.gradient, self.opt_state)
            update_norm = float(np.linalg.norm(step))
            if math.isfinite(update_norm):
                self.opt_state = opt_state
                self.hardware.write(step)
                return UpdateStats(estimate.cost, estimate_norm, update_norm, estimate.info)
        return UpdateStats(estimate.cost, estimate_norm, math.nan, estimate.info, skipped=True)

"""Reference backpropagation: OUTSIDE THE RULE, a baseline for experiments only.

It takes exact gradients from the ideal float twin of the network
(:meth:`devsim.hardware.Hardware.reference`), which no physical chip offers. Use it
to know what accuracy a network of this shape can reach, never as a hardware method.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainer.base import Estimate, Estimator, EstimatorParams, Window


@dataclass(frozen=True)
class BackpropParams(EstimatorParams, kind="backprop"):
    """Exact minibatch gradients of the ideal model (baseline, not a hardware method)."""

    def build(self, hardware, rng):
        return Backprop()


class Backprop(Estimator):
    """Mean gradient over the window's samples from the reference model."""

    def estimate(self, hardware, window: Window) -> Estimate:
        costs = hardware.cost(window.x, window.y)
        model = hardware.reference()
        gradient = model.gradient(hardware.read_params(), window.x, window.y)
        return Estimate(gradient, float(costs.mean()))

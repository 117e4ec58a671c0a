"""Reference backpropagation: OUTSIDE THE RULE, a baseline for experiments only.

It takes exact gradients from the ideal float twin of the network
(:meth:`devsim.hardware.Hardware.reference`), which no physical chip offers. Use it
to know what accuracy a network of this shape can reach, never as a hardware method.
On a chip with decorrelation matrices (``network.decorrelation: true``) the gradient
is taken through them, and ``decorrelation_lr`` > 0 trains them by the same local
rule as the perturbative estimators: decorrelated BP (DBP) of Dalm et al.
"""
from __future__ import annotations

from dataclasses import dataclass

from devsim.params import param
from trainer.base import Estimate, Estimator, EstimatorParams, Footprint, Window
from trainer.decorrelation import check_decorrelation, decorrelate


@dataclass(frozen=True)
class BackpropParams(EstimatorParams, kind="backprop"):
    """Exact minibatch gradients of the ideal model (baseline, not a hardware method)."""

    decorrelation_lr: float = param(0.0, ge=0.0)
    """Step alpha of the decorrelation rule R <- R - alpha offdiag(<x x^T>) R (0: off)."""

    def build(self, hardware, rng):
        check_decorrelation(hardware, self.decorrelation_lr)
        return Backprop(self.decorrelation_lr)

    def footprint(self, n_layers):
        """int8-aware backpropagation on every layer."""
        return Footprint(("bp",) * n_layers)


class Backprop(Estimator):
    """Mean gradient over the window's samples from the reference model."""

    def __init__(self, decorrelation_lr: float = 0.0):
        self.decorrelation_lr = decorrelation_lr

    def estimate(self, hardware, window: Window) -> Estimate:
        probe = hardware.probe(window.x, window.y, local=self.decorrelation_lr > 0.0)
        model = hardware.reference()
        gradient = model.gradient(hardware.read_params(), window.x, window.y)
        decorrelate(hardware, probe.inputs, self.decorrelation_lr)
        return Estimate(gradient, float(probe.costs.mean()))

"""Reference backpropagation: OUTSIDE THE RULE, a baseline for experiments only.

It takes exact gradients from the ideal float twin of the network
(:meth:`devsim.bench.Bench.reference`), which no physical chip offers: it is the one
estimator handed the experimenter's bench. Use it
to know what accuracy a network of this shape can reach, never as a hardware method.
On a chip with decorrelation matrices (``network.decorrelation: true``) the gradient
is taken through them, and ``decorrelation_lr`` > 0 trains them by the same local
rule as the perturbative estimators: decorrelated BP (DBP) of Dalm et al.
"""
from __future__ import annotations

from dataclasses import dataclass

from devsim.params import param
from devsim.hardware import Request
from trainer.base import Estimate, Estimator, EstimatorParams, Footprint, Window
from trainer.decorrelation import check_decorrelation, decorrelate
from trainer.exact_chip import ExactChip
from trainer.kernels import mean


@dataclass(frozen=True)
class BackpropParams(EstimatorParams, kind="backprop"):
    """Exact minibatch gradients of the ideal model (baseline, not a hardware method)."""

    decorrelation_lr: float = param(0.0, ge=0.0)
    """Step alpha of the decorrelation rule R <- R - alpha offdiag(<x x^T>) R (0: off)."""

    outside_the_rule = True

    def build(self, setup):
        check_decorrelation(setup.chip, self.decorrelation_lr)
        return Backprop(setup.bench, self.decorrelation_lr)

    def footprint(self, n_layers):
        """int8-aware backpropagation on every layer."""
        return Footprint(("bp",) * n_layers)


class Backprop(Estimator):
    """Mean gradient over the window's samples from the bench's reference model.

    On a chip of exact float layers (:class:`~trainer.exact_chip.ExactChip`: the ideal
    device) without decorrelation matrices or device neurons the reference model is the
    chip itself: the gradient then comes from the chip's own recorded pass of the window
    (one forward pass, not two), with the kernel the compiled executor runs, so that
    both give the same bits."""

    def __init__(self, bench, decorrelation_lr: float):
        self.bench, self.decorrelation_lr = bench, decorrelation_lr
        exact = not ExactChip.refusals(bench) and not ExactChip.backprop_refusals(bench)
        self._exact = ExactChip(bench) if exact else None

    def window_steps(self, window):
        """One inference per sample (the costs the trace reports)."""
        return len(window.x)

    def rounds(self, window: Window):
        record = self._exact is not None or self.decorrelation_lr > 0.0
        result = yield Request(window.x, window.y, record=record)
        if self._exact is not None:
            gradient = self._exact.backprop(window.x, window.y, result)
        else:
            gradient = self.bench.reference().gradient(self.bench.read_params(), window.x,
                                                       window.y)
        decorrelate(self.bench.chip, result.inputs, self.decorrelation_lr)
        return Estimate(gradient, mean(result.costs))

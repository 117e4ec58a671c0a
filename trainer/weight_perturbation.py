"""Weight perturbation with i.i.d. per-parameter perturbations (Werfel, Xie & Seung).

Each row n of the window is presented twice: with the parameters as they are and
with every parameter moved by its own psi_n (i.i.d., standard deviation sigma per
entry). The estimate is

    grad = mean_n (C_n(theta + psi_n) - C_n(theta)) psi_n / sigma^2,

the one-sided difference of the analytic WP learning curves in :mod:`trainer.theory`
(unbiased for the gradient up to terms cubic in sigma). Unlike MGD's ``weights``
mode, the perturbation size is set per entry, not as the norm of the whole vector,
and Gaussian perturbations are available, so the theory applies as it stands.
Hardware cost: 2 B steps per update of B rows, run as one request.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devsim import crng
from devsim.params import ParamError, param
from devsim.hardware import Request
from trainer.base import Estimate, Estimator, EstimatorParams, Window
from trainer.kernels import mean, weighted_rows
from trainer.perturbations import rademacher_codes


@dataclass(frozen=True)
class WPParams(EstimatorParams, kind="wp"):
    """Weight perturbation: one-sided cost differences times i.i.d. parameter perturbations."""

    perturbation: str = param("gaussian", choices=("gaussian", "rademacher"))
    """Law of each parameter's perturbation: ``gaussian`` from the run's NumPy stream;
    ``rademacher`` +-sigma signs from the counter-based stream (row r's sign of parameter
    k is sign r P + k, as MGD's ``code`` perturbations), which compiled windows make where
    they use them instead of drawing and storing them (:mod:`trainer.compiled`)."""
    sigma: float = param(0.01, gt=0.0)
    """Standard deviation of each parameter's perturbation (rademacher: +-sigma)."""

    def build(self, setup):
        if "weights" not in setup.chip.capabilities.ports:
            raise ParamError(("type",), "this hardware offers no 'weights' port")
        return WeightPerturbation(self, setup.chip.n_params, setup.rng)


class WeightPerturbation(Estimator):
    """Clean and perturbed pass per row, in one request; the mean of dC psi / sigma^2."""

    def __init__(self, params: WPParams, n_params: int, rng: np.random.Generator):
        self.params, self.n_params, self.rng = params, n_params, rng
        self.signed = params.perturbation == "rademacher"
        self.key = crng.stream_key_np(int(rng.integers(2 ** 63)), 0) if self.signed else None
        self.rows = 0
        """Rows perturbed so far: the next row's signs start at sign ``rows * n_params``."""

    def draw(self, steps: int, out: np.ndarray | None = None) -> np.ndarray:
        """The next ``steps`` rows' perturbations (steps, n_params), into ``out`` where
        given."""
        out = np.empty((steps, self.n_params)) if out is None else out
        if self.signed:
            rademacher_codes(self.key, self.rows, 1, self.params.sigma, out)
        else:
            self.rng.standard_normal(out=out)
            out *= self.params.sigma
        self.rows += steps
        return out

    def scale(self, batch: int) -> float:
        """What the correlation of a window of ``batch`` rows is divided by."""
        return self.params.sigma ** 2 * batch

    def window_steps(self, window):
        """Two probes per row: as the parameters are, and moved."""
        return 2 * len(window.x)

    def rounds(self, window: Window):
        batch = len(window.x)
        psi = self.draw(batch)
        result = yield Request(np.tile(window.x, (2, 1)), np.tile(window.y, (2, 1)),
                               weight_perturbation=np.concatenate([np.zeros_like(psi), psi]))
        base, moved = result.costs[:batch], result.costs[batch:]
        gradient = np.empty(self.n_params)
        weighted_rows(psi, moved - base, gradient)
        gradient /= self.scale(batch)
        return Estimate(gradient, mean(base))

"""Multiplexed gradient descent (McCaughan, Oripov, Buckley et al., NIST).

Each hardware step presents the current input, applies the perturbation
theta~(t) and reads the cost C. The cost change C~ = C - C0 against the unperturbed
baseline (re-measured whenever the input or the parameters change: discrete mode)
is correlated with each channel's own perturbation, G += C~ theta~ / eps^2
(homodyne detection), and the integrated G is handed to the optimizer at the end
of every ``tau_theta``-step window.

Perturbation: code multiplexing with random +-eps/sqrt(K) codes, K the number of
perturbed channels, so eps is the L2 norm of the whole perturbation vector. Codes
are regenerated from (seed, code index) with the counter-based generator rather
than stored. In node mode the K = n_nodes pre-activations are perturbed and each
weight forms its estimate locally from its node's estimate and its own input.

Since E[C~ theta~_i] = (eps^2/K) dC/dtheta_i, the raw integrated estimate is about
(T/K) grad C over a T-step window; ``normalize: true`` multiplies by K/T so the
estimate is about grad C and learning rates transfer across network sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devsim import crng
from devsim.params import ParamError, param
from trainer.base import Estimate, Estimator, EstimatorParams, Window, layer_gradient
from trainer.perturbations import rademacher_codes


@dataclass(frozen=True)
class MGDParams(EstimatorParams, kind="mgd"):
    """Multiplexed gradient descent with code-multiplexed (random +-) perturbations."""

    target: str = param("nodes", choices=("nodes", "weights"))
    """Perturb node pre-activations (K = neurons) or parameters (K = parameters)."""
    epsilon: float = param(0.1, gt=0.0)
    """L2 norm of the whole perturbation vector (each channel gets +-eps/sqrt(K))."""
    tau_p: int = param(1, ge=1)
    """Hardware steps each perturbation code is held."""
    normalize: bool = True
    """Scale the integrated estimate by K/T so it estimates grad C itself."""

    def build(self, hardware, rng):
        if self.target not in hardware.supports:
            raise ParamError(("target",), f"this hardware offers no {self.target!r} port")
        return MGD(self, hardware, int(rng.integers(2 ** 63)))


class MGD(Estimator):
    """Discrete-mode MGD over windows of steps with fixed parameters."""

    def __init__(self, params: MGDParams, hardware, seed: int):
        self.params = params
        self.channels = hardware.n_nodes if params.target == "nodes" else hardware.n_params
        self.amplitude = params.epsilon / np.sqrt(self.channels)
        self._key = crng.stream_key_np(seed, 0)
        self._step = 0  # perturbation clock: steps taken so far

    def codes(self, first_step: int, steps: int) -> np.ndarray:
        """Perturbations (steps, K) for steps first_step.., each code held tau_p steps."""
        out = np.empty((steps, self.channels))
        rademacher_codes(self._key, first_step, self.params.tau_p, self.amplitude, out)
        return out

    def estimate(self, hardware, window: Window) -> Estimate:
        steps = len(window.x)
        perturbation = self.codes(self._step, steps)
        self._step += steps
        # Baseline C0: once per presented sample, and again at the window start
        # because the parameters were just written.
        starts = window.new_sample.copy()
        starts[0] = True
        first = np.flatnonzero(starts)
        baseline = hardware.cost(window.x[first], window.y[first])[np.cumsum(starts) - 1]
        if self.params.target == "nodes":
            probe = hardware.probe(window.x, window.y, node_perturbation=perturbation)
            costs = probe.costs
            node_signal = (costs - baseline)[:, None] * perturbation / self.params.epsilon ** 2
            gradient = layer_gradient(hardware, node_signal, probe.inputs)
        else:
            costs = hardware.cost(window.x, window.y, weight_perturbation=perturbation)
            gradient = perturbation.T @ (costs - baseline) / self.params.epsilon ** 2
        if self.params.normalize:
            gradient *= self.channels / steps
        return Estimate(gradient, float(baseline.mean()))

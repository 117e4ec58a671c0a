"""Multiplexed gradient descent (McCaughan, Oripov, Buckley et al., NIST).

Each hardware step presents the current input, applies the perturbation
theta~(t) (a new code every ``tau_p`` steps of the loop's timescales, of any type in
:mod:`trainer.perturbations`) and reads the cost C. The cost change C~ is
correlated with each channel's own perturbation, G += C~ theta~ / eps^2 (homodyne
detection), and the integrated G is handed to the optimizer once per window.

Cost change (``mode``):

- ``discrete``: C~ = C - C0, the baseline C0 re-measured whenever the input or the
  parameters change (those unperturbed inferences are hardware steps too);
- ``analog``: no baseline; C~ is C through a first-order high-pass filter,
  C~_n = a (C~_{n-1} + C_n - C_{n-1}), a = tau_hp / (tau_hp + 1), reset to 0 when
  a new input is presented (cpu/wmgd.jl). It needs ``tau_x`` well above ``tau_hp``.

Integration (``integrator``): ``window`` sums G over the window; ``lowpass`` keeps
a leaky integral with time constant ``tau_lp`` steps across windows (the analog
integrator: with ``tau_theta: 1`` the parameters follow it every step).

In node mode the K = n_nodes pre-activations are perturbed and each weight forms
its estimate locally from its node's estimate and its own input at the same step.

Since E[C~ theta~_i] = (eps^2/K) dC/dtheta_i, a T-step window integrates about
(T/K) grad C (the low-pass integral about grad C / K); ``normalize: true`` rescales
by K/T (by K) so the estimate is about grad C and learning rates transfer across
network sizes.

Controller-side imperfections: Gaussian read-out noise on every cost (``cost_noise``),
clipping of C~ (``cost_change_clip``). A non-finite C~ is not hidden: it makes the
window's estimate non-finite, the training loop skips that window and the trace counts
it (the low-pass integral keeps its value from before the window).

A window is one request: its T perturbed probes, followed by the baseline probes
(discrete mode) with no perturbation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from devsim.dense import column_sums
from devsim.hardware import Request
from devsim.params import ParamError, param
from trainer.base import Estimate, Estimator, EstimatorParams, Window, layer_gradient
from trainer.kernels import mean
from trainer.perturbations import KINDS, Perturbation


@dataclass(frozen=True)
class MGDParams(EstimatorParams, kind="mgd"):
    """Multiplexed gradient descent: perturb, read costs, correlate, integrate."""

    target: str = param("nodes", choices=("nodes", "weights"))
    """Perturb node pre-activations (K = neurons) or parameters (K = parameters)."""
    perturbation: str = param("code", choices=KINDS)
    """Perturbation type: random +- ``code``, sparse ``ternary``, ``walsh`` codes,
    ``frequency`` (sinusoids) or ``time`` (one channel at a time)."""
    sparsity: float = param(0.5, ge=0.0, lt=1.0)
    """Fraction of zeros in ``ternary`` codes (ignored by the other types)."""
    epsilon: float = param(0.1, gt=0.0)
    """RMS L2 norm of the whole perturbation vector (eps/sqrt(K) RMS per channel)."""
    mode: str = param("discrete", choices=("discrete", "analog"))
    """Cost change: ``discrete`` (C - C0, baseline re-measured) or ``analog`` (high-pass)."""
    tau_hp: float = param(1.6, gt=0.0)
    """Time constant of the analog high-pass filter on C, in hardware steps."""
    integrator: str = param("window", choices=("window", "lowpass"))
    """Integrate G over each update window, or with a leaky (low-pass) integral."""
    tau_lp: float = param(100.0, gt=0.0)
    """Time constant of the ``lowpass`` integrator, in hardware steps."""
    normalize: bool = True
    """Rescale the integrated estimate by K/T (``lowpass``: by K) so it estimates grad C."""
    cost_noise: float = param(0.0, ge=0.0)
    """Standard deviation of Gaussian noise on every cost read-out (sigma_C)."""
    cost_change_clip: float = param(0.0, ge=0.0)
    """Clip the cost change C~ to +-this value (0: no clipping)."""

    def build(self, setup):
        if self.target not in setup.chip.capabilities.ports:
            raise ParamError(("target",), f"this hardware offers no {self.target!r} port")
        return MGD(self, setup.chip, setup.timescales.tau_p, int(setup.rng.integers(2 ** 63)))


@njit(cache=True)
def highpass(costs, reset, a, state):
    """First-order high-pass of ``costs`` (T,), reset to 0 where ``reset``; ``state``
    = [previous C, previous output] is carried in place across calls."""
    out = np.empty_like(costs)
    prev_c, prev_out = state[0], state[1]
    for t in range(costs.shape[0]):
        if reset[t]:
            prev_out = 0.0
        else:
            prev_out = a * (prev_out + costs[t] - prev_c)
        prev_c = costs[t]
        out[t] = prev_out
    state[0], state[1] = prev_c, prev_out
    return out


def highpass_np(costs, reset, a, state):
    """Plain twin of :func:`highpass`: the filter's difference equation step by step."""
    out = np.zeros(len(costs))
    for t in range(len(costs)):
        if not reset[t]:
            out[t] = a * (state[1] + costs[t] - state[0])
        state[0], state[1] = costs[t], out[t]
    return out


def baseline_starts(window: Window) -> np.ndarray:
    """The steps of a window whose baseline C0 discrete MGD measures: each newly
    presented sample's first step, and the window's first (the parameters were just
    written)."""
    starts = window.new_sample.copy()
    starts[0] = True
    return starts


class MGD(Estimator):
    """MGD over windows of steps with fixed parameters (chip in the loop)."""

    def __init__(self, params: MGDParams, chip, tau_p: int, seed: int):
        self.params, self.tau_p = params, tau_p
        self.chip = chip
        self.channels = chip.n_nodes if params.target == "nodes" else chip.n_params
        self.perturbation = Perturbation(params.perturbation, self.channels, params.epsilon,
                                         seed, params.sparsity)
        self._noise = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.step = 0  # perturbation clock: steps taken so far
        self._filter = np.array([0.0, 0.0])  # high-pass state: previous C and C~
        self._integral = np.zeros(chip.n_params)  # low-pass integrator state

    def window_steps(self, window):
        """T perturbed probes plus, in discrete mode, one baseline per new sample and
        one at the window's start."""
        extra = int(baseline_starts(window).sum()) if self.params.mode == "discrete" else 0
        return len(window.x) + extra

    def _read(self, costs: np.ndarray) -> np.ndarray:
        if self.params.cost_noise:
            costs = costs + self.params.cost_noise * self._noise.standard_normal(len(costs))
        return costs

    def rounds(self, window: Window):
        p = self.params
        steps = len(window.x)
        perturbation = self.perturbation.at_steps(self.step, steps, self.tau_p)
        self.step += steps
        x, y = window.x, window.y
        if p.mode == "discrete":
            starts = baseline_starts(window)
            first = np.flatnonzero(starts)
            x, y = np.concatenate([x, x[first]]), np.concatenate([y, y[first]])
            pad = np.zeros((len(first), self.channels))
        port = np.concatenate([perturbation, pad]) if p.mode == "discrete" else perturbation
        if p.target == "nodes":
            result = yield Request(x, y, node_perturbation=port, record=True)
        else:
            result = yield Request(x, y, weight_perturbation=port)
        costs = self._read(result.costs[:steps])
        if p.mode == "discrete":
            # Baseline C0: once per presented sample, and again at the window start
            # because the parameters were just written.
            baseline = self._read(result.costs[steps:])
            change = costs - baseline[np.cumsum(starts) - 1]
            mean_cost = float(mean(baseline))
        else:
            change = highpass(costs, window.new_sample, p.tau_hp / (p.tau_hp + 1.0),
                              self._filter)
            mean_cost = float(mean(costs))
        if p.cost_change_clip:
            change = np.clip(change, -p.cost_change_clip, p.cost_change_clip)
        if p.integrator == "window":
            weights, decay, scale = np.ones(steps), 0.0, self.channels / steps
        else:
            beta = p.tau_lp / (p.tau_lp + 1.0)
            weights = (1.0 - beta) * beta ** np.arange(steps - 1, -1, -1.0)
            decay, scale = beta ** steps, float(self.channels)
        signal = (weights * change)[:, None] * perturbation / p.epsilon ** 2
        if p.target == "nodes":
            gradient = layer_gradient(self.chip, signal,
                                      [h[:steps] for h in result.inputs])
        else:
            gradient = np.empty(signal.shape[1])
            column_sums(signal, gradient)
        if p.integrator == "lowpass":
            gradient = decay * self._integral + gradient
            if np.isfinite(gradient).all():
                self._integral = gradient.copy()
        if p.normalize:
            gradient = gradient * scale
        return Estimate(gradient, mean_cost)

"""Multiplexed gradient descent (McCaughan, Oripov, Buckley et al., NIST).

Each hardware step presents the current input, applies the perturbation
theta~(t) (a new code every ``tau_p`` steps, of any type in
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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from devsim.insitu import OnChipMGD
from devsim.params import ParamError, param
from trainer.base import Estimate, Estimator, EstimatorParams, Window, layer_gradient
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
    tau_p: int = param(1, ge=1)
    """Hardware steps each perturbation code is held."""
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
    on_chip: bool = False
    """Run each window in the chip's own compiled MGD engine (:mod:`devsim.insitu`): the
    same estimate, several times faster; ideal devices, ``code`` perturbations, discrete
    mode and the window integrator only, without cost noise or clipping."""
    diagnose_cosine: bool = False
    """Log the cosine of each estimate to the ideal model's exact gradient (diagnostic
    only, outside the rule; costs a reference backward pass per window)."""

    def validate(self):
        if self.on_chip:
            for name, plain in (("perturbation", "code"), ("mode", "discrete"),
                                ("integrator", "window"), ("cost_noise", 0.0),
                                ("cost_change_clip", 0.0)):
                if getattr(self, name) != plain:
                    raise ParamError(("on_chip",), f"the on-chip engine needs {name}: "
                                                   f"{plain}, got {getattr(self, name)!r}")

    def build(self, hardware, rng):
        if self.target not in hardware.supports:
            raise ParamError(("target",), f"this hardware offers no {self.target!r} port")
        return MGD(self, hardware, int(rng.integers(2 ** 63)))

    def diagnostics(self) -> tuple[str, ...]:
        return ("cosine",) if self.diagnose_cosine else ()


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


class MGD(Estimator):
    """MGD over windows of steps with fixed parameters (chip in the loop)."""

    def __init__(self, params: MGDParams, hardware, seed: int):
        self.params = params
        self.channels = hardware.n_nodes if params.target == "nodes" else hardware.n_params
        self.perturbation = Perturbation(params.perturbation, self.channels, params.epsilon,
                                         seed, params.sparsity)
        self._noise = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self._step = 0  # perturbation clock: steps taken so far
        self._filter = np.array([0.0, 0.0])  # high-pass state: previous C and C~
        self._integral = np.zeros(hardware.n_params)  # low-pass integrator state
        self._engine = None
        if params.on_chip:
            try:
                self._engine = OnChipMGD(hardware, target=params.target,
                                         epsilon=params.epsilon, tau_p=params.tau_p,
                                         seed=seed, normalize=params.normalize)
            except ValueError as exc:
                raise ParamError(("on_chip",), str(exc)) from None

    def _read(self, costs: np.ndarray) -> np.ndarray:
        if self.params.cost_noise:
            costs = costs + self.params.cost_noise * self._noise.standard_normal(len(costs))
        return costs

    def estimate(self, hardware, window: Window) -> Estimate:
        p = self.params
        if self._engine is not None:
            gradient, cost = self._engine.estimate(window.x, window.y, window.new_sample)
            return Estimate(gradient, cost, self._diagnose(hardware, window, gradient))
        steps = len(window.x)
        perturbation = self.perturbation.at_steps(self._step, steps, p.tau_p)
        self._step += steps
        if p.target == "nodes":
            probe = hardware.probe(window.x, window.y, node_perturbation=perturbation)
            costs, inputs = self._read(probe.costs), probe.inputs
        else:
            costs = self._read(hardware.cost(window.x, window.y,
                                             weight_perturbation=perturbation))
        if p.mode == "discrete":
            # Baseline C0: once per presented sample, and again at the window start
            # because the parameters were just written.
            starts = window.new_sample.copy()
            starts[0] = True
            first = np.flatnonzero(starts)
            baseline = self._read(hardware.cost(window.x[first], window.y[first]))
            change = costs - baseline[np.cumsum(starts) - 1]
            mean_cost = float(baseline.mean())
        else:
            change = highpass(costs, window.new_sample, p.tau_hp / (p.tau_hp + 1.0),
                              self._filter)
            mean_cost = float(costs.mean())
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
            gradient = layer_gradient(hardware, signal, inputs)
        else:
            gradient = signal.sum(axis=0)
        if p.integrator == "lowpass":
            gradient = decay * self._integral + gradient
            if np.isfinite(gradient).all():
                self._integral = gradient.copy()
        if p.normalize:
            gradient = gradient * scale
        return Estimate(gradient, mean_cost, self._diagnose(hardware, window, gradient))

    def _diagnose(self, hardware, window: Window, gradient: np.ndarray) -> dict:
        if not self.params.diagnose_cosine:
            return {}
        return {"cosine": _cosine(gradient, hardware.reference().gradient(
            hardware.read_params(), window.x, window.y))}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0

"""Node perturbation in the forms of Dalm, van Gerven & Ahmad (arXiv 2310.00965).

Every update window is a minibatch: its B rows are presented in (at least) two
forward passes, and noise acts on the pre-activations of every layer, output
included. From the per-sample cost differences dC_n = C_n(pass 2) - C_n(pass 1)
and the signals a synapse has locally (its input x_{l-1} from pass 1, its node's
pre-activations) each variant forms, for every layer,

- ``np``  (classic): grad W_l = mean_n (dC_n / v) eps_{l,n} x_{l-1,n}^T, with the
  *injected* perturbation eps (less its mean) and v its variance per entry;
- ``anp`` (activity-based): grad W_l = mean_n dC_n N da_{l,n} x_{l-1,n}^T / sum_l |da_{l,n}|^2,
  with the *measured* pre-activation change da (which carries noise propagated from
  earlier layers) and N the number of perturbed nodes. dC da / |da|^2 is the
  directional derivative along da times its direction, and N restores the magnitude
  (E[u u^T] = I / N for a random unit vector u). It never needs the noise itself, so
  it also works with the chip's own, unseen noise and with two noisy passes;
- ``inp`` (iterative): one perturbed pass per layer l, noise in that layer only, and
  grad W_l = mean_n dC^(l)_n n_l da_{l,n} x_{l-1,n}^T / |da_{l,n}|^2 (n_l its width).

Biases take the same formulas without the x factor. For a single linear layer NP and
ANP are unbiased for the gradient of the mean cost up to terms cubic in the noise;
with several layers they follow it to first order in the noise.

Options shared by all three: ``perturbation`` (gaussian, rademacher, bernoulli with
offset, all injected by the controller, or ``device``: the chip's intrinsic node noise
through ``Hardware.probe(noisy=True)``, which the controller never sees and which
therefore only ANP can use), ``passes`` (a clean and a noisy pass, or two noisy ones),
``draws`` (noise draws averaged per update; a clean pass is measured once and shared)
and ``decorrelation_lr`` (step of the input decorrelation rule, see
:mod:`trainer.decorrelation`; DNP, DANP, DINP).

ANP and INP form nothing where a probe's activity did not change (da = 0): with two noisy
passes of discrete noise (rademacher, bernoulli) that happens with probability q^N (q
the chance that one node draws the same value twice, N the nodes perturbed), so their
estimates average to (1 - q^N) times the gradient, 12.5 % short on three rademacher
nodes and negligible on wide layers (the estimator contract table checks that factor).

Noise of nonzero mean (bernoulli with offset, a telegraph read-out level) shifts the
operating point of a noisy pass. NP subtracts the known mean. ANP and INP cannot, so with
a clean pass the mean enters da and biases the estimate along it; with two noisy passes
it cancels in every difference, which is why noise-based learning on a device's own
noise uses ``noisy_noisy``. The chip's own node noise acts only with ``perturbation:
device``; with injected perturbations every pass runs with ``noisy=False``.

Hardware cost per update: B (1 + draws) steps with a clean pass, 2 B draws with two
noisy passes; INP multiplies the noisy passes by the number of layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from devsim.hardware import Request, Result
from devsim.params import ParamError, param
from trainer.base import Estimate, Estimator, EstimatorParams, Window, layer_gradient
from trainer.decorrelation import check_decorrelation, decorrelate
from trainer.kernels import mean, row_squares


PERTURBATIONS = ("gaussian", "rademacher", "bernoulli", "device")
"""Perturbation laws: injected by the controller, or the chip's own noise."""


@dataclass(frozen=True)
class NodePerturbationParams(EstimatorParams):
    """Options shared by the node-perturbation estimators (``np``, ``anp``, ``inp``)."""

    perturbation: str = param("gaussian", choices=PERTURBATIONS)
    """Law of the injected noise (``device``: the chip's own node noise, unseen)."""
    sigma: float = param(0.01, gt=0.0)
    """Scale of the injected noise: standard deviation (gaussian), +-sigma (rademacher),
    or height of a '1' (bernoulli); pre-activation units."""
    p: float = param(0.5, gt=0.0, lt=1.0)
    """Probability of a '1' (bernoulli only)."""
    offset: float = 0.0
    """Constant added to every bernoulli draw (pre-activation units)."""
    passes: str = param("clean_noisy", choices=("clean_noisy", "noisy_noisy"))
    """A clean and a noisy pass, or two independently noisy passes, per draw."""
    draws: int = param(1, ge=1)
    """Noise draws per update, their estimates averaged."""
    decorrelation_lr: float = param(0.0, ge=0.0)
    """Step alpha of the decorrelation rule R <- R - alpha offdiag(<x x^T>) R (0: off)."""

    def validate(self):
        if self.perturbation == "device" and self.kind != "anp":
            raise ParamError(("perturbation",), f"{self.kind} cannot use the chip's own noise: "
                             "it needs the injected noise (np) or noise in one layer at a "
                             "time (inp); use anp")

    def build(self, setup):
        if self.perturbation == "device" and not setup.chip.capabilities.noisy_nodes:
            raise ParamError(("perturbation",), "'device' needs a chip with intrinsic node "
                             "noise (network.node_noise)")
        check_decorrelation(setup.chip, self.decorrelation_lr)
        return NodePerturbation(self, setup.chip, setup.rng)


@dataclass(frozen=True)
class NPParams(NodePerturbationParams, kind="np"):
    """Classic node perturbation: cost change times the injected noise."""


@dataclass(frozen=True)
class ANPParams(NodePerturbationParams, kind="anp"):
    """Activity-based node perturbation: cost change times the measured activity change."""


@dataclass(frozen=True)
class INPParams(NodePerturbationParams, kind="inp"):
    """Iterative node perturbation: one perturbed pass per layer."""


class Pass(NamedTuple):
    """One pass of a window's B probes: costs, each layer's input and pre-activation, and
    the injected noise (None for the chip's own, unseen noise, or a clean pass)."""

    costs: np.ndarray
    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]
    noise: np.ndarray | None


class NodePerturbation(Estimator):
    """NP, ANP or INP (by ``params.kind``) over minibatch windows."""

    def __init__(self, params: NodePerturbationParams, chip, rng: np.random.Generator):
        self.params = params
        self.rng = rng
        self.chip = chip
        self.offsets = chip.node_offsets
        self.n_nodes = chip.n_nodes
        self.node_layers = [layer for layer in range(len(chip.layer_shapes))
                            if self.offsets[layer + 1] > self.offsets[layer]]
        """The layers with nodes (pooling and flatten have none)."""
        if params.perturbation == "bernoulli":
            self.mean = params.offset + params.sigma * params.p
            self.variance = params.sigma ** 2 * params.p * (1.0 - params.p)
        else:
            self.mean, self.variance = 0.0, params.sigma ** 2

    def draw(self, steps: int, layer: int | None = None) -> np.ndarray:
        """Injected perturbations (steps, n_nodes); only layer ``layer``'s nodes if given."""
        p = self.params
        lo, hi = ((0, self.n_nodes) if layer is None
                  else (self.offsets[layer], self.offsets[layer + 1]))
        out = np.zeros((steps, self.n_nodes))
        shape = (steps, hi - lo)
        if p.perturbation == "gaussian":
            out[:, lo:hi] = p.sigma * self.rng.standard_normal(shape)
        elif p.perturbation == "rademacher":
            out[:, lo:hi] = p.sigma * (2.0 * self.rng.integers(0, 2, shape) - 1.0)
        else:
            out[:, lo:hi] = p.offset + p.sigma * (self.rng.random(shape) < p.p)
        return out

    def _pairs(self) -> list[tuple[int | None, ...]]:
        """The passes of every draw, as (first, second) pairs of the layer whose nodes a
        noisy pass perturbs (-1: all; None: a clean pass)."""
        p = self.params
        layers = self.node_layers if p.kind == "inp" else (-1,)
        first = (lambda layer: None) if p.passes == "clean_noisy" else (lambda layer: layer)
        return [(first(layer), layer) for _ in range(p.draws) for layer in layers]

    def window_steps(self, window):
        """B probes per pass: a shared clean pass (``clean_noisy``), then one noisy pass
        (two with ``noisy_noisy``) per draw and, for INP, per layer."""
        clean = self.params.passes == "clean_noisy"
        return len(window.x) * (int(clean) + len(self._pairs()) * (1 if clean else 2))

    def rounds(self, window: Window):
        p = self.params
        x, y, batch = window.x, window.y, len(window.x)
        pairs = self._pairs()
        clean_noisy = p.passes == "clean_noisy"
        noisy = [layer for pair in pairs for layer in pair if layer is not None]
        if p.perturbation == "device":  # the chip's own noise acts in whole passes
            passes = (_split((yield Request(x, y, record=True)), batch, [None])
                      if clean_noisy else [])
            result = yield Request(np.tile(x, (len(noisy), 1)), np.tile(y, (len(noisy), 1)),
                                   noisy=True, record=True)
            passes += _split(result, batch, [None] * len(noisy))
        else:  # one request: the clean pass, then every noisy pass in order
            noise = [self.draw(batch, None if layer < 0 else layer) for layer in noisy]
            stacked = ([np.zeros((batch, self.n_nodes))] if clean_noisy else []) + noise
            result = yield Request(np.tile(x, (len(stacked), 1)), np.tile(y, (len(stacked), 1)),
                                   node_perturbation=np.concatenate(stacked), record=True)
            passes = _split(result, batch, ([None] if clean_noisy else []) + noise)
        clean = passes.pop(0) if clean_noisy else None
        per_draw = len(self.node_layers) if p.kind == "inp" else 1
        total = 0.0
        for draw in range(p.draws):
            signal = np.zeros((batch, self.n_nodes))
            for k in range(draw * per_draw, (draw + 1) * per_draw):
                first, second = ((clean, passes[k]) if clean is not None
                                 else (passes[2 * k], passes[2 * k + 1]))
                if p.kind == "inp":
                    layer = pairs[k][1]
                    sl = slice(self.offsets[layer], self.offsets[layer + 1])
                    signal[:, sl] = self._activity_signal(
                        first, second,
                        second.preactivations[layer] - first.preactivations[layer])
                elif p.kind == "np":
                    signal = self._injected_signal(first, second)
                else:
                    signal = self._activity_signal(first, second,
                                                   _nodes(second) - _nodes(first))
            # Layer inputs from pass 1; in INP the last pair perturbs only the output
            # layer, so its first pass holds every layer's unperturbed input.
            total = total + layer_gradient(self.chip, signal, first.inputs)
        decorrelate(self.chip, first.inputs, p.decorrelation_lr)
        cost = mean((clean if clean is not None else passes[0]).costs)
        return Estimate(total / (p.draws * batch), float(cost))

    def _injected_signal(self, first: Pass, second: Pass) -> np.ndarray:
        """NP: dC (eps - E eps) / v, or dC (eps2 - eps1) / (2 v) for two noisy passes."""
        d_cost = second.costs - first.costs
        if first.noise is None:
            return d_cost[:, None] * (second.noise - self.mean) / self.variance
        return d_cost[:, None] * (second.noise - first.noise) / (2.0 * self.variance)

    @staticmethod
    def _activity_signal(first: Pass, second: Pass, d_act: np.ndarray) -> np.ndarray:
        """dC n da / |da|^2 per sample over the nodes in ``d_act`` (zero where da = 0)."""
        d_cost = second.costs - first.costs
        norm2 = np.empty(len(d_act))
        row_squares(d_act, norm2)
        scale = np.divide(d_cost * d_act.shape[1], norm2, out=np.zeros_like(norm2),
                          where=norm2 > 0.0)
        return scale[:, None] * d_act


def _split(result: Result, batch: int, noise: list) -> list[Pass]:
    """The passes of a request that stacked ``len(noise)`` passes of ``batch`` probes."""
    return [Pass(result.costs[k * batch:(k + 1) * batch],
                 [h[k * batch:(k + 1) * batch] for h in result.inputs],
                 [a[k * batch:(k + 1) * batch] for a in result.preactivations], n)
            for k, n in enumerate(noise)]


def _nodes(p: Pass) -> np.ndarray:
    """All pre-activations of a pass as one (T, n_nodes) array."""
    return np.concatenate(p.preactivations, axis=1)

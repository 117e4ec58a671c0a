"""Quantized zeroth-order estimation on an int8 chip (Zhao, Li, Young & Zhang, "Poor Man's
Training on MCUs", arXiv 2411.05873).

Every perturbation is a whole number of least significant bits (LSBs), so the
perturbed model is again a valid int8 model; the chip reports its LSBs
(``Hardware.capabilities.integer``) and nothing else about its arithmetic. Each trained layer is estimated on its own (layer-wise), from the
window's samples (the minibatch, B of them) and ``queries`` = n random directions:

- **weight perturbation**: integer Rademacher directions u in {-1, +1}^d on the
  layer's d int8 weights and int32 biases, ``mu_weight`` and ``mu_bias`` LSBs, drawn
  inside the chip's kernel from a counter-based key and regenerated here from the same
  key (:func:`weight_directions`), never stored. With the batch-mean cost L,
  forward differences give g_i = (1/n) sum_q [L(theta + mu u_q) - L(theta)] u_qi / mu_i,
  central differences [L(+) - L(-)] / 2 in place of the bracket.
- **node perturbation** (dimension reduction): integer Rademacher perturbations of
  ``mu_node`` LSBs on the layer's int8 outputs, per sample, on the units left active
  (a zero after the layer's non-linearity means a ReLU that is off; the output layer
  perturbs every unit). Only the suffix of the network runs, from the layer's cached
  input; the node estimate g_a (per sample) and the layer input x give the weight
  estimate locally, dW = mean_b g_a x^T, db = mean_b g_a (for a convolution, the chip's
  synapses also sum over the output positions a weight serves:
  :meth:`~devsim.hardware.Hardware.local_gradient`).

Layers before ``node_from`` use weight perturbation and the rest node perturbation
(the paper's mixture by depth); ``train_layers`` selects the layers trained at all
(sparse training); the others, and layers without parameters (pooling, flatten), get a
zero estimate and so are never written.

Scale correction: for Rademacher u, E[g] = grad L to first order and
E|g|^2 = |grad L|^2 (n + d - 1) / n, so c g with c = n / (n + d - 1) has the least
mean squared error among multiples of g; ``scale_correction`` applies it (d = the
layer's size for weights, a sample's active units for nodes).

The update: an estimate in LSB units g_int becomes the real gradient g_int / lsb, so
plain SGD on it writes -lr g_int / lsb^2 LSBs: the paper's quantization-aware scaling
(w <- w - lr g_w / s_w^2), rounded to whole LSBs and clamped to int8 / int32 by the
chip's own ``write``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devsim import crng
from devsim.params import ParamError, param
from devsim.hardware import Request, Seeded
from trainer.base import Estimate, Estimator, EstimatorParams, Footprint, Window


@dataclass(frozen=True)
class QZOParams(EstimatorParams, kind="qzo"):
    """Quantized zeroth-order estimates from integer (LSB) perturbations, layer by layer."""

    queries: int = param(10, ge=1)
    """Random directions n per trained layer and update window."""
    mu_weight: int = param(1, ge=1, le=254, unit="LSB")
    """Weight perturbation size (int8 weights: 254 LSBs span the whole range)."""
    mu_bias: int = param(100, ge=1, le=2 ** 30, unit="LSB")
    """Bias perturbation size (int32 biases have a much finer LSB than weights)."""
    mu_node: int = param(5, ge=1, le=255, unit="LSB")
    """Node (int8 layer output) perturbation size."""
    difference: str = param("forward", choices=("forward", "central"))
    """``forward``: L(+) - L(0), one extra pass per direction; ``central``: (L(+) - L(-)) / 2,
    two passes per direction."""
    scale_correction: bool = param(True, choices=(True, False))
    """Multiply each estimate by n / (n + d - 1), its least-mean-squared-error scale."""
    node_from: int | None = param(None, ge=0)
    """First layer estimated by node perturbation; earlier layers use weight perturbation
    (unset: weight perturbation everywhere; 0: node perturbation everywhere)."""
    train_layers: tuple[int, ...] = param(default_factory=tuple, ge=0)
    """Indices of the layers trained (sparse training); empty: every layer."""

    def layer_modes(self, n_layers: int) -> list[str | None]:
        """``"weights"``, ``"nodes"`` or None (frozen) for each of ``n_layers`` layers."""
        trained = set(self.train_layers) if self.train_layers else set(range(n_layers))
        return [None if i not in trained else
                "nodes" if self.node_from is not None and i >= self.node_from else "weights"
                for i in range(n_layers)]

    def footprint(self, n_layers: int) -> Footprint:
        """Each layer's method in the MCU memory accountant's terms, and the queries."""
        names = {"weights": "zo_weight", "nodes": "zo_node", None: None}
        return Footprint(tuple(names[m] for m in self.layer_modes(n_layers)), self.queries)

    def build(self, setup):
        chip = setup.chip
        if chip.capabilities.integer is None:
            raise ParamError(("type",), "qzo needs a chip with integer parameters and outputs "
                                 "(device type mcu on every layer)")
        n_layers, offsets = len(chip.layer_shapes), chip.param_offsets
        for i, layer in enumerate(self.train_layers):
            if layer >= n_layers:
                raise ParamError(("train_layers", i),
                                 f"the network has layers 0..{n_layers - 1}, got {layer}")
            if offsets[layer + 1] == offsets[layer]:
                raise ParamError(("train_layers", i),
                                 f"layer {layer} has no parameters to train")
        return QZO(self, chip, int(setup.rng.integers(2 ** 63)))


def weight_directions(key, first: int, count: int, shape: tuple[int, int]) -> np.ndarray:
    """(count, d) Rademacher directions first, ..., first + count - 1 of a layer of
    ``shape`` = (n_out, n_in): entry (p, i) is ``crng.sign(key, p * d + i)``, the sign
    the chip's seeded kernel draws for flat parameter i under direction p."""
    d = shape[0] * shape[1] + shape[0]
    index = (first + np.arange(count, dtype=np.uint64))[:, None] * np.uint64(d) \
        + np.arange(d, dtype=np.uint64)
    return crng.sign_np(key, index)


class QZO(Estimator):
    """Layer-wise quantized ZO over the samples of each update window: a clean pass,
    then for each trained layer the suffix of the network run from its recorded input."""

    def __init__(self, params: QZOParams, chip, seed: int):
        self.params, self.chip = params, chip
        self.shapes = chip.layer_shapes
        self.param_offsets, self.node_offsets = chip.param_offsets, chip.node_offsets
        self.modes = [mode if self.param_offsets[i + 1] > self.param_offsets[i] else None
                      for i, mode in enumerate(params.layer_modes(len(self.shapes)))]
        self.param_lsb = chip.capabilities.integer.param_lsb
        self.node_lsb = chip.capabilities.integer.node_lsb
        self.weight_key = crng.stream_key_np(seed, 0)
        self.node_key = crng.stream_key_np(seed, 1)
        self._directions = 0  # weight directions drawn so far
        self._node_draws = 0  # node signs drawn so far

    def window_steps(self, window):
        """A clean pass over the window's samples, then per trained layer one suffix run
        per sample and query (two with central differences)."""
        batch = int(baseline_samples(window).sum())
        trained = sum(mode is not None for mode in self.modes)
        per_query = 2 if self.params.difference == "central" else 1
        return batch + batch * self.params.queries * per_query * trained

    def rounds(self, window: Window):
        starts = baseline_samples(window)
        x, y = window.x[starts], window.y[starts]
        clean = yield Request(x, y, record=True)
        gradient = np.zeros(len(self.param_lsb))
        for layer, mode in enumerate(self.modes):
            if mode is None:
                continue
            span = slice(self.param_offsets[layer], self.param_offsets[layer + 1])
            if mode == "weights":
                g_int = yield from self._weight_estimate(layer, clean, y)
                gradient[span] = g_int / self.param_lsb[span]
            else:
                gradient[span] = yield from self._node_estimate(layer, clean, y)
        return Estimate(gradient, float(clean.costs.mean()))

    def _weight_estimate(self, layer, clean, y):
        """The layer's estimate in LSB units from n shared directions over the batch."""
        p, n = self.params, self.params.queries
        shape, inputs = self.shapes[layer], clean.inputs[layer]
        first = self._directions
        self._directions += n
        u = weight_directions(self.weight_key, first, n, shape)
        mu = np.where(np.arange(u.shape[1]) < shape[0] * shape[1], p.mu_weight, p.mu_bias)
        plus = (yield Request(inputs, y, start=layer, seeded=Seeded(
            self.weight_key, first, n, p.mu_weight, p.mu_bias))).costs
        if p.difference == "forward":
            change = (plus - clean.costs[:, None]).mean(axis=0)
        else:
            span = slice(self.param_offsets[layer], self.param_offsets[layer + 1])
            minus_step = -(u * mu) * self.param_lsb[span]  # whole LSBs: land exactly
            minus = (yield Request(np.repeat(inputs, n, axis=0), np.repeat(y, n, axis=0),
                                   weight_perturbation=np.tile(minus_step, (len(inputs), 1)),
                                   start=layer)).costs.reshape(-1, n)
            change = (plus - minus).mean(axis=0) / 2.0
        g = change @ u / (n * mu)
        if p.scale_correction:
            g *= n / (n + u.shape[1] - 1)
        return g

    def _node_estimate(self, layer, clean, y):
        """The layer's real-valued weight estimate from per-sample node estimates."""
        p, n = self.params, self.params.queries
        inputs = clean.inputs[layer]
        batch, n_out = clean.preactivations[layer].shape
        active = (clean.inputs[layer + 1] != 0 if layer + 1 < len(clean.inputs)
                  else np.ones((batch, n_out), dtype=bool))
        draws = batch * n * n_out
        u = crng.sign_np(self.node_key, self._node_draws + np.arange(draws, dtype=np.uint64))
        self._node_draws += draws
        u = u.reshape(batch, n, n_out) * active[:, None, :]
        lsb = self.node_lsb[self.node_offsets[layer]:self.node_offsets[layer + 1]]
        rows, targets = np.repeat(inputs, n, axis=0), np.repeat(y, n, axis=0)
        step = (p.mu_node * u * lsb).reshape(batch * n, n_out)  # whole LSBs: land exactly
        plus = (yield Request(rows, targets, node_perturbation=step, start=layer)).costs
        if p.difference == "forward":
            change = plus.reshape(batch, n) - clean.costs[:, None]
        else:
            minus = (yield Request(rows, targets, node_perturbation=-step,
                                   start=layer)).costs
            change = (plus - minus).reshape(batch, n) / 2.0
        g_nodes = np.einsum("bq,bqk->bk", change, u) / (n * p.mu_node)
        if p.scale_correction:
            g_nodes *= (n / (n + np.maximum(active.sum(axis=1), 1) - 1))[:, None]
        g_nodes /= lsb  # per real unit of the layer's output
        return self.chip.local_gradient(layer, g_nodes, inputs) / batch


def baseline_samples(window: Window) -> np.ndarray:
    """The steps whose samples form the batch: each newly presented sample once (and the
    window's first step)."""
    starts = window.new_sample.copy()
    starts[0] = True
    return starts

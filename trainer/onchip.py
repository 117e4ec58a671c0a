"""On-chip MGD: the chip generates its codes, correlates and updates by itself.

An executor of the ask/tell loop (:mod:`trainer.executors`) for MGD on ideal devices.

The MGD papers describe MGD both chip-in-the-loop (a controller perturbs, reads
costs and writes updates: :mod:`trainer.mgd`) and implemented on the chip, where
each synapse or neuron circuit holds its own code generator and integrator and only
the global cost change is broadcast. This module simulates the second form for the
ideal float device: a window of discrete-mode MGD with random +-codes runs in one
compiled call (the estimate goes to the controller's optimizer), or many windows with
plain SGD applied on chip, so no Python runs per step (nor per window, with SGD).

It computes what :class:`trainer.mgd.MGD` (``perturbation: code``, ``mode:
discrete``, ``integrator: window``) followed by :func:`trainer.optim.sgd` computes
through the ask/tell loop (to float rounding: its products and sums run in another
order), with the same codes (bit (c*K + k) of the
counter-based stream with the same key, as :mod:`trainer.perturbations` draws them),
the same sample order and the same counted steps: one per perturbed inference plus
one per baseline (each new sample, and each window start because the parameters were
just written). Two simulation shortcuts
are exact for a deterministic device: the first layer's unperturbed product W x is
shared by the baseline and the perturbed inference ((W + D) x = W x + D x), and a
baseline is evaluated for every step rather than once per held sample.

Scope: every layer on the ``ideal`` device with a bias, no decorrelation, activations
identity, sigmoid, tanh or relu, ``mse`` loss. Other devices (write noise,
quantization, read noise) and the other MGD options go through the controller path.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import crng
from devsim.activations import logistic_inplace
from trainer.base import Estimate, Window
from trainer.executors import Executor
from trainer.mgd import MGD

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")


@njit(cache=True)
def _activate(z, kind, work):
    """The activation ``kind`` (index into ACTIVATIONS) applied to z in place (``work``:
    scratch at least as long as z)."""
    flat = z.reshape(-1)
    if kind == 1:
        logistic_inplace(flat, work)
    elif kind == 2:
        for i in range(flat.shape[0]):
            flat[i] = np.tanh(flat[i])
    elif kind == 3:
        for i in range(flat.shape[0]):
            flat[i] = max(flat[i], 0.0)
    return z


@njit(cache=True)
def _mse_rows(h, y):
    t_count, n = h.shape
    out = np.empty(t_count)
    for t in range(t_count):
        acc = 0.0
        for j in range(n):
            d = h[t, j] - y[t, j]
            acc += d * d
        out[t] = acc / n
    return out


@njit(cache=True)
def _baseline(theta, shapes, offsets, acts, x):
    """Unperturbed outputs of the rows of x, and each layer's pre-activation."""
    h = x
    first = np.empty((x.shape[0], shapes[0, 0]))
    work = np.empty(x.shape[0] * shapes[:, 0].max())
    for l in range(shapes.shape[0]):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        w = theta[offsets[l]:offsets[l] + n_out * n_in].reshape((n_out, n_in))
        z = np.dot(h, w.T) + theta[offsets[l] + n_out * n_in:offsets[l + 1]]
        if l == 0:
            first[:] = z
        h = _activate(z, acts[l], work)
    return h, first


@njit(cache=True)
def _window_cost(cb, new):
    """Counted steps of a window (its perturbed inferences plus its baselines: the
    first step and each new sample) and the mean of those baselines' costs."""
    total, n_base = cb[0], 1
    for t in range(1, cb.shape[0]):
        if new[t]:
            total += cb[t]
            n_base += 1
    return cb.shape[0] + n_base, total / n_base


@njit(cache=True)
def node_window(theta, shapes, offsets, acts, xw, yw, new, key, first_step, tau_p,
                epsilon, scale, codes, grad):
    """One window of node-perturbation MGD on samples xw (T, n_in): writes the scaled
    integrated estimate into ``grad``; returns (counted steps, mean baseline cost)."""
    n_layers = shapes.shape[0]
    window = xw.shape[0]
    n_nodes = codes.shape[1]
    for t in range(window):
        c = (first_step + t) // tau_p
        if t > 0 and c == (first_step + t - 1) // tau_p:
            codes[t] = codes[t - 1]
        else:
            crng.fill_signs(key, c * n_nodes, codes[t])
            codes[t] *= epsilon / np.sqrt(n_nodes)
    hb, z0 = _baseline(theta, shapes, offsets, acts, xw)
    cb = _mse_rows(hb, yw)
    inputs = [xw]
    h = xw
    node = 0
    work = np.empty(window * n_nodes)
    for l in range(n_layers):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        if l == 0:
            z = z0
        else:
            wl = theta[offsets[l]:offsets[l] + n_out * n_in].reshape((n_out, n_in))
            z = np.dot(h, wl.T) + theta[offsets[l] + n_out * n_in:offsets[l + 1]]
        z += codes[:, node:node + n_out]
        h = _activate(z, acts[l], work)
        if l < n_layers - 1:
            inputs.append(h)
        node += n_out
    change = _mse_rows(h, yw) - cb
    signal = codes * (change * (scale / epsilon ** 2)).reshape((window, 1))
    node = 0
    for l in range(n_layers):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        s = np.ascontiguousarray(signal[:, node:node + n_out])
        o = offsets[l]
        grad[o:o + n_out * n_in] = np.dot(s.T, inputs[l]).reshape(-1)
        grad[o + n_out * n_in:offsets[l + 1]] = s.sum(axis=0)
        node += n_out
    return _window_cost(cb, new)


@njit(cache=True)
def weight_window(theta, shapes, offsets, acts, xw, yw, new, key, first_step, tau_p,
                  epsilon, scale, signs, grad):
    """One window of weight-perturbation MGD, like :func:`node_window`; the
    K = len(theta) parameter signs are drawn in the kernel once per code, never stored."""
    n_layers = shapes.shape[0]
    n_params = theta.shape[0]
    amplitude = epsilon / np.sqrt(n_params)
    width = 0
    for l in range(n_layers):
        width = max(width, shapes[l, 0], shapes[l, 1])
    h = np.empty(width)
    z, wh, work = np.empty(width), np.empty(width), np.empty(width)  # per-step scratch
    hb, z0 = _baseline(theta, shapes, offsets, acts, xw)
    cb = _mse_rows(hb, yw)
    grad[:] = 0.0
    held = 0.0  # summed cost change of the code in use
    code = -1
    for t in range(xw.shape[0]):
        c = (first_step + t) // tau_p
        if c != code:
            if code >= 0:
                for k in range(n_params):  # in place: no temporary of length P
                    grad[k] += held * signs[k]
            held, code = 0.0, c
            crng.fill_signs(key, c * n_params, signs)
        h[:shapes[0, 1]] = xw[t]
        for l in range(n_layers):
            n_out, n_in = shapes[l, 0], shapes[l, 1]
            o, ob = offsets[l], offsets[l] + n_out * n_in
            # (W + D) h = W h + D h: the first layer's W x is the baseline's
            np.dot(signs[o:ob].reshape((n_out, n_in)), h[:n_in], z[:n_out])
            if l == 0:
                for j in range(n_out):
                    z[j] = amplitude * (z[j] + signs[ob + j]) + z0[t, j]
            else:
                np.dot(theta[o:ob].reshape((n_out, n_in)), h[:n_in], wh[:n_out])
                for j in range(n_out):
                    z[j] = amplitude * (z[j] + signs[ob + j]) + (wh[j] + theta[ob + j])
            h[:n_out] = _activate(z[:n_out], acts[l], work)
        n_last = shapes[n_layers - 1, 0]
        cost = 0.0
        for j in range(n_last):
            d = h[j] - yw[t, j]
            cost += d * d
        held += cost / n_last - cb[t]
    for k in range(n_params):
        grad[k] = (grad[k] + held * signs[k]) * (amplitude * scale / epsilon ** 2)
    return _window_cost(cb, new)


@njit(cache=True)
def sgd_windows(node_mode, theta, shapes, offsets, acts, x, y, idx, new, window, key,
                first_step, tau_p, epsilon, scale, lr, costs):
    """len(idx) // window windows of MGD, each followed by theta -= lr * estimate, in
    place; ``costs[w]`` gets window w's mean baseline cost. Returns counted steps."""
    n_nodes = 0
    for l in range(shapes.shape[0]):
        n_nodes += shapes[l, 0]
    grad = np.empty_like(theta)
    codes = np.empty((window, n_nodes))
    signs = np.empty_like(theta)
    counted = 0
    for w in range(len(idx) // window):
        s0 = w * window
        rows = idx[s0:s0 + window]
        if node_mode:
            n, costs[w] = node_window(theta, shapes, offsets, acts, x[rows], y[rows],
                                      new[s0:s0 + window], key, first_step + s0, tau_p,
                                      epsilon, scale, codes, grad)
        else:
            n, costs[w] = weight_window(theta, shapes, offsets, acts, x[rows], y[rows],
                                        new[s0:s0 + window], key, first_step + s0, tau_p,
                                        epsilon, scale, signs, grad)
        theta -= lr * grad
        counted += n
    return counted


class OnChipMGD(Executor):
    """An executor of discrete-mode MGD with random +-codes: each window in the chip's
    compiled engine (the estimate goes to the loop's optimizer), the same estimate as
    the ask/tell loop up to float rounding; :meth:`train` runs many windows with plain
    SGD applied on chip. Both advance the chip's step count by the counted steps and the
    estimator's perturbation clock.

    It reads the weights from the bench (it simulates what the chip's circuits hold; the
    estimate it hands over is the one the estimator would form).
    """

    def __init__(self, bench, estimator: MGD):
        problems = self.refusals(bench, estimator)
        if problems:
            raise ValueError("on-chip MGD does not support " + "; ".join(problems) +
                             "; use the ask/tell loop (trainer.executors.Plain)")
        super().__init__(bench.chip)
        self.bench, self.estimator = bench, estimator
        chip, net = bench.chip, bench.network_params
        self.target = estimator.params.target
        self.epsilon, self.tau_p = estimator.params.epsilon, estimator.tau_p
        self.normalize = estimator.params.normalize
        self.channels = estimator.channels
        self.key = estimator.perturbation.key
        self.shapes = np.array(chip.layer_shapes, dtype=np.int64)
        self.offsets = np.asarray(chip.param_offsets, dtype=np.int64)
        self.acts = np.array([ACTIVATIONS.index(layer.activation.kind)
                              for layer in net.layers], dtype=np.int64)

    @staticmethod
    def refusals(bench, estimator) -> list[str]:
        """Why the engine cannot run this estimator on this chip (empty: it can)."""
        problems = []
        if not isinstance(estimator, MGD):
            return [f"estimator {type(estimator).__name__} (needs MGD)"]
        p = estimator.params
        for name, plain in (("perturbation", "code"), ("mode", "discrete"),
                            ("integrator", "window"), ("cost_noise", 0.0),
                            ("cost_change_clip", 0.0)):
            if getattr(p, name) != plain:
                problems.append(f"{name} {getattr(p, name)!r} (needs {plain!r})")
        chip, net = bench.chip, bench.network_params
        if chip.loss != "mse":
            problems.append(f"loss {chip.loss!r} (needs mse)")
        for i, layer in enumerate(net.layers):
            if layer.kind != "dense":
                problems.append(f"layer {i} of type {layer.kind!r} (needs dense)")
                continue
            device = layer.device or net.device
            if device.kind != "ideal":
                problems.append(f"layer {i} on device {device.kind!r} (needs ideal)")
            if layer.activation.kind not in ACTIVATIONS:
                problems.append(f"layer {i} activation {layer.activation.kind!r}")
            if not layer.bias:
                problems.append(f"layer {i} without bias")
        if chip.capabilities.decorrelation:
            problems.append("decorrelation matrices")
        if chip.capabilities.noisy_nodes:
            problems.append("intrinsic node noise")
        return problems

    def _scale(self, window: int) -> float:
        return self.channels / window if self.normalize else 1.0

    def window(self, estimator, window: Window) -> Estimate:
        """One window on its samples: the estimate and the mean baseline cost."""
        x, y, new = window
        steps = len(x)
        theta = self.bench.read_params()
        grad = np.empty_like(theta)
        args = (theta, self.shapes, self.offsets, self.acts,
                np.ascontiguousarray(x, dtype=np.float64),
                np.ascontiguousarray(y, dtype=np.float64), np.asarray(new), self.key,
                estimator.step, self.tau_p, self.epsilon, self._scale(steps))
        if self.target == "nodes":
            counted, cost = node_window(*args, np.empty((steps, self.channels)), grad)
        else:
            counted, cost = weight_window(*args, np.empty_like(theta), grad)
        estimator.step += steps
        self.chip.account(counted)
        return Estimate(grad, cost)

    def train(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, new: np.ndarray,
              tau_theta: int, lr: float) -> np.ndarray:
        """SGD over the whole windows of ``tau_theta`` steps in ``idx`` (step t presents
        sample ``idx[t]``; ``new[t]`` marks a newly presented one, as from
        :class:`devsim.data.SampleStream`); returns each window's mean baseline cost."""
        n_windows = len(idx) // tau_theta
        steps = n_windows * tau_theta
        costs = np.empty(n_windows)
        before = self.bench.read_params()
        theta = before.copy()
        counted = sgd_windows(self.target == "nodes", theta, self.shapes, self.offsets,
                              self.acts, np.ascontiguousarray(x, dtype=np.float64),
                              np.ascontiguousarray(y, dtype=np.float64),
                              np.asarray(idx[:steps], dtype=np.int64), np.asarray(new[:steps]),
                              tau_theta, self.key, self.estimator.step, self.tau_p,
                              self.epsilon, self._scale(tau_theta), lr, costs)
        self.estimator.step += steps
        self.chip.write(theta - before)
        self.chip.account(counted)
        return costs

"""On-chip MGD: the chip generates its codes, correlates and updates by itself.

The MGD papers describe MGD both chip-in-the-loop (a controller perturbs, reads
costs and writes updates: :mod:`trainer.mgd`) and implemented on the chip, where
each synapse or neuron circuit holds its own code generator and integrator and only
the global cost change is broadcast. This module simulates the second form for the
ideal float device: many update windows of discrete-mode MGD with random +-codes and
plain SGD run in one compiled call, so no Python runs per step or per window.

It computes exactly what :class:`trainer.mgd.MGD` (``perturbation: code``,
``mode: discrete``, ``integrator: window``) followed by :func:`trainer.optim.sgd`
computes through the controller path, with the same codes (bit (c*K + k) of the
counter-based stream with the same key), the same sample order and the same counted
steps: one per perturbed inference plus one per baseline (each new sample, and each
window start because the parameters were just written). Two simulation shortcuts
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
from devsim.hardware import Hardware
from trainer.perturbations import rademacher_codes

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")


@njit(cache=True)
def _activate(z, kind):
    """The activation ``kind`` (index into ACTIVATIONS) applied to z in place."""
    flat = z.reshape(-1)
    if kind == 1:
        for i in range(flat.shape[0]):
            flat[i] = 1.0 / (1.0 + np.exp(-flat[i]))  # libm exp: ~3x faster than tanh
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
    for l in range(shapes.shape[0]):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        w = theta[offsets[l]:offsets[l] + n_out * n_in].reshape((n_out, n_in))
        z = np.dot(h, w.T) + theta[offsets[l] + n_out * n_in:offsets[l + 1]]
        if l == 0:
            first[:] = z
        h = _activate(z, acts[l])
    return h, first


@njit(cache=True)
def _count_steps(new, s0, window):
    """Counted steps of one window: its perturbed inferences plus its baselines."""
    count = window + 1
    for t in range(1, window):
        if new[s0 + t]:
            count += 1
    return count


@njit(cache=True)
def node_windows(theta, shapes, offsets, acts, x, y, idx, new, window, key, first_step,
                 tau_p, epsilon, scale, lr, costs):
    """MGD with node perturbation over len(idx) // window windows, updating ``theta``
    in place; ``costs[w]`` gets window w's mean baseline cost. Returns counted steps."""
    n_layers = shapes.shape[0]
    n_nodes = 0
    for l in range(n_layers):
        n_nodes += shapes[l, 0]
    codes = np.empty((window, n_nodes))
    counted = 0
    for w in range(len(idx) // window):
        s0 = w * window
        rows = idx[s0:s0 + window]
        xw, yw = x[rows], y[rows]
        rademacher_codes(key, first_step + s0, tau_p, epsilon / np.sqrt(n_nodes), codes)
        hb, z0 = _baseline(theta, shapes, offsets, acts, xw)
        cb = _mse_rows(hb, yw)
        inputs = [xw]
        h = xw
        node = 0
        for l in range(n_layers):
            n_out, n_in = shapes[l, 0], shapes[l, 1]
            if l == 0:
                z = z0
            else:
                wl = theta[offsets[l]:offsets[l] + n_out * n_in].reshape((n_out, n_in))
                z = np.dot(h, wl.T) + theta[offsets[l] + n_out * n_in:offsets[l + 1]]
            z += codes[:, node:node + n_out]
            h = _activate(z, acts[l])
            if l < n_layers - 1:
                inputs.append(h)
            node += n_out
        change = _mse_rows(h, yw) - cb
        costs[w] = cb[0]
        n_base = 1
        for t in range(1, window):
            if new[s0 + t]:
                costs[w] += cb[t]
                n_base += 1
        costs[w] /= n_base
        counted += _count_steps(new, s0, window)
        signal = codes * (change * (scale / epsilon ** 2)).reshape((window, 1))
        node = 0
        for l in range(n_layers):
            n_out, n_in = shapes[l, 0], shapes[l, 1]
            s = np.ascontiguousarray(signal[:, node:node + n_out])
            grad = np.dot(s.T, inputs[l])
            o = offsets[l]
            theta[o:o + n_out * n_in] -= lr * grad.reshape(-1)
            theta[o + n_out * n_in:offsets[l + 1]] -= lr * s.sum(axis=0)
            node += n_out
    return counted


@njit(cache=True)
def fill_signs(key, first, out):
    """out[k] = +-1.0 from sign bit (first + k) of the counter-based stream (64 per hash)."""
    n = out.shape[0]
    for word_index in range(first >> 6, ((first + n - 1) >> 6) + 1):
        word = crng.bits(key, np.uint64(word_index))
        lo, hi = max(first, word_index << 6), min(first + n, (word_index + 1) << 6)
        for index in range(lo, hi):
            out[index - first] = 1.0 - 2.0 * float((word >> np.uint64(index & 63))
                                                   & np.uint64(1))


@njit(cache=True)
def weight_windows(theta, shapes, offsets, acts, x, y, idx, new, window, key, first_step,
                   tau_p, epsilon, scale, lr, costs):
    """MGD with weight perturbation: like :func:`node_windows`, the K = len(theta)
    parameter signs drawn inside the kernel once per code and never stored."""
    n_layers = shapes.shape[0]
    n_params = theta.shape[0]
    amplitude = epsilon / np.sqrt(n_params)
    width = 0
    for l in range(n_layers):
        width = max(width, shapes[l, 0], shapes[l, 1])
    signs = np.empty(n_params)
    integral = np.empty(n_params)
    h = np.empty(width)
    counted = 0
    for w in range(len(idx) // window):
        s0 = w * window
        rows = idx[s0:s0 + window]
        xw, yw = x[rows], y[rows]
        hb, z0 = _baseline(theta, shapes, offsets, acts, xw)
        cb = _mse_rows(hb, yw)
        integral[:] = 0.0
        held = 0.0  # summed cost change of the code in use
        code = -1
        for t in range(window):
            c = (first_step + s0 + t) // tau_p
            if c != code:
                if code >= 0:
                    integral += held * signs
                held, code = 0.0, c
                fill_signs(key, c * n_params, signs)
            h[:shapes[0, 1]] = xw[t]
            for l in range(n_layers):
                n_out, n_in = shapes[l, 0], shapes[l, 1]
                o, ob = offsets[l], offsets[l] + n_out * n_in
                # (W + D) h = W h + D h: the first layer's W x is the baseline's
                z = amplitude * (np.dot(signs[o:ob].reshape((n_out, n_in)), h[:n_in])
                                 + signs[ob:offsets[l + 1]])
                if l == 0:
                    z += z0[t]
                else:
                    z += np.dot(theta[o:ob].reshape((n_out, n_in)), h[:n_in])
                    z += theta[ob:offsets[l + 1]]
                h[:n_out] = _activate(z, acts[l])
            n_last = shapes[n_layers - 1, 0]
            cost = 0.0
            for j in range(n_last):
                d = h[j] - yw[t, j]
                cost += d * d
            held += cost / n_last - cb[t]
        integral += held * signs
        theta -= (lr * amplitude * scale / epsilon ** 2) * integral
        costs[w] = cb[0]
        n_base = 1
        for t in range(1, window):
            if new[s0 + t]:
                costs[w] += cb[t]
                n_base += 1
        costs[w] /= n_base
        counted += _count_steps(new, s0, window)
    return counted


class OnChipMGD:
    """Discrete-mode MGD with random +-codes and SGD, run on the chip in chunks.

    ``train(x, y, idx, new)`` runs len(idx) // tau_theta windows: step t presents
    sample ``idx[t]`` (``new[t]`` marks a newly presented one, as from
    :class:`devsim.data.SampleStream`). Parameters move through ``Hardware.write``
    once per call, and ``Hardware.steps`` advances by the counted steps.
    """

    def __init__(self, hardware: Hardware, *, target: str, epsilon: float, tau_p: int,
                 tau_theta: int, lr: float, seed: int, normalize: bool = True):
        net = hardware._network
        problems = []
        if hardware.loss != "mse":
            problems.append(f"loss {hardware.loss!r} (needs mse)")
        for i, layer in enumerate(net.params.layers):
            device = layer.device or net.params.device
            if device.kind != "ideal":
                problems.append(f"layer {i} on device {device.kind!r} (needs ideal)")
            if layer.activation.kind not in ACTIVATIONS:
                problems.append(f"layer {i} activation {layer.activation.kind!r}")
            if not getattr(layer, "bias", True):
                problems.append(f"layer {i} without bias")
        if getattr(net, "decorrelation", None) is not None:
            problems.append("decorrelation matrices")
        if net.node_noise is not None:
            problems.append("intrinsic node noise")
        if target not in ("nodes", "weights"):
            problems.append(f"target {target!r}")
        if problems:
            raise ValueError("on-chip MGD does not support " + "; ".join(problems) +
                             "; use the controller path (trainer.mgd)")
        self.hardware, self.target = hardware, target
        self.epsilon, self.tau_p, self.tau_theta, self.lr = epsilon, tau_p, tau_theta, lr
        channels = hardware.n_nodes if target == "nodes" else hardware.n_params
        self.scale = channels / tau_theta if normalize else 1.0
        self.key = crng.stream_key_np(seed, 0)
        self.shapes = np.array(hardware.layer_shapes, dtype=np.int64)
        self.offsets = np.asarray(hardware.param_offsets, dtype=np.int64)
        self.acts = np.array([ACTIVATIONS.index(layer.activation.kind)
                              for layer in net.params.layers], dtype=np.int64)
        self.step = 0  # perturbation clock, as in trainer.mgd.MGD

    def train(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray,
              new: np.ndarray) -> np.ndarray:
        """Run the whole windows in ``idx``; returns each window's mean baseline cost."""
        n_windows = len(idx) // self.tau_theta
        steps = n_windows * self.tau_theta
        costs = np.empty(n_windows)
        before = self.hardware.read_params()
        theta = before.copy()
        kernel = node_windows if self.target == "nodes" else weight_windows
        counted = kernel(theta, self.shapes, self.offsets, self.acts,
                         np.ascontiguousarray(x, dtype=np.float64),
                         np.ascontiguousarray(y, dtype=np.float64),
                         np.asarray(idx[:steps], dtype=np.int64), np.asarray(new[:steps]),
                         self.tau_theta, self.key, self.step, self.tau_p, self.epsilon,
                         self.scale, self.lr, costs)
        self.step += steps
        self.hardware.write(theta - before)
        self.hardware.steps += counted
        return costs

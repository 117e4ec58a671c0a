"""The ideal float model with exact gradients: OUTSIDE THE RULE.

Backpropagation needs what a physical chip does not offer. This module exists only
for the reference backpropagation baseline and for diagnostics (the cosine of an
estimate to the true gradient); no perturbative estimator may use it to train.

Every layer kind of :mod:`devsim.layers` has its forward map and its backward (the
gradient of the cost with respect to its parameters and its input) written here from
the window index maps of :mod:`devsim.conv_geometry`: a convolution is im2col and a
product, its input gradient col2im of the product with the kernel; average pooling
spreads a window's gradient evenly over the values inside the map, max pooling gives it
to the window's (first) largest value; flatten passes it on.
"""
from __future__ import annotations

import numpy as np

from devsim.layers import LayerShape
from devsim.losses import loss_function, loss_gradient


def _expected(act):
    """A stochastic neuron's expected response (its ``mean``); a plain activation itself.

    Calling a stochastic neuron would sample the chip's own devices and advance their
    state, which a reference computation must not do.
    """
    return getattr(act, "mean", act)


def _layer_forward(layer: LayerShape, w, b, h):
    """The layer's pre-activations (T, n_out) for inputs h (T, n_in)."""
    g, kind = layer.geometry, layer.kind
    if kind == "dense":
        return h @ w.T + b
    if kind == "conv2d":
        return (g.im2col(h) @ w.T + b).reshape(len(h), -1)
    if kind == "depthwise_conv2d":
        cols = g.im2col(h).reshape(len(h), g.n_positions, g.taps, g.in_c)
        out = np.einsum("tpkc,cmk->tpcm", cols, w.reshape(g.in_c, -1, g.taps))
        return out.reshape(len(h), -1) + np.tile(b, g.n_positions)
    if kind in ("avg_pool", "max_pool"):
        windows = _windows(g, h, kind)
        out = windows.max(axis=2) if kind == "max_pool" else windows.sum(axis=2) / _counts(g)
        return out.reshape(len(h), -1)
    return h  # flatten


def _layer_backward(layer: LayerShape, w, h, delta, need_input: bool = True):
    """(flat parameter gradient, input gradient) of the layer for the pre-activation
    gradient ``delta`` (T, n_out) at inputs h; without ``need_input`` (the first layer,
    whose input is the data) dense and conv2d layers give None for the second."""
    g, kind, n = layer.geometry, layer.kind, len(h)
    if kind == "dense":
        return (np.concatenate([(delta.T @ h).ravel(), delta.sum(axis=0)]),
                delta @ w if need_input else None)
    if kind == "conv2d":
        d = delta.reshape(n, g.n_positions, -1)
        return (g.kernel_gradient(delta, h, w.shape[0]),
                g.col2im(d @ w) if need_input else None)
    if kind == "depthwise_conv2d":
        d = delta.reshape(n, g.n_positions, g.in_c, -1)
        cols = np.einsum("tpcm,cmk->tpkc", d, w.reshape(g.in_c, -1, g.taps))
        return (g.depthwise_kernel_gradient(delta, h, d.shape[3]),
                g.col2im(cols.reshape(n, g.n_positions, -1)))
    if kind in ("avg_pool", "max_pool"):
        d = delta.reshape(n, g.n_positions, 1, g.in_c)
        if kind == "avg_pool":
            share = np.broadcast_to(1.0 / _counts(g)[:, :, None],
                                    (n, g.n_positions, g.taps, g.in_c))
        else:
            windows = _windows(g, h, kind)
            share = (np.arange(g.taps)[None, None, :, None]
                     == windows.argmax(axis=2)[:, :, None, :])
        cols = np.where(g.window_index[None, :, :, None] >= 0, share * d, 0.0)
        return np.zeros(0), g.col2im(cols.reshape(n, g.n_positions, -1))
    return np.zeros(0), delta  # flatten


def _windows(g, h, kind):
    """(T, positions, taps, C) values of each window, padding -inf (max) or 0 (mean)."""
    maps = h.reshape(len(h), g.in_h * g.in_w, g.in_c)
    fill = -np.inf if kind == "max_pool" else 0.0
    padded = np.concatenate([maps, np.full((len(h), 1, g.in_c), fill)], axis=1)
    return padded[:, g.window_index]


def _counts(g):
    """(positions, 1) values inside the map under each window."""
    return (g.window_index >= 0).sum(axis=1)[:, None]


class IdealModel:
    """Noise-free float forward and backward passes over a flat parameter vector."""

    def __init__(self, layers: list[LayerShape], activations, loss: str):
        self.layers = tuple(layers)
        self.shapes = tuple(layer.matrix for layer in self.layers)
        self.activations = activations
        self.loss = loss
        sizes = [layer.n_params for layer in self.layers]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])

    def _layers(self, params):
        for i, (n_out, n_in) in enumerate(self.shapes):
            flat = params[self.offsets[i]:self.offsets[i + 1]]
            yield flat[: n_out * n_in].reshape(n_out, n_in), flat[n_out * n_in:]

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        h = x
        for layer, (w, b), act in zip(self.layers, self._layers(params), self.activations):
            h = _expected(act)(_layer_forward(layer, w, b, h))
        return h

    def costs(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return loss_function(self.loss)(self.forward(params, x), y)

    def gradient(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the mean cost over the rows of ``x`` (backpropagation)."""
        params = list(self._layers(params))
        hs, zs = [x], []
        for layer, (w, b), act in zip(self.layers, params, self.activations):
            zs.append(_layer_forward(layer, w, b, hs[-1]))
            hs.append(_expected(act)(zs[-1]))
        delta = loss_gradient(self.loss, hs[-1], y) / x.shape[0]
        grads = []
        for i in reversed(range(len(self.layers))):
            delta = delta * self.activations[i].derivative(zs[i])
            grad, delta = _layer_backward(self.layers[i], params[i][0], hs[i], delta,
                                          need_input=i > 0)
            grads.append(grad)
        return np.concatenate(grads[::-1])


class DecorrelatedModel:
    """The ideal model of a network whose layer l sees R_l x: it is the plain model with
    weights W_l R_l, and the chain rule gives dC/dW_l = (dC/d(W_l R_l)) R_l^T."""

    def __init__(self, model: IdealModel, matrices: list[np.ndarray]):
        self._model, self._matrices = model, matrices
        self.shapes, self.offsets = model.shapes, model.offsets
        self.activations, self.loss = model.activations, model.loss

    def _map(self, params: np.ndarray, transpose: bool) -> np.ndarray:
        out = params.copy()
        for (n_out, n_in), start, r in zip(self.shapes, self.offsets, self._matrices):
            w = out[start:start + n_out * n_in].reshape(n_out, n_in)
            w[...] = w @ (r.T if transpose else r)
        return out

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._model.forward(self._map(params, False), x)

    def costs(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._model.costs(self._map(params, False), x, y)

    def gradient(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the mean cost with respect to the stored W_l and b_l."""
        return self._map(self._model.gradient(self._map(params, False), x, y), True)

"""The ideal float model with exact gradients: OUTSIDE THE RULE.

Backpropagation needs what a physical chip does not offer. This module exists only
for the reference backpropagation baseline and for diagnostics (the cosine of an
estimate to the true gradient); no perturbative estimator may use it to train.
"""
from __future__ import annotations

import numpy as np

from devsim.losses import loss_function, loss_gradient


def _expected(act):
    """A stochastic neuron's expected response (its ``mean``); a plain activation itself.

    Calling a stochastic neuron would sample the chip's own devices and advance their
    state, which a reference computation must not do.
    """
    return getattr(act, "mean", act)


class IdealModel:
    """Noise-free float forward and backward passes over a flat parameter vector."""

    def __init__(self, shapes, activations, loss: str):
        self.shapes = tuple(shapes)
        self.activations = activations
        self.loss = loss
        sizes = [n_out * n_in + n_out for n_out, n_in in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])

    def _layers(self, params):
        for i, (n_out, n_in) in enumerate(self.shapes):
            flat = params[self.offsets[i]:self.offsets[i + 1]]
            yield flat[: n_out * n_in].reshape(n_out, n_in), flat[n_out * n_in:]

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        h = x
        for (w, b), act in zip(self._layers(params), self.activations):
            h = _expected(act)(h @ w.T + b)
        return h

    def costs(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return loss_function(self.loss)(self.forward(params, x), y)

    def gradient(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the mean cost over the rows of ``x`` (backpropagation)."""
        layers = list(self._layers(params))
        hs, zs = [x], []
        for (w, b), act in zip(layers, self.activations):
            zs.append(hs[-1] @ w.T + b)
            hs.append(_expected(act)(zs[-1]))
        delta = loss_gradient(self.loss, hs[-1], y) / x.shape[0]
        grads = []
        for i in reversed(range(len(layers))):
            delta = delta * self.activations[i].derivative(zs[i])
            grads.append(np.concatenate([(delta.T @ hs[i]).ravel(), delta.sum(axis=0)]))
            if i:
                delta = delta @ layers[i][0]
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

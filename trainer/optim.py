"""Optimizers as optax-style pure transforms over NumPy arrays.

A :class:`Transform` is an ``init(params) -> state`` and
``update(gradient, state) -> (step, state)`` pair; ``step`` is added to the
parameters. Transforms compose with :func:`chain`. A gradient *estimate* from any
trainer estimator is a drop-in gradient here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from devsim.params import param
from devsim.training import OptimizerParams
from trainer.kernels import norm as _norm


class Transform(NamedTuple):
    """A pure gradient transformation."""

    init: Callable[[np.ndarray], Any]
    update: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]


class MomentumState(NamedTuple):
    velocity: np.ndarray


class AdamState(NamedTuple):
    count: int
    mu: np.ndarray
    nu: np.ndarray


def scale(factor: float) -> Transform:
    """Multiply the incoming vector by ``factor``."""
    return Transform(lambda p: (), lambda g, s: (factor * g, s))


def sgd(lr: float) -> Transform:
    """Plain gradient descent: step = -lr * g."""
    return scale(-lr)


def momentum(lr: float, beta: float = 0.9, nesterov: bool = False) -> Transform:
    """Heavy-ball momentum: v <- beta v + g; step = -lr v (or the Nesterov form)."""

    def update(g, state):
        v = beta * state.velocity + g
        direction = beta * v + g if nesterov else v
        return -lr * direction, MomentumState(v)

    return Transform(lambda p: MomentumState(np.zeros_like(p)), update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """Adam (Kingma & Ba 2015) with bias correction."""

    def update(g, state):
        count = state.count + 1
        mu = b1 * state.mu + (1 - b1) * g
        nu = b2 * state.nu + (1 - b2) * g * g
        mu_hat, nu_hat = mu / (1 - b1 ** count), nu / (1 - b2 ** count)
        return -lr * mu_hat / (np.sqrt(nu_hat) + eps), AdamState(count, mu, nu)

    return Transform(lambda p: AdamState(0, np.zeros_like(p), np.zeros_like(p)), update)


def clip_by_global_norm(max_norm: float) -> Transform:
    """Rescale the vector to norm ``max_norm`` when it is longer."""

    def update(g, state):
        norm = float(_norm(g))
        return (g * (max_norm / norm) if norm > max_norm else g), state

    return Transform(lambda p: (), update)


class ScheduleState(NamedTuple):
    count: int


def scale_by_schedule(schedule: Callable[[int], float]) -> Transform:
    """Multiply the k-th incoming vector (k = 0, 1, ...) by ``schedule(k)``."""

    def update(g, state):
        return schedule(state.count) * g, ScheduleState(state.count + 1)

    return Transform(lambda p: ScheduleState(0), update)


def decay_schedule(lr: float, kind: str, decay_updates: int,
                   final_fraction: float) -> Callable[[int], float]:
    """Learning rate at update k: from ``lr`` down to ``final_fraction * lr`` over
    ``decay_updates`` updates (``cosine`` or ``linear``), then held there."""

    def schedule(k: int) -> float:
        progress = min(k, decay_updates) / decay_updates
        shape = 0.5 * (1.0 + np.cos(np.pi * progress)) if kind == "cosine" else 1.0 - progress
        return lr * (final_fraction + (1.0 - final_fraction) * shape)

    return schedule


def chain(*transforms: Transform) -> Transform:
    """Apply transforms in order, each to the previous one's output."""

    def init(p):
        return tuple(t.init(p) for t in transforms)

    def update(g, states):
        new = []
        for t, s in zip(transforms, states):
            g, s = t.update(g, s)
            new.append(s)
        return g, tuple(new)

    return Transform(init, update)


@dataclass(frozen=True)
class ScheduledOptimizer(OptimizerParams):
    """An optimizer made of a core transform (``_core(lr)``) with the base's clipping
    and learning-rate schedule composed around it."""

    def build(self) -> Transform:
        if self.schedule == "constant":
            core = self._core(self.lr)
        else:
            core = chain(self._core(1.0), scale_by_schedule(decay_schedule(
                self.lr, self.schedule, self.decay_updates, self.final_lr_fraction)))
        return chain(clip_by_global_norm(self.clip_norm), core) if self.clip_norm else core

    def _core(self, lr: float) -> Transform:
        raise NotImplementedError


@dataclass(frozen=True)
class SGDParams(ScheduledOptimizer, kind="sgd"):
    """Plain gradient descent."""

    def _core(self, lr):
        return sgd(lr)


@dataclass(frozen=True)
class MomentumParams(ScheduledOptimizer, kind="momentum"):
    """Heavy-ball (or Nesterov) momentum."""

    beta: float = param(0.9, ge=0.0, lt=1.0)
    """Momentum coefficient."""
    nesterov: bool = False
    """Use the Nesterov look-ahead form."""

    def _core(self, lr):
        return momentum(lr, self.beta, self.nesterov)


@dataclass(frozen=True)
class AdamParams(ScheduledOptimizer, kind="adam"):
    """Adam with bias correction."""

    lr: float = param(1e-3, gt=0.0)
    """Learning rate."""
    b1: float = param(0.9, ge=0.0, lt=1.0)
    """Decay of the first-moment average."""
    b2: float = param(0.999, ge=0.0, lt=1.0)
    """Decay of the second-moment average."""
    eps: float = param(1e-8, gt=0.0)
    """Added to the root second moment for stability."""

    def _core(self, lr):
        return adam(lr, self.b1, self.b2, self.eps)

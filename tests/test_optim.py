"""Optimizers: one contract table run over every registered optimizer, plus the
update formulas checked step by step against hand-written recurrences."""
import dataclasses
import itertools
import math

import numpy as np
import pytest

from contracts import table
from devsim.config import from_data
from trainer.optim import (OptimizerParams, adam, chain, clip_by_global_norm, momentum, sgd)

G = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 0.5, -1.0]), np.array([-1.0, 0.0, 2.0])]


def test_sgd():
    t = sgd(0.1)
    step, _ = t.update(G[0], t.init(G[0]))
    np.testing.assert_allclose(step, -0.1 * G[0])


def test_momentum_recurrence():
    t, beta = momentum(0.1, 0.9), 0.9
    state, v = t.init(G[0]), np.zeros(3)
    for g in G:
        step, state = t.update(g, state)
        v = beta * v + g
        np.testing.assert_allclose(step, -0.1 * v)


def test_adam_recurrence_and_first_step_is_sign():
    t = adam(0.01)
    state = t.init(G[0])
    step, state = t.update(G[0], state)
    np.testing.assert_allclose(step, -0.01 * np.sign(G[0]), rtol=1e-6)
    m, v = (1 - 0.9) * G[0], (1 - 0.999) * G[0] ** 2
    for k, g in enumerate(G[1:], start=2):
        step, state = t.update(g, state)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected = -0.01 * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
        np.testing.assert_allclose(step, expected)


def test_clip_and_chain():
    t = chain(clip_by_global_norm(1.0), sgd(1.0))
    step, _ = t.update(np.array([3.0, 4.0]), t.init(np.zeros(2)))
    np.testing.assert_allclose(step, [-0.6, -0.8])
    step, _ = t.update(np.array([0.3, 0.4]), t.init(np.zeros(2)))
    np.testing.assert_allclose(step, [-0.3, -0.4])


@pytest.mark.parametrize("kind", sorted(OptimizerParams.members()))
def test_every_optimizer_descends_a_quadratic(kind):
    """Contract: from YAML data, the optimizer minimises 1/2 x^T A x."""
    params = from_data(OptimizerParams, {"type": kind, "lr": 0.05})
    t = params.build()
    A = np.diag([1.0, 3.0, 0.5])
    x = np.array([1.0, -1.0, 2.0])
    state = t.init(x)
    f0 = 0.5 * x @ A @ x
    for _ in range(300):
        step, state = t.update(A @ x, state)
        x = x + step
    assert 0.5 * x @ A @ x < 1e-2 * f0


@pytest.mark.parametrize("kind", sorted(OptimizerParams.members()))
def test_every_optimizer_rejects_bad_learning_rate(kind):
    from devsim.config import ConfigError
    with pytest.raises(ConfigError, match="lr: must be > 0.0"):
        from_data(OptimizerParams, {"type": kind, "lr": 0.0})


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decaying_schedules_hit_their_end_points(kind):
    sched = __import__("trainer.optim", fromlist=["x"]).decay_schedule(2.0, kind, 10, 0.1)
    assert sched(0) == pytest.approx(2.0) and sched(10) == pytest.approx(0.2)
    assert sched(50) == pytest.approx(0.2) and sched(5) == pytest.approx(1.1)  # midpoint of both
    values = [sched(k) for k in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("kind", sorted(OptimizerParams.members()))
def test_scheduled_optimizer_scales_its_constant_twin(kind):
    """With a schedule, update k is the constant-lr optimizer's update times lr_k / lr."""
    const = from_data(OptimizerParams, {"type": kind, "lr": 0.5}).build()
    sched = from_data(OptimizerParams, {"type": kind, "lr": 0.5, "schedule": "linear",
                                        "decay_updates": 4, "final_lr_fraction": 0.5}).build()
    sc, ss = const.init(G[0]), sched.init(G[0])
    for k, g in enumerate(G * 2):
        a, sc = const.update(g, sc)
        b, ss = sched.update(g, ss)
        factor = 1.0 - 0.5 * min(k, 4) / 4
        np.testing.assert_allclose(b, a * factor, rtol=1e-12)


def test_decaying_schedule_needs_a_length():
    from devsim.config import ConfigError
    with pytest.raises(ConfigError, match="decay_updates: must be >= 1 for schedule 'cosine'"):
        from_data(OptimizerParams, {"type": "sgd", "schedule": "cosine"})


# ---------------------------------------------------------------- the optimizer table
DECAY, FINAL = 8, 0.25
CLIP = 1.5
_DIRECTIONS = np.random.default_rng(3).normal(0.0, 1.0, (12, 5))
GRADIENTS = _DIRECTIONS / np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True) * CLIP * np.array(
    [0.3, 1.01, 2.0, 0.99, 4.0, 0.5, 1.2, 0.1, 3.0, 0.8, 1.5, 0.7])[:, None]
"""Twelve updates (past the decay's end) of gradients whose norms lie on both sides of
the clipping norm, some just beside it."""


def _rows() -> list:
    """Every registered optimizer (plugins included), its defaults and each of its own
    flags or choices flipped, x every schedule the base declares x clipping off and on."""
    schedules = next(f for f in dataclasses.fields(OptimizerParams)
                     if f.name == "schedule").metadata["rules"]["choices"]
    base_fields = {f.name for f in dataclasses.fields(OptimizerParams)}
    rows = []
    for kind, cls in sorted(OptimizerParams.members().items()):
        own = [{}] + [{f.name: v} for f in dataclasses.fields(cls) if f.name not in base_fields
                      for v in (f.metadata.get("rules", {}).get("choices")
                                or ((True, False) if isinstance(f.default, bool) else ()))
                      if v != f.default]
        for over, schedule, clip in itertools.product(own, schedules, (0.0, CLIP)):
            data = {"type": kind, "lr": 0.3, **over, "schedule": schedule, "clip_norm": clip}
            if schedule != "constant":
                data.update(decay_updates=DECAY, final_lr_fraction=FINAL)
            name = "-".join([kind, *(f"{k}={v}" for k, v in over.items()), schedule,
                             f"clip{clip:g}"])
            rows.append(pytest.param(from_data(OptimizerParams, data), id=name))
    return table("optimizer x schedule x clipping", rows)


ROWS = _rows()


def _lr(params, k):
    """Learning rate of update k, written from the schedules' definitions."""
    if params.schedule == "constant":
        return params.lr
    progress = min(k, params.decay_updates) / params.decay_updates
    shape = ((1.0 + math.cos(math.pi * progress)) / 2.0 if params.schedule == "cosine"
             else 1.0 - progress)
    return params.lr * (params.final_lr_fraction + (1.0 - params.final_lr_fraction) * shape)


def _clipped(params, g):
    norm = math.sqrt(float(g @ g))
    return g * (params.clip_norm / norm) if params.clip_norm and norm > params.clip_norm else g


def _sgd_directions(params, gradients):
    return list(gradients)


def _momentum_directions(params, gradients):
    v, out = np.zeros_like(gradients[0]), []
    for g in gradients:
        v = params.beta * v + g
        out.append(params.beta * v + g if params.nesterov else v)
    return out


def _adam_directions(params, gradients):
    m, v, out = np.zeros_like(gradients[0]), np.zeros_like(gradients[0]), []
    for k, g in enumerate(gradients, start=1):
        m = params.b1 * m + (1 - params.b1) * g
        v = params.b2 * v + (1 - params.b2) * g ** 2
        out.append((m / (1 - params.b1 ** k)) / (np.sqrt(v / (1 - params.b2 ** k)) + params.eps))
    return out


REFERENCES = {"sgd": _sgd_directions, "momentum": _momentum_directions,
              "adam": _adam_directions}
"""The update direction of each built-in kind as a plain recurrence over the (clipped)
gradients; its step is -lr_k times it."""


def _steps(params, gradients):
    t = params.build()
    state, out = t.init(np.zeros_like(gradients[0])), []
    for g in gradients:
        step, state = t.update(g, state)
        out.append(step)
    return np.array(out)


@pytest.mark.parametrize("params", [p for p in ROWS if p.values[0].kind in REFERENCES])
def test_every_optimizer_schedule_and_clipping_follows_its_reference_recurrence(params):
    clipped = [_clipped(params, g) for g in GRADIENTS]
    directions = REFERENCES[params.kind](params, clipped)
    expected = np.array([-_lr(params, k) * d for k, d in enumerate(directions)])
    np.testing.assert_allclose(_steps(params, GRADIENTS), expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("params", ROWS)
def test_schedule_and_clipping_compose_with_any_optimizer(params):
    """For every kind (plugins included): clipping is the same optimizer fed clipped
    gradients, and a schedule scales the constant-rate optimizer's steps (rate 1) by
    lr_k."""
    plain = params.replace(lr=1.0, schedule="constant", clip_norm=0.0)
    clipped = np.array([_clipped(params, g) for g in GRADIENTS])
    factors = np.array([_lr(params, k) for k in range(len(GRADIENTS))])
    np.testing.assert_allclose(_steps(params, GRADIENTS),
                               factors[:, None] * _steps(plain, clipped), rtol=1e-12, atol=0.0)

"""Optimizers: one contract table run over every registered optimizer, plus the
update formulas checked step by step against hand-written recurrences."""
import numpy as np
import pytest

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

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


@pytest.mark.parametrize("kind", sorted(OptimizerParams.registry))
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


@pytest.mark.parametrize("kind", sorted(OptimizerParams.registry))
def test_every_optimizer_rejects_bad_learning_rate(kind):
    from devsim.config import ConfigError
    with pytest.raises(ConfigError, match="lr: must be > 0.0"):
        from_data(OptimizerParams, {"type": kind, "lr": 0.0})

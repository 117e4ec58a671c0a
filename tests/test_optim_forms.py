"""Optimizer forms beyond the defaults: Nesterov momentum, the default coefficients, the
configured coefficients reaching the transforms, clipping composed before the schedule
(trainer/optim.py)."""
import numpy as np
import pytest

from trainer.optim import AdamParams, MomentumParams, SGDParams, adam, momentum

G = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 0.5, -1.0]), np.array([-1.0, 0.0, 2.0])]


def steps_of(transform, gradients):
    state, out = transform.init(gradients[0]), []
    for g in gradients:
        step, state = transform.update(g, state)
        out.append(step)
    return np.array(out)


def test_nesterov_momentum_looks_ahead():
    # v <- beta v + g; step = -lr (beta v + g)
    lr, beta, v = 0.2, 0.7, np.zeros(3)
    for g, step in zip(G, steps_of(momentum(lr, beta, nesterov=True), G)):
        v = beta * v + g
        np.testing.assert_allclose(step, -lr * (beta * v + g), rtol=1e-15)


def test_default_coefficients():
    np.testing.assert_array_equal(steps_of(momentum(0.1), G),
                                  steps_of(momentum(0.1, 0.9, False), G))
    np.testing.assert_array_equal(steps_of(adam(0.1), G),
                                  steps_of(adam(0.1, 0.9, 0.999, 1e-8), G))
    assert (MomentumParams().beta, MomentumParams().nesterov) == (0.9, False)
    assert (AdamParams().lr, AdamParams().b1, AdamParams().b2, AdamParams().eps) == \
        (1e-3, 0.9, 0.999, 1e-8)


def test_configured_coefficients_reach_the_transform():
    np.testing.assert_array_equal(
        steps_of(MomentumParams(lr=0.3, beta=0.5, nesterov=True).build(), G),
        steps_of(momentum(0.3, 0.5, True), G))
    np.testing.assert_array_equal(
        steps_of(AdamParams(lr=0.3, b1=0.5, b2=0.8, eps=1e-3).build(), G),
        steps_of(adam(0.3, 0.5, 0.8, 1e-3), G))
    # small eps matters where the gradient is zero: 0 / (0 + eps) stays 0, not NaN
    assert np.all(np.isfinite(steps_of(adam(0.1), [np.zeros(3), np.zeros(3)])))


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_clipping_comes_before_the_learning_rate(schedule):
    # |g| = 5 clipped to 2 first, then scaled: step = -lr_k * 2 g / |g|
    params = SGDParams(lr=0.5, clip_norm=2.0, schedule=schedule, decay_updates=2,
                       final_lr_fraction=0.5)
    g = np.array([3.0, 4.0])
    steps = steps_of(params.build(), [g, g, g])
    lr = [0.5, 0.375, 0.25] if schedule == "linear" else [0.5] * 3
    np.testing.assert_allclose(steps, [-r * 2.0 * g / 5.0 for r in lr], rtol=1e-15)
    short = np.array([0.3, 0.4])                       # inside the norm: untouched
    np.testing.assert_allclose(steps_of(params.build(), [short])[0], -0.5 * short)


def test_cosine_and_linear_decays_between_their_end_points():
    # lr (f + (1 - f) s(k / n)): s = (1 + cos(pi x)) / 2 or 1 - x; they agree only at
    # x = 0, 1/2 and 1.
    from trainer.optim import decay_schedule
    lr, f, n = 2.0, 0.1, 8
    cosine, linear = decay_schedule(lr, "cosine", n, f), decay_schedule(lr, "linear", n, f)
    for k in range(n + 3):
        x = min(k, n) / n
        assert cosine(k) == pytest.approx(lr * (f + (1 - f) * (1 + np.cos(np.pi * x)) / 2),
                                          rel=1e-14)
        assert linear(k) == pytest.approx(lr * (f + (1 - f) * (1 - x)), rel=1e-14)
    assert cosine(2) > linear(2) and cosine(6) < linear(6)

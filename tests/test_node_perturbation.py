"""Node-perturbation family, weight perturbation, decorrelation and bias-free layers.

Unbiasedness checks average many independent estimates and compare with the exact
gradient from the reference model; the tolerance is 5 standard errors per component
(the standard error estimated from the same trials), so with 15-20 components a false
failure has probability below 1e-4, while a bias of a few per cent of |g| fails.
"""
import numpy as np
import pytest

from conftest import Identity, Tanh, build_estimator, estimate, lab, make_hardware
from devices.noise import GaussianNoiseParams
from devsim.params import ParamError
from trainer.backprop import BackpropParams
from trainer.base import Window
from trainer.decorrelation import decorrelate, offdiagonal_correlation
from trainer.node_perturbation import ANPParams, INPParams, NPParams
from trainer.weight_perturbation import WPParams

B = 8  # rows per window (a minibatch of distinct samples)


def _window(rng, n_in, n_out):
    return Window(rng.normal(size=(B, n_in)), rng.normal(size=(B, n_out)),
                  np.ones(B, bool))


def _mean_and_error(estimator, hw, window, trials):
    g = np.array([estimate(estimator, hw, window).gradient for _ in range(trials)])
    return g.mean(0), g.std(0, ddof=1) / np.sqrt(trials)


def _linear(seed=0, **network):
    return make_hardware((4, 3), activations=[Identity()], seed=seed, **network)


@pytest.mark.parametrize("params", [
    NPParams(perturbation="gaussian", sigma=0.1),
    NPParams(perturbation="rademacher", sigma=0.1),
    NPParams(perturbation="gaussian", sigma=0.1, passes="noisy_noisy"),
    NPParams(perturbation="gaussian", sigma=0.1, draws=3),
    ANPParams(perturbation="gaussian", sigma=0.1),
    ANPParams(perturbation="rademacher", sigma=0.1),
    ANPParams(perturbation="gaussian", sigma=0.1, passes="noisy_noisy"),
    INPParams(perturbation="gaussian", sigma=0.1),
    INPParams(perturbation="gaussian", sigma=0.1, passes="noisy_noisy"),
], ids=lambda p: f"{p.kind}-{p.perturbation}-{p.passes}-{p.draws}")
def test_expectation_is_the_gradient_on_a_linear_layer(params):
    # On a linear layer with MSE the cost difference is g.e + quadratic(e); the
    # quadratic part is even in the noise and drops out of E[dC e] and E[dC N e/|e|^2],
    # so every estimator here is exactly unbiased for symmetric noise.
    hw = _linear()
    window = _window(np.random.default_rng(1), 4, 3)
    g = lab(hw).reference().gradient(lab(hw).read_params(), window.x, window.y)
    mean, se = _mean_and_error(build_estimator(params, hw, 2), hw, window, 3000)
    assert np.all(np.abs(mean - g) < 5 * se), np.max(np.abs(mean - g) / se)
    assert np.linalg.norm(mean - g) < 0.1 * np.linalg.norm(g)


def test_bernoulli_np_estimates_the_gradient_at_the_mean_shifted_operating_point():
    # Noise of mean mu shifts every pre-activation by mu: E[dC (e - mu)] / var is the
    # gradient of the cost at a + mu exactly (MSE is quadratic), i.e. with bias b + mu.
    hw = _linear()
    window = _window(np.random.default_rng(3), 4, 3)
    params = NPParams(perturbation="bernoulli", sigma=0.2, p=0.5, offset=0.3)
    mu = params.offset + params.sigma * params.p
    theta = lab(hw).read_params()
    shifted = theta.copy()
    shifted[-3:] += mu
    g_shifted = lab(hw).reference().gradient(shifted, window.x, window.y)
    mean, se = _mean_and_error(build_estimator(params, hw, 4), hw, window, 3000)
    assert np.all(np.abs(mean - g_shifted) < 5 * se)
    # ... and the shift is resolved: against the unshifted gradient the sum of squared
    # z-scores (chi-square with 15 degrees of freedom if it were the mean) is far out.
    g = lab(hw).reference().gradient(theta, window.x, window.y)
    assert np.sum(((mean - g) / se) ** 2) > 100


@pytest.mark.parametrize("perturbation", ["gaussian", "rademacher"])
def test_weight_perturbation_is_unbiased_on_a_linear_layer(perturbation):
    hw = _linear()
    window = _window(np.random.default_rng(5), 4, 3)
    g = lab(hw).reference().gradient(lab(hw).read_params(), window.x, window.y)
    est = build_estimator(WPParams(perturbation=perturbation, sigma=0.05), hw, 6)
    mean, se = _mean_and_error(est, hw, window, 3000)
    assert np.all(np.abs(mean - g) < 5 * se)


def test_draws_divide_the_variance():
    # Independent draws averaged: total variance falls as 1/draws. The clean pass is
    # shared but fixed, so the draws stay independent given it. Tolerance: a variance
    # estimate from n trials has relative standard error about sqrt(2 / (n - 1)), the
    # ratio of two about sqrt(2) times that; five of those.
    hw = _linear()
    window = _window(np.random.default_rng(7), 4, 3)
    var, n = [], 2000
    for draws in (1, 4):
        est = build_estimator(ANPParams(sigma=0.1, draws=draws), hw, draws)
        g = np.array([estimate(est, hw, window).gradient for _ in range(n)])
        var.append(g.var(0).sum())
    assert var[0] / var[1] == pytest.approx(4.0, rel=5 * np.sqrt(2) * np.sqrt(2 / (n - 1)))


def test_noisy_noisy_anp_on_the_chips_own_noise_equals_it_on_injected_noise():
    # Two noisy passes, noise the controller never sees, a 5-4-3 tanh/sigmoid network.
    # ANP never uses the noise itself, only the activity it causes, so on the chip's
    # own Gaussian noise its estimates have the distribution they have on injected
    # Gaussian noise of the same size: the means agree within five standard errors of
    # their difference. With hidden layers ANP is biased (noise propagated from layer 1
    # enters da_2), but it must still point downhill: the mean cosine to the true
    # gradient many standard errors above zero.
    hw = make_hardware((5, 4, 3), seed=3, node_noise=GaussianNoiseParams(std=0.02))
    rng = np.random.default_rng(8)
    window = Window(rng.normal(size=(32, 5)), rng.random((32, 3)), np.ones(32, bool))
    g = lab(hw).reference().gradient(lab(hw).read_params(), window.x, window.y)
    runs = []
    for params in (ANPParams(perturbation="device", passes="noisy_noisy"),
                   ANPParams(perturbation="gaussian", sigma=0.02, passes="noisy_noisy")):
        est = build_estimator(params, hw, 9)
        runs.append(np.array([estimate(est, hw, window).gradient for _ in range(1000)]))
    device, injected = runs
    se = np.sqrt(device.var(0) / len(device) + injected.var(0) / len(injected))
    assert np.all(np.abs(device.mean(0) - injected.mean(0)) < 5 * se)
    cos = device @ g / (np.linalg.norm(device, axis=1) * np.linalg.norm(g))
    assert cos.mean() > 10 * cos.std() / np.sqrt(len(cos))


def test_device_noise_is_refused_where_the_noise_must_be_known():
    with pytest.raises(ParamError, match="perturbation"):
        NPParams(perturbation="device")
    with pytest.raises(ParamError, match="perturbation"):
        INPParams(perturbation="device")


def test_decorrelation_rate_needs_decorrelation_matrices():
    hw = _linear()
    for params in (ANPParams(decorrelation_lr=0.1), BackpropParams(decorrelation_lr=0.1)):
        with pytest.raises(ParamError, match="decorrelation_lr"):
            build_estimator(params, hw, 0)


def test_decorrelation_drives_offdiagonal_correlations_to_zero():
    # Inputs with pairwise correlation 0.6; 400 steps of the rule on batches of 200.
    # The sampling error of a correlation over 20,000 fresh rows is about 0.007.
    n = 5
    hw = make_hardware((n, 3), activations=[Identity()], decorrelation=True)
    cov = 0.4 * np.eye(n) + 0.6
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(9)
    for _ in range(400):
        x = rng.normal(size=(200, n)) @ chol.T
        decorrelate(hw, hw.probe(x, np.zeros((200, 3))).inputs, lr=0.05)
    x = rng.normal(size=(20000, n)) @ chol.T
    z = hw.probe(x, np.zeros((20000, 3))).inputs[0]
    assert np.max(np.abs(offdiagonal_correlation(x))) > 0.55
    assert np.max(np.abs(offdiagonal_correlation(z))) < 0.03
    # Closed form of the expected input correlation after training: R cov R^T.
    r = hw.read_decorrelation()[0]
    off = r @ cov @ r.T - np.diag(np.diag(r @ cov @ r.T))
    assert np.max(np.abs(off)) < 0.02


def test_decorrelated_reference_gradient_matches_finite_differences():
    # With R != I the reference must differentiate through R: compare with central
    # differences of the hardware's own costs (exact up to O(h^2) ~ 1e-10).
    hw = make_hardware((4, 3, 2), seed=4, decorrelation=True)
    rng = np.random.default_rng(10)
    hw.write_decorrelation([0.3 * rng.normal(size=(4, 4)), 0.3 * rng.normal(size=(3, 3))])
    x, y = rng.normal(size=(6, 4)), rng.random((6, 2))
    model, theta = lab(hw).reference(), lab(hw).read_params()
    assert np.allclose(model.forward(theta, x), lab(hw).outputs(x))
    h, fd = 1e-5, []
    for k in range(hw.n_params):
        e = np.zeros((1, hw.n_params))
        e[0, k] = h
        fd.append((hw.cost(x, y, weight_perturbation=np.repeat(e, 6, 0)).mean()
                   - hw.cost(x, y, weight_perturbation=np.repeat(-e, 6, 0)).mean()) / (2 * h))
    assert np.allclose(model.gradient(theta, x, y), fd, atol=1e-8)


@pytest.mark.parametrize("lr", [0.0, 0.1])
def test_decorrelated_backprop_steps_r_by_the_rule_on_its_window(lr):
    # DBP: the exact gradient through R, and R stepped by the decorrelation rule on the
    # layer inputs of the window's pass (left as it was at lr = 0), as decorrelate() steps
    # a twin chip from the same inputs.
    chips = [make_hardware((4, 3, 2), seed=4, decorrelation=True) for _ in range(2)]
    rng = np.random.default_rng(12)
    start = [np.eye(n) + 0.2 * rng.normal(size=(n, n)) for n in (4, 3)]
    for chip in chips:
        chip.write_decorrelation([r - np.eye(len(r)) for r in start])
    hw, twin = chips
    x, y = rng.normal(size=(8, 4)), rng.random((8, 2))
    want_gradient = lab(twin).reference().gradient(lab(twin).read_params(), x, y)
    dbp = build_estimator(BackpropParams(decorrelation_lr=lr), hw, 0, bench=lab(hw))
    est = estimate(dbp, hw, Window(x, y, np.ones(8, bool)))
    np.testing.assert_allclose(est.gradient, want_gradient, rtol=1e-12)
    decorrelate(twin, twin.probe(x, y).inputs, lr)
    for got, want, first in zip(hw.read_decorrelation(), twin.read_decorrelation(), start):
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert (lr > 0) == (not np.allclose(got, first))

def test_decorrelated_anp_trains_r_and_weights_together():
    # DANP with two noisy passes on correlated inputs: the cost falls and R decorrelates.
    n = 4
    hw = make_hardware((n, 6, 2), activations=[Tanh(), Identity()], seed=5,
                       decorrelation=True, node_noise=GaussianNoiseParams(std=0.05))
    rng = np.random.default_rng(11)
    chol = np.linalg.cholesky(0.3 * np.eye(n) + 0.7)
    x = rng.normal(size=(512, n)) @ chol.T
    y = np.stack([np.tanh(x[:, 0] - x[:, 1]), x[:, 2] * 0.5], axis=1)
    est = build_estimator(ANPParams(perturbation="device", passes="noisy_noisy",
                    decorrelation_lr=0.01), hw, rng)
    before = hw.cost(x, y).mean()
    for i in range(300):
        rows = rng.integers(0, 512, 32)
        est_ = estimate(est, hw, Window(x[rows], y[rows], np.ones(32, bool)))
        hw.write(-0.1 * est_.gradient)
    assert hw.cost(x, y).mean() < 0.5 * before
    z = hw.probe(x, y).inputs[0]
    assert np.max(np.abs(offdiagonal_correlation(z))) < 0.2 * np.max(
        np.abs(offdiagonal_correlation(x)))


def test_layers_without_bias_ignore_bias_writes_and_perturbations():
    from devsim.bench import Bench
    from devsim.network import LayerParams, Network, NetworkParams
    layers = (LayerParams(units=3, activation=Identity(), bias=False),)
    rng = np.random.default_rng(12)
    bench = Bench(Network(NetworkParams(layers=layers), 4, rng, rng), "mse")
    hw = bench.chip
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    update = rng.normal(size=hw.n_params)
    before = bench.read_params()
    hw.write(update)
    theta = bench.read_params()
    assert np.array_equal(theta[-3:], np.zeros(3))  # the absent bias stays at zero
    assert np.array_equal(theta[:-3], before[:-3] + update[:-3])  # the weights move
    bias_only = np.zeros((5, hw.n_params))
    bias_only[:, -3:] = 1.0
    assert np.array_equal(hw.cost(x, y, weight_perturbation=bias_only), hw.cost(x, y))


@pytest.mark.parametrize("method,params", [
    ("gd", BackpropParams()),
    ("np", NPParams(perturbation="gaussian", sigma=0.3)),
    ("np", NPParams(perturbation="rademacher", sigma=0.3)),
    ("wp", WPParams(perturbation="gaussian", sigma=0.3)),
])
def test_one_step_of_the_real_estimators_follows_the_werfel_recursion(method, params):
    # Linear student without bias, teacher W* = 0 (targets 0), one fresh x ~ N(0, I) per
    # step. For any fixed W the theory gives E ||W - lr g_hat - W*||^2 = r ||W||^2 + c with
    # eta = 2 lr / M (devsim's mse is (2/M) times the theory's loss). 4,000 one-step
    # trials from the same W; tolerance 5 standard errors of the sample mean, which is
    # at most half the change a factor 2 in the rate mapping makes (checked below).
    from devsim.bench import Bench
    from devsim.network import LayerParams, Network, NetworkParams
    from trainer import theory
    n_in, n_out, eta = 5, 3, 0.04
    layers = (LayerParams(units=n_out, activation=Identity(), bias=False),)
    rng = np.random.default_rng(13)
    bench = Bench(Network(NetworkParams(layers=layers), n_in, rng, rng), "mse")
    hw = bench.chip
    w = bench.read_params()[: n_out * n_in]
    est = build_estimator(params, hw, 14, bench=bench)
    lr = eta * n_out / 2.0
    trials = 4000
    e1 = np.empty(trials)
    for i in range(trials):
        x = rng.normal(size=(1, n_in))
        g = estimate(est, hw, Window(x, np.zeros((1, n_out)), np.ones(1, bool))).gradient
        e1[i] = np.sum((w - lr * g[: n_out * n_in]) ** 2)
    law = getattr(params, "perturbation", "gaussian")
    r, c = theory.recursion(method, eta, getattr(params, "sigma", 0.0), n_in, n_out, law)
    expected = r * np.sum(w ** 2) + c
    se = e1.std() / np.sqrt(trials)
    assert abs(e1.mean() - expected) < 5 * se
    r2, c2 = theory.recursion(method, 2 * eta, getattr(params, "sigma", 0.0), n_in, n_out, law)
    assert abs(r2 * np.sum(w ** 2) + c2 - expected) > 2 * 5 * se

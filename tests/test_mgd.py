"""MGD estimates against the true gradient of known costs."""
import numpy as np
import pytest

from conftest import Identity, build_estimator, estimate, make_bench, make_hardware
from trainer.base import Window
from trainer.mgd import MGDParams, highpass, highpass_np
from trainer.perturbations import rademacher_codes, rademacher_codes_np
from devsim import crng


def _window(x, y, steps):
    new = np.zeros(steps, bool)
    new[0] = True
    return Window(np.repeat(x[None], steps, 0), np.repeat(y[None], steps, 0), new)


def _linear_problem(seed=0):
    """A linear 4 -> 3 layer with MSE on one sample: cost is quadratic in the weights."""
    bench = make_bench((4, 3), activations=[Identity()], seed=seed)
    rng = np.random.default_rng(seed + 1)
    x, y = rng.normal(size=4), rng.normal(size=3)
    g = bench.reference().gradient(bench.read_params(), x[None], y[None])
    return bench.chip, x, y, g


@pytest.mark.parametrize("T", [1, 4, 15, 60])
def test_cosine_to_true_gradient_follows_one_over_sqrt_1_plus_K_over_T(T):
    hw, x, y, g = _linear_problem()
    K = hw.n_params  # 15 weight-perturbation channels
    est = build_estimator(MGDParams(target="weights", epsilon=1e-5), hw, T)
    trials = 1500
    G = np.array([estimate(est, hw, _window(x, y, T)).gradient for _ in range(trials)])
    # Second moment: E|g_hat|^2 = |g|^2 (1 + (K-1)/T) for Rademacher codes (exact in expectation).
    ratio = (G ** 2).sum(1) / (g @ g)
    predicted = 1 + (K - 1) / T
    assert abs(ratio.mean() - predicted) < 5 * ratio.std() / np.sqrt(trials)
    # The cosine itself: ratio of expectations gives 1/sqrt(1+(K-1)/T).
    cos_law = (G @ g).mean() / np.sqrt((G ** 2).sum(1).mean() * (g @ g))
    assert abs(cos_law - 1 / np.sqrt(predicted)) < 0.03
    # mean cosine is close to the law too (Jensen gap shrinks as T grows)
    cos = (G @ g) / np.linalg.norm(G, axis=1) / np.linalg.norm(g)
    assert abs(cos.mean() - 1 / np.sqrt(predicted)) < 0.12


def test_cosine_rises_with_integration_time():
    hw, x, y, g = _linear_problem(3)
    est = build_estimator(MGDParams(target="weights", epsilon=1e-5), hw, 0)
    means = []
    for T in (2, 8, 32, 128):
        G = np.array([estimate(est, hw, _window(x, y, T)).gradient for _ in range(200)])
        means.append(((G @ g) / np.linalg.norm(G, axis=1)).mean() / np.linalg.norm(g))
    assert np.all(np.diff(means) > 0)


@pytest.mark.parametrize("target", ["nodes", "weights"])
def test_estimate_is_unbiased_on_a_nonlinear_network(target):
    bench = make_bench((5, 4, 3), seed=2)
    hw = bench.chip
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=5), rng.random(3)
    g = bench.reference().gradient(bench.read_params(), x[None], y[None])
    est = build_estimator(MGDParams(target=target, epsilon=1e-4), hw, 1)
    trials = 3000
    G = np.array([estimate(est, hw, _window(x, y, 4)).gradient for _ in range(trials)])
    se = G.std(0) / np.sqrt(trials)
    assert np.all(np.abs(G.mean(0) - g) < 5 * se + 1e-6)


def test_node_mode_uses_each_synapse_input():
    """With node perturbation the weight estimate is the node estimate times the input,
    so it is exact in rank: dW_l is an outer product for a single-sample window."""
    hw = make_hardware((5, 4, 3), seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=5), rng.random(3)
    est = build_estimator(MGDParams(target="nodes", epsilon=1e-3), hw, 0)
    G = estimate(est, hw, _window(x, y, 1)).gradient
    W1 = G[: 4 * 5].reshape(4, 5)
    assert np.linalg.matrix_rank(W1, tol=1e-12 * np.abs(W1).max()) == 1
    b1 = G[20:24]
    np.testing.assert_allclose(W1, np.outer(b1, x), rtol=1e-10, atol=1e-14)


def test_baseline_remeasured_per_sample_and_counted():
    hw = make_hardware((5, 3), seed=0)
    est = build_estimator(MGDParams(target="nodes"), hw, 0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 5)), rng.random((12, 3))
    new = np.zeros(12, bool)
    new[[0, 4, 8]] = True  # three samples, each held four steps
    estimate(est, hw, Window(x, y, new))
    assert hw.steps == 12 + 3
    new[0] = False  # a sample carried over from the previous window: still re-measured
    estimate(est, hw, Window(x, y, new))
    assert hw.steps == 2 * 12 + 3 + 3


def test_codes_rms_hold_and_determinism():
    key = crng.stream_key_np(11, 0)
    K, steps, tau_p, eps = 50, 40, 4, 0.3
    out = np.empty((steps, K))
    rademacher_codes(key, 3, tau_p, eps / np.sqrt(K), out)
    np.testing.assert_array_equal(out, rademacher_codes_np(key, 3, steps, tau_p, K,
                                                           eps / np.sqrt(K)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), eps)  # eps is the L2 norm
    code_id = (3 + np.arange(steps)) // tau_p
    for t in range(1, steps):
        assert np.array_equal(out[t], out[t - 1]) == (code_id[t] == code_id[t - 1])
    # distinct codes are nearly orthogonal: |<u_a, u_b>|/K ~ 1/sqrt(K)
    codes = np.unique(out, axis=0) / (eps / np.sqrt(K))
    gram = codes @ codes.T / K
    off = gram[~np.eye(len(codes), dtype=bool)]
    pairs = len(off) / 2  # each pair appears twice in the Gram matrix
    assert abs(off.mean()) < 5 / np.sqrt(K * pairs)  # each entry has sd 1/sqrt(K)
    assert off.std() == pytest.approx(1 / np.sqrt(K), rel=0.35)
    # regenerable from the seed: same key, same codes in any chunking
    a = np.empty((20, K))
    b = np.empty((20, K))
    rademacher_codes(key, 3, tau_p, 1.0, a)
    rademacher_codes(key, 23, tau_p, 1.0, b)
    np.testing.assert_array_equal(np.vstack([a, b]) * eps / np.sqrt(K), out)


def test_weight_target_on_hardware_without_the_port_is_a_config_error():
    from devsim.params import ParamError
    import dataclasses
    hw = make_hardware((3, 2))
    hw.capabilities = dataclasses.replace(hw.capabilities, ports=frozenset({"nodes"}))
    with pytest.raises(ParamError, match="no 'weights' port"):
        build_estimator(MGDParams(target="weights"), hw, 0)


# ---------------------------------------------------------------- perturbation types
@pytest.mark.parametrize("target", ["weights", "nodes"])
@pytest.mark.parametrize("kind", ["walsh", "frequency", "time"])
def test_orthogonal_codes_give_the_gradient_over_one_whole_cycle(kind, target):
    """Over a whole cycle sum_c theta theta^T = cycle eps^2/K I exactly, so on a quadratic
    cost with tiny eps the normalised estimate equals the gradient (up to O(eps))."""
    hw, x, y, g = _linear_problem(4)
    est = build_estimator(MGDParams(target=target, perturbation=kind, epsilon=1e-6), hw, 2)
    G = estimate(est, hw, _window(x, y, est.perturbation.cycle)).gradient
    np.testing.assert_allclose(G, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())


@pytest.mark.parametrize("kind", ["code", "ternary"])
def test_random_codes_are_unbiased_on_a_quadratic(kind):
    hw, x, y, g = _linear_problem(5)
    est = build_estimator(MGDParams(target="weights", perturbation=kind, epsilon=1e-5), hw, 3)
    trials = 2000
    G = np.array([estimate(est, hw, _window(x, y, 5)).gradient for _ in range(trials)])
    se = G.std(0) / np.sqrt(trials)  # 5 standard errors per component
    assert np.all(np.abs(G.mean(0) - g) < 5 * se)


# ---------------------------------------------------------------- cost-change modes
def test_highpass_kernel_matches_twin_and_closed_form():
    rng = np.random.default_rng(0)
    costs, reset = rng.normal(size=200), rng.random(200) < 0.1
    reset[0] = True
    a = 1.6 / 2.6
    s1, s2 = np.zeros(2), np.zeros(2)
    out = np.concatenate([highpass(costs[:77], reset[:77], a, s1),
                          highpass(costs[77:], reset[77:], a, s1)])  # state carried
    np.testing.assert_allclose(out, highpass_np(costs, reset, a, s2), rtol=1e-12)
    # a step of height h after a reset decays as h a^n (first-order high-pass)
    step = np.r_[np.zeros(5), np.ones(20)]
    r = np.zeros(25, bool)
    r[0] = True
    np.testing.assert_allclose(highpass_np(step, r, a, np.zeros(2))[5:], a ** np.arange(1, 21))


def test_analog_mode_estimates_the_gradient_times_the_filter_gain():
    """With codes redrawn every step, E[C~_n theta_n] = a (eps^2/K) g for every step but
    the reset one (C~ = 0), a = tau_hp/(tau_hp+1): E[estimate] = a (T-1)/T g."""
    hw, x, y, g = _linear_problem(6)
    T = 8
    est = build_estimator(MGDParams(target="weights", mode="analog", tau_hp=1.6, epsilon=1e-5), hw, 4)
    trials = 3000
    G = np.array([estimate(est, hw, _window(x, y, T)).gradient for _ in range(trials)])
    assert hw.steps == trials * T  # no baseline inferences in analog mode
    expected = 1.6 / 2.6 * (T - 1) / T * g
    se = G.std(0) / np.sqrt(trials)
    assert np.all(np.abs(G.mean(0) - expected) < 5 * se)


def test_lowpass_integrator_converges_to_the_gradient():
    """The leaky integral of a stationary estimate reaches (1 - beta^n) g after n steps
    from rest, beta = tau_lp/(tau_lp+1), whatever the window length."""
    hw, x, y, g = _linear_problem(7)
    trials, tau_lp = 800, 20.0
    beta = tau_lp / (tau_lp + 1)
    G = []
    for i in range(trials):
        est = build_estimator(MGDParams(target="weights", integrator="lowpass", tau_lp=tau_lp,
                        epsilon=1e-5), hw, 100 + i)
        for _ in range(4):
            out = estimate(est, hw, _window(x, y, 10)).gradient
        G.append(out)
    G = np.array(G)
    se = G.std(0) / np.sqrt(trials)
    assert np.all(np.abs(G.mean(0) - (1 - beta ** 40) * g) < 5 * se)


# ---------------------------------------------------------------- controller imperfections
def test_cost_noise_adds_the_predicted_variance():
    """The noise part of C~ is n_t - n_0 (one baseline per held sample); correlated with
    independent codes it adds E[G_i^2] = 2 sigma^2 K / (T eps^2) per component."""
    hw, x, y, _ = _linear_problem(8)
    sigma, eps, T, K = 1e-3, 1e-2, 10, hw.n_params
    est = build_estimator(MGDParams(target="weights", epsilon=eps, cost_noise=sigma), hw, 5)
    trials = 2000
    # subtract the noise-free part (same codes, same seed) so only noise remains
    clean = build_estimator(MGDParams(target="weights", epsilon=eps), hw, 5)
    sq = np.array([(estimate(est, hw, _window(x, y, T)).gradient
                    - estimate(clean, hw, _window(x, y, T)).gradient) ** 2
                   for _ in range(trials)]).mean(1)
    predicted = 2 * sigma ** 2 * K / (T * eps ** 2)
    assert abs(sq.mean() - predicted) < 5 * sq.std() / np.sqrt(trials)


def test_cost_change_clip_and_nonfinite_changes_left_visible():
    hw, x, y, g = _linear_problem(9)
    c, T = 1e-9, 12
    est = build_estimator(MGDParams(target="weights", epsilon=1e-3, cost_change_clip=c), hw, 6)
    theta = est.perturbation.at_steps(0, T, 1)  # the codes the estimator will use
    G = estimate(est, hw, _window(x, y, T)).gradient
    change = theta @ g  # first-order cost changes, all far above c
    assert np.abs(change).min() > 100 * c
    expected = hw.n_params / T * (c * np.sign(change)) @ theta / 1e-3 ** 2
    np.testing.assert_allclose(G, expected, rtol=1e-12)
    bad = _window(np.full(4, np.nan), y, T)  # NaN costs: the estimate says so (the loop skips it)
    e = estimate(build_estimator(MGDParams(target="weights"), hw, 0), hw, bad)
    assert np.isnan(e.cost) and np.all(np.isnan(e.gradient))


# ---------------------------------------------------------------- diagnostics
def test_cosine_diagnostic_reaches_the_trace_window_by_window(tmp_path):
    """Each logged row (one window here) holds the cosine the loop's diagnostic gave for
    that window, replayed from the same config and seed."""
    from pathlib import Path

    from devsim import build, load_config, run
    from devsim.trace import read_trace
    root = Path(__file__).parents[1]
    sets = ["train.steps=2000", "train.eval_every=2000", "trace.log_every=1",
            "train.diagnose_cosine=true"]
    config = load_config(root / "configs/quickstart.yaml", sets)
    run(config, out=tmp_path / "c.h5")
    cos = read_trace(tmp_path / "c.h5").scalars["cosine"]
    loop = build(config).loop
    replay = []
    while loop.chip.steps < 2000:
        replay.append(loop.update().info["cosine"])
    np.testing.assert_array_equal(cos, replay)
    assert np.all((cos > 0) & (cos <= 1))


def test_cosine_diagnostic_is_the_cosine_to_the_reference_gradient():
    from devsim.assemble import cosine_diagnostic
    bench = make_bench((4, 3), activations=[Identity()], seed=10)
    rng = np.random.default_rng(11)
    window = _window(rng.normal(size=4), rng.normal(size=3), 30)
    est = build_estimator(MGDParams(target="weights"), bench.chip, 0)
    e = estimate(est, bench.chip, window).gradient
    g = bench.reference().gradient(bench.read_params(), window.x, window.y)
    assert cosine_diagnostic(bench)(window, e)["cosine"] == pytest.approx(
        e @ g / np.linalg.norm(e) / np.linalg.norm(g), rel=1e-12)

"""The analytic GD/NP/WP learning curves against an independent brute-force simulation.

The simulation below shares nothing with ``trainer.theory`` but the update rules
stated in its docstring: it evaluates the loss of the clean and the perturbed
student directly, draws every input and perturbation, and averages the squared
weight error over many independent runs.
"""
import math

import numpy as np
import pytest

from trainer import theory

N_IN, N_OUT = 4, 3
TRIALS = 10_000
# The mean of TRIALS i.i.d. runs is normal to good accuracy with standard error
# std / sqrt(TRIALS) (the std estimated from the same runs).  Each curve is compared
# at every step; Z = 4.5 keeps the chance that a correct formula fails anywhere on a
# 30-step curve below 30 * 7e-6 = 2e-4 while resolving a ~4% error in the
# per-step constants (the standard error here is about 1% of the mean).
Z = 4.5


def _draw(rng, law, sigma, shape):
    if law == "gaussian":
        return sigma * rng.standard_normal(shape)
    if law == "rademacher":
        return sigma * (2.0 * rng.integers(0, 2, size=shape) - 1.0)
    return sigma * math.sqrt(3.0) * rng.uniform(-1.0, 1.0, size=shape)


def _loss(w, x, target):
    return 0.5 * ((np.einsum("kmn,kn->km", w, x) - target) ** 2).sum(axis=1)


def simulate(method, eta, sigma, steps, e0, seed, law="gaussian", sequential=False,
             cost_noise=0.0, n_in=N_IN, n_out=N_OUT, trials=TRIALS):
    """Mean and standard error over runs of ||W_t - W*||_F^2, t = 0 .. steps.

    ``cost_noise``: standard deviation of a Gaussian error on each observed cost
    difference.
    """
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal((n_out, n_in))
    d0 = rng.standard_normal((n_out, n_in))
    d0 *= math.sqrt(e0) / np.linalg.norm(d0)
    w = np.broadcast_to(w_star + d0, (trials, n_out, n_in)).copy()
    errors = np.empty((steps + 1, trials))
    errors[0] = e0
    for t in range(1, steps + 1):
        x = rng.standard_normal((trials, n_in))
        target = x @ w_star.T
        if method == "gd":
            out = np.einsum("kmn,kn->km", w, x)
            step = (out - target)[:, :, None] * x[:, None, :]
        else:
            shape = (trials, n_out) if method == "np" else (trials, n_out, n_in)
            p = _draw(rng, law, sigma, shape).reshape(trials, -1)
            if sequential:
                mask = np.zeros_like(p)
                mask[np.arange(trials), rng.integers(p.shape[1], size=trials)] = 1.0
                p = p * mask
            p = p.reshape(shape)
            if method == "np":
                out = np.einsum("kmn,kn->km", w, x)
                dl = (0.5 * ((out + p - target) ** 2).sum(axis=1)
                      - 0.5 * ((out - target) ** 2).sum(axis=1))
            else:
                dl = _loss(w + p, x, target) - _loss(w, x, target)
            dl = (dl + cost_noise * rng.standard_normal(trials)) / sigma**2
            if method == "np":
                step = dl[:, None, None] * p[:, :, None] * x[:, None, :]
            else:
                step = dl[:, None, None] * p
        w -= eta * step
        errors[t] = ((w - w_star) ** 2).sum(axis=(1, 2))
    return errors.mean(axis=1), errors.std(axis=1, ddof=1) / math.sqrt(trials)


CASES = [("gd", "gaussian", False)] + [
    (method, law, sequential)
    for method in ("np", "wp") for law in theory.PERTURBATIONS for sequential in (False, True)
]


@pytest.mark.parametrize("method,law,sequential", CASES)
def test_curve_matches_monte_carlo(method, law, sequential):
    """The transient (e0 > 0, optimal rate) and the rise to the floor from e0 = 0."""
    for seed, (frac, e0, sigma) in enumerate(((0.5, 4.0, 0.3), (0.25, 0.0, 0.5))):
        if method == "gd" and e0 == 0.0:
            continue  # GD started at the teacher stays there: nothing to compare
        eta = frac * theory.max_learning_rate(method, N_IN, N_OUT, law, sequential)
        steps = 30
        mean, se = simulate(method, eta, sigma, steps, e0, seed, law, sequential)
        expected = theory.learning_curve(method, eta, sigma, N_IN, N_OUT, steps, e0,
                                         law, sequential)
        assert np.all(np.abs(mean[1:] - expected[1:]) <= Z * se[1:]), (
            np.abs(mean - expected) / np.maximum(se, 1e-300))


@pytest.mark.parametrize("method,sequential", [("np", False), ("np", True), ("wp", False),
                                               ("wp", True)])
def test_cost_noise_matches_monte_carlo(method, sequential):
    """Noisy cost readings raise the floor by h cost_noise^2 / sigma^2 (from e0 = 0).

    At the floor-optimal sigma the cost noise makes half of the drive, which a 30-step
    curve from the teacher shows at many standard errors.
    """
    cost_noise, steps = 0.3, 30
    sigma = theory.optimal_sigma(method, N_IN, N_OUT, cost_noise, sequential=sequential)
    eta = 0.25 * theory.max_learning_rate(method, N_IN, N_OUT, sequential=sequential)
    mean, se = simulate(method, eta, sigma, steps, 0.0, seed=20, sequential=sequential,
                        cost_noise=cost_noise)
    expected = theory.learning_curve(method, eta, sigma, N_IN, N_OUT, steps, 0.0,
                                     sequential=sequential, cost_noise=cost_noise)
    assert np.all(np.abs(mean[1:] - expected[1:]) <= Z * se[1:])
    # omitting the noise term would have failed the comparison above
    quiet = theory.learning_curve(method, eta, sigma, N_IN, N_OUT, steps, 0.0,
                                  sequential=sequential)
    assert expected[-1] - quiet[-1] > 3 * Z * se[-1]


@pytest.mark.parametrize("law", theory.PERTURBATIONS)
@pytest.mark.parametrize("method,sequential", [("np", False), ("np", True), ("wp", False),
                                               ("wp", True)])
def test_optimal_sigma_minimises_the_floor(method, sequential, law):
    cost_noise = 0.05
    eta = 0.3 * theory.max_learning_rate(method, N_IN, N_OUT, law, sequential)
    best = theory.optimal_sigma(method, N_IN, N_OUT, cost_noise, law, sequential)
    sigmas = best * np.array([0.8, 0.95, 1.0, 1.05, 1.25])
    floors = [theory.error_floor(method, eta, s, N_IN, N_OUT, law, sequential, cost_noise)
              for s in sigmas]
    assert int(np.argmin(floors)) == 2
    # at the optimum both parts of the drive are equal, so the floor is twice either
    quiet = theory.error_floor(method, eta, best, N_IN, N_OUT, law, sequential)
    assert floors[2] == pytest.approx(2 * quiet, rel=1e-12)


@pytest.mark.parametrize("method", theory.METHODS)
def test_stability_limit_in_simulation(method):
    """Below the maximum rate the simulated mean error falls, above it it grows.

    Above the limit the mean is carried by rare runs whose error explodes, so a
    finite sample falls short of the theory's growth: only the direction is
    asserted there (the theory itself is checked below the limit).
    """
    eta_max = theory.max_learning_rate(method, N_IN, N_OUT)
    sigma, e0, steps = 0.01, 1.0, 60
    below, se = simulate(method, 0.8 * eta_max, sigma, steps, e0, seed=10)
    expected = theory.learning_curve(method, 0.8 * eta_max, sigma, N_IN, N_OUT, steps, e0)
    assert abs(below[-1] - expected[-1]) <= Z * se[-1]
    assert below[-1] < 0.9 * e0
    above, _ = simulate(method, 1.2 * eta_max, sigma, steps, e0, seed=11)
    assert above[-1] > 2.0 * e0


@pytest.mark.parametrize("law", theory.PERTURBATIONS)
@pytest.mark.parametrize("method", theory.METHODS)
def test_stability_limit_in_theory(method, law):
    eta_max = theory.max_learning_rate(method, N_IN, N_OUT, law)
    assert theory.recursion(method, eta_max, 0.1, N_IN, N_OUT, law).r == pytest.approx(1.0)
    eps = 1e-3
    assert theory.recursion(method, (1 - eps) * eta_max, 0.1, N_IN, N_OUT, law).r < 1.0
    assert theory.recursion(method, (1 + eps) * eta_max, 0.1, N_IN, N_OUT, law).r > 1.0
    assert math.isfinite(theory.error_floor(method, (1 - eps) * eta_max, 0.1, N_IN, N_OUT, law))
    assert theory.error_floor(method, (1 + eps) * eta_max, 0.1, N_IN, N_OUT, law) == math.inf
    curve = theory.learning_curve(method, (1 + eps) * eta_max, 0.1, N_IN, N_OUT, 200_000, 1.0, law)
    assert curve[-1] > 1e3 * curve[0]


def test_max_and_optimal_rates_gaussian_closed_forms():
    """Werfel et al.: the limit falls with the noise dimension (M for NP, MN for WP)."""
    for n, m in ((1, 1), (4, 3), (10, 4), (50, 7)):
        exact = {"gd": 2 / (n + 2), "np": 2 / ((m + 2) * (n + 2)),
                 "wp": 2 / ((m * n + 2) * (n + 2))}
        for method, eta_max in exact.items():
            assert theory.max_learning_rate(method, n, m) == pytest.approx(eta_max, rel=1e-14)
            # at the optimum (half the maximum) 1 - r = a eta / 2 = eta, as a = 2
            assert theory.best_decay(method, n, m) == pytest.approx(eta_max / 2, rel=1e-14)
        for method in theory.METHODS:
            eta_opt = theory.optimal_learning_rate(method, n, m)
            etas = eta_opt * np.array([0.9, 0.99, 1.0, 1.01, 1.1])
            rs = [theory.recursion(method, e, 0.0, n, m).r for e in etas]
            assert int(np.argmin(rs)) == 2
            assert 1 - rs[2] == pytest.approx(theory.best_decay(method, n, m), rel=1e-12)


def test_rademacher_against_gaussian():
    """Rademacher perturbations have |xi| fixed: M + 2 -> M (NP), MN + 2 -> MN (WP)."""
    for n, m in ((1, 1), (4, 3), (10, 4)):
        rad_np = theory.max_learning_rate("np", n, m, "rademacher")
        rad_wp = theory.max_learning_rate("wp", n, m, "rademacher")
        assert rad_np == pytest.approx(2 / (m * (n + 2)))
        assert rad_wp == pytest.approx(2 / (m * n * (n + 2)))
        eta, sigma = 1e-3, 0.2
        # constants c: NP  N M^3 / 4 against N M (M + 2)(M + 4) / 4;
        # WP  M^2 N^2 ((M + 2)(N + 2) - 6) / 4 against N (N + 2) M (M + 2)(M N + 4) / 4
        scale = eta**2 * sigma**2 / 4
        assert theory.recursion("np", eta, sigma, n, m, "rademacher").c == pytest.approx(
            scale * n * m**3)
        assert theory.recursion("np", eta, sigma, n, m).c == pytest.approx(
            scale * n * m * (m + 2) * (m + 4))
        assert theory.recursion("wp", eta, sigma, n, m, "rademacher").c == pytest.approx(
            scale * m**2 * n**2 * ((m + 2) * (n + 2) - 6))
        assert theory.recursion("wp", eta, sigma, n, m).c == pytest.approx(
            scale * n * (n + 2) * m * (m + 2) * (m * n + 4))
        for method in ("np", "wp"):
            assert (theory.error_floor(method, eta, sigma, n, m, "rademacher")
                    < theory.error_floor(method, eta, sigma, n, m))


def test_small_rates_coincide():
    """As eta -> 0 every method follows e0 exp(-2 eta t) (sigma = 0).

    log r - log(1 - 2 eta) = log1p(b eta^2 / (1 - 2 eta)) lies in [0, b eta^2 / (1 - 2
    eta)], which bounds each curve's distance from (1 - 2 eta)^t exactly.
    """
    eta, steps = 1e-4, 5000
    t = np.arange(steps + 1)
    reference = t * math.log1p(-2 * eta)
    curves = {method: theory.learning_curve(method, eta, 0.0, N_IN, N_OUT, steps, 1.0)
              for method in theory.METHODS}
    b_wp = (N_OUT * N_IN + 2) * (N_IN + 2)
    for method, curve in curves.items():
        gap = np.log(curve) - reference
        assert np.all(gap >= -1e-12)
        assert np.all(gap <= t * b_wp * eta**2 / (1 - 2 * eta) + 1e-12)
    for method in ("np", "wp"):
        assert curves[method][-1] == pytest.approx(curves["gd"][-1], rel=5e-3)
    assert curves["gd"][-1] == pytest.approx(math.exp(-1.0), rel=5e-3)


@pytest.mark.parametrize("law", theory.PERTURBATIONS)
@pytest.mark.parametrize("method", ("np", "wp"))
def test_floor_proportional_to_sigma_squared(method, law):
    eta = 0.3 * theory.max_learning_rate(method, N_IN, N_OUT, law)
    floors = [theory.error_floor(method, eta, s, N_IN, N_OUT, law) for s in (0.1, 0.2, 0.4)]
    assert floors[1] == pytest.approx(4 * floors[0], rel=1e-12)
    assert floors[2] == pytest.approx(16 * floors[0], rel=1e-12)
    curve = theory.learning_curve(method, eta, 0.2, N_IN, N_OUT, 20_000, 3.0, law)
    assert curve[-1] == pytest.approx(floors[1], rel=1e-9)
    assert theory.error_floor(method, eta, 0.0, N_IN, N_OUT, law) == 0.0


@pytest.mark.parametrize("law", theory.PERTURBATIONS)
def test_sequential_equals_parallel_when_one_thing_is_perturbed(law):
    """With one output, sequential NP is parallel NP; with one weight, likewise for WP."""
    for method, m in (("np", 1), ("wp", 1)):
        n = N_IN if method == "np" else 1
        seq = theory.recursion(method, 0.05, 0.3, n, m, law, sequential=True)
        par = theory.recursion(method, 0.05, 0.3, n, m, law)
        assert seq.r == pytest.approx(par.r, rel=1e-14)
        assert seq.c == pytest.approx(par.c, rel=1e-14)


def test_sequential_is_slower_by_a_size_free_factor():
    """Gaussian NP: parallel decays 3M/(M+2) times faster, Rademacher: as fast."""
    for n, m in ((4, 3), (100, 3), (4, 30)):
        ratio = theory.best_decay("np", n, m) / theory.best_decay("np", n, m, sequential=True)
        assert ratio == pytest.approx(3 * m / (m + 2), rel=1e-12)
        ratio = (theory.best_decay("np", n, m, "rademacher")
                 / theory.best_decay("np", n, m, "rademacher", sequential=True))
        assert ratio == pytest.approx(1.0, rel=1e-12)


def test_curve_is_the_iterated_recursion():
    for method, eta in (("gd", 0.2), ("np", 0.02), ("wp", 1e-3)):
        r, c = theory.recursion(method, eta, 0.3, N_IN, N_OUT)
        e = [2.5]
        for _ in range(50):
            e.append(r * e[-1] + c)
        curve = theory.learning_curve(method, eta, 0.3, N_IN, N_OUT, 50, 2.5)
        np.testing.assert_allclose(curve, e, rtol=1e-12)


@pytest.mark.parametrize("call", [
    lambda: theory.recursion("bp", 0.1, 0.1, 4, 3),
    lambda: theory.recursion("np", 0.0, 0.1, 4, 3),
    lambda: theory.recursion("np", 0.1, -0.1, 4, 3),
    lambda: theory.recursion("np", 0.1, 0.1, 0, 3),
    lambda: theory.recursion("np", 0.1, 0.1, 4, 2.5),
    lambda: theory.recursion("np", 0.1, 0.1, 4, 3, "cauchy"),
    lambda: theory.recursion("gd", 0.1, 0.1, 4, 3, sequential=True),
    lambda: theory.learning_curve("np", 0.1, 0.1, 4, 3, -1, 1.0),
    lambda: theory.learning_curve("np", 0.1, 0.1, 4, 3, 10, -1.0),
    lambda: theory.recursion("np", 0.1, 0.1, 4, 3, cost_noise=-0.1),
    lambda: theory.recursion("wp", 0.1, 0.0, 4, 3, cost_noise=0.1),
    lambda: theory.optimal_sigma("gd", 4, 3, 0.1),
])
def test_invalid_arguments_rejected(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("sigma, cost_noise", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.2)])
def test_gd_curve_is_a_pure_geometric_decay_whatever_sigma_and_cost_noise(sigma, cost_noise):
    # GD injects nothing: e_t = r^t e0 with r = 1 - 2 eta + (N + 2) eta^2, no floor.
    eta, n_in, e0 = 0.05, 6, 2.5
    r = 1 - 2 * eta + (n_in + 2) * eta ** 2
    curve = theory.learning_curve("gd", eta, sigma, n_in, 3, 40, e0, cost_noise=cost_noise)
    np.testing.assert_allclose(curve, e0 * r ** np.arange(41), rtol=1e-12)


def test_a_curve_of_zero_steps_is_the_start():
    assert theory.learning_curve("np", 0.01, 0.1, 4, 2, 0, 1.5).tolist() == [1.5]
    with pytest.raises(ValueError, match="steps: must be an integer >= 0"):
        theory.learning_curve("np", 0.01, 0.1, 4, 2, -1, 1.5)

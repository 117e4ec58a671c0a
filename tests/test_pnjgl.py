"""The joint graphical lasso solvers (devsim.analysis.pnjgl, selection, synthetic):
closed-form steps against their defining equations, whole solutions against a generic
convex solver (cvxpy, p = 6), the optimality conditions at a stated tolerance, and
perturbed-node recovery on the authors' set-up."""
import dataclasses

import numpy as np
import pytest

from devsim.analysis.pnjgl import (METHODS, AdmmSettings, _column_shrink, _prox_fused,
                                   _prox_group, empirical_covariance, expand, optimality, pnjgl)
from devsim.analysis.selection import (auc, degrees_of_freedom, detection, fit_path,
                                       information_criterion, lambda2_max, stability_selection)
from devsim.analysis.synthetic import perturbed_pair, sample

TIGHT = AdmmSettings(eps_rel=1e-9, eps_abs=1e-11, max_iter=20000)
CLARABEL = dict(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
"""cvxpy's Clarabel run to tight tolerances (its defaults leave errors near 1e-4)."""


def _problem(p=6, n=12, n_perturbed=1, seed=1, density=0.3):
    rng = np.random.default_rng(seed)
    pair = perturbed_pair(p, n_perturbed, rng, density=density)
    return (pair, empirical_covariance(sample(pair.theta1, n, rng)),
            empirical_covariance(sample(pair.theta2, n, rng)), n)


def test_expand_solves_its_stationarity_equation(rng):
    a = rng.standard_normal((7, 7))
    a = (a + a.T) / 2
    for r, n in ((0.5, 3.0), (4.0, 100.0)):
        theta = expand(a, r, n)
        assert np.linalg.eigvalsh(theta)[0] > 0
        # gradient of -n log det Theta + r |Theta - A|^2 vanishes
        grad = -n * np.linalg.inv(theta) + 2 * r * (theta - a)
        assert np.abs(grad).max() < 1e-9 * n


def test_elementwise_proxes_match_cvxpy(rng):
    cp = pytest.importorskip("cvxpy")
    a1, a2 = rng.normal(0, 1.5, 40), rng.normal(0, 1.5, 40)
    a2[:10] = a1[:10] + rng.normal(0, 0.1, 10)  # pairs close enough to fuse
    t1, t2 = 0.4, 0.3
    z1, z2 = cp.Variable(40), cp.Variable(40)
    fit = 0.5 * cp.sum_squares(z1 - a1) + 0.5 * cp.sum_squares(z2 - a2)
    lasso = t1 * (cp.norm1(z1) + cp.norm1(z2))
    pair_norms = cp.sum(cp.norm(cp.vstack([z1, z2]), 2, axis=0))
    for prox, penalty in ((_prox_fused, cp.norm1(z1 - z2)), (_prox_group, pair_norms)):
        cp.Problem(cp.Minimize(fit + lasso + t2 * penalty)).solve(
            **{**CLARABEL, "tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12})
        b1, b2 = prox(a1, a2, t1, t2)
        assert np.abs(b1 - z1.value).max() < 1e-6 and np.abs(b2 - z2.value).max() < 1e-6
    y = rng.standard_normal((5, 8))
    y[:, 2] *= 0.01  # a column inside the threshold
    shrunk = _column_shrink(y, 0.5)
    norms = np.linalg.norm(y, axis=0)
    assert np.all(shrunk[:, 2] == 0)
    np.testing.assert_allclose(np.linalg.norm(shrunk, axis=0), np.maximum(norms - 0.5, 0))


def _cvxpy_solution(cp, method, s1, s2, n, lam1, lam2):
    p = len(s1)
    t1, t2 = cp.Variable((p, p), symmetric=True), cp.Variable((p, p), symmetric=True)
    objective = (n * (-cp.log_det(t1) + cp.trace(s1 @ t1))
                 + n * (-cp.log_det(t2) + cp.trace(s2 @ t2))
                 + lam1 * (cp.sum(cp.abs(t1)) + cp.sum(cp.abs(t2))))
    constraints = []
    if method == "pnjgl":
        v = cp.Variable((p, p))
        constraints = [t1 - t2 == v + v.T]
        objective += lam2 * cp.sum(cp.norm(v, 2, axis=0))
    elif method == "fused":
        objective += lam2 * cp.sum(cp.abs(t1 - t2))
    else:
        pairs = cp.vstack([cp.vec(t1, order="F"), cp.vec(t2, order="F")])
        objective += lam2 * cp.sum(cp.norm(pairs, 2, axis=0))
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(**CLARABEL)
    return t1.value, t2.value, problem.value


@pytest.mark.parametrize("method", ["pnjgl", "fused", "group"])
def test_admm_agrees_with_a_generic_convex_solver(method):
    cp = pytest.importorskip("cvxpy")
    _, s1, s2, n = _problem()
    lam1, lam2 = 0.1 * n, (0.3 if method == "pnjgl" else 0.1) * n
    ref1, ref2, ref_value = _cvxpy_solution(cp, method, s1, s2, n, lam1, lam2)
    result = METHODS[method](s1, s2, n, n, lam1, lam2, settings=TIGHT)
    assert result.converged
    scale = max(np.abs(ref1).max(), np.abs(ref2).max())
    assert np.abs(result.theta1 - ref1).max() < 1e-5 * scale
    assert np.abs(result.theta2 - ref2).max() < 1e-5 * scale
    assert abs(result.objective - ref_value) < 1e-7 * abs(ref_value)


def test_pnjgl_satisfies_the_optimality_conditions():
    _, s1, s2, n = _problem(p=15, n=30, n_perturbed=2, seed=3, density=0.15)
    tight = pnjgl(s1, s2, n, n, 0.1 * n, 0.5 * n, settings=TIGHT)
    # the stated tolerance at a tight stop: every KKT violation below 1e-7 (relative)
    assert tight.converged and max(optimality(tight).values()) < 1e-7
    assert 0 < len(tight.selected) < 15  # the test covers both zero and non-zero columns
    # the default stop (relative residuals 1e-4) leaves violations below 1e-2
    default = pnjgl(s1, s2, n, n, 0.1 * n, 0.5 * n)
    assert default.converged and max(optimality(default).values()) < 1e-2
    for method in ("fused", "group"):
        result = METHODS[method](s1, s2, n, n, 0.1 * n, 0.1 * n, settings=TIGHT)
        assert max(optimality(result).values()) < 1e-7
    # a wrong certificate is caught: perturb the solution
    broken = dataclasses.replace(tight, state={**tight.state, "z1": tight.state["z1"] * 1.01})
    assert optimality(broken)["stationarity"] > 1e-3


def test_warm_start_reaches_the_same_solution_faster():
    _, s1, s2, n = _problem(p=12, n=24, seed=4)
    first = pnjgl(s1, s2, n, n, 0.1 * n, 0.6 * n, settings=TIGHT)
    cold = pnjgl(s1, s2, n, n, 0.1 * n, 0.5 * n, settings=TIGHT)
    warm = pnjgl(s1, s2, n, n, 0.1 * n, 0.5 * n, settings=TIGHT, warm_start=first)
    assert warm.iterations < cold.iterations
    np.testing.assert_allclose(warm.theta1, cold.theta1, atol=1e-7)


def test_at_lambda2_max_nothing_changes_and_the_networks_are_equal():
    _, s1, s2, n = _problem(p=10, n=20, seed=5)
    for method in ("pnjgl", "fused"):
        top = lambda2_max(method, s1, s2, n, n)
        result = METHODS[method](s1, s2, n, n, 0.1 * n, top * 1.001, settings=TIGHT)
        assert len(result.selected) == 0 or result.node_scores.max() < 1e-6
        np.testing.assert_allclose(result.theta1, result.theta2, atol=1e-6)


def test_recovers_the_perturbed_nodes_on_the_authors_set_up():
    """p = 50, n = 2p, 2 perturbed nodes, the authors' lambda1 = 0.1 n, lambda2 = n."""
    pair, s1, s2, n = _problem(p=50, n=100, n_perturbed=2, seed=0, density=0.1)
    result = pnjgl(s1, s2, n, n, 0.1 * n, float(n))
    assert sorted(result.selected.tolist()) == sorted(pair.perturbed.tolist())
    fused = METHODS["fused"](s1, s2, n, n, 0.1 * n, 0.05 * n)
    assert len(fused.selected) > 10  # edge-wise fusion spreads over many nodes


def test_synthetic_pair_differs_only_in_the_perturbed_rows(rng):
    pair = perturbed_pair(20, 3, rng)
    diff = pair.theta1 - pair.theta2
    changed = np.flatnonzero(np.abs(diff).sum(axis=0))
    assert set(changed) >= set(pair.perturbed) and np.allclose(diff, diff.T)
    rows = np.zeros(20, bool)
    rows[pair.perturbed] = True
    assert np.all(diff[np.ix_(~rows, ~rows)] == 0)
    least = [np.linalg.eigvalsh(theta)[0] for theta in (pair.theta1, pair.theta2)]
    assert min(least) == pytest.approx(0.1) and max(least) >= 0.1


def test_path_criterion_degrees_of_freedom_and_ranking():
    pair, s1, s2, n = _problem(p=30, n=60, n_perturbed=2, seed=2, density=0.1)
    path = fit_path("pnjgl", s1, s2, n, n, 0.1 * n)
    assert np.all(np.diff(path.lambda2s) < 0)
    values = [information_criterion(r, "bic") for r in path.results]
    assert path.best == int(np.argmin(values))
    # df counts the union of supports plus the structurally non-zero differences
    r = path.results[-1]
    upper = np.triu_indices(30)
    nz1, nz2 = r.theta1[upper] != 0, r.theta2[upper] != 0
    differs = (r.state["v"] + r.state["v"].T)[upper] != 0
    assert degrees_of_freedom(r) == (nz1 | nz2).sum() + (nz1 & nz2 & differs).sum()
    aic = information_criterion(r, "aic")
    bic = information_criterion(r, "bic")
    assert bic - aic == pytest.approx((np.log(2 * n) - 2) * degrees_of_freedom(r))
    # entry order: nodes declared at larger lambda2 rank first; the perturbed lead
    entry = path.entry
    assert np.all(np.diff(entry[path.ranking]) <= 0)
    assert set(path.ranking[:2].tolist()) == set(pair.perturbed.tolist())


def test_stability_selection_frequencies():
    pair, _, _, _ = _problem(p=20, n=10, n_perturbed=1, seed=6, density=0.15)
    rng = np.random.default_rng(0)
    x1, x2 = sample(pair.theta1, 200, rng), sample(pair.theta2, 200, rng)
    freq = stability_selection(x1, x2, "pnjgl", 0.1 * 200, 0.5 * 200, rng, subsamples=6)
    assert freq.shape == (20,) and np.all((0 <= freq) & (freq <= 1))
    assert freq[pair.perturbed[0]] == 1.0 and np.median(freq) == 0.0


def test_detection_and_auc_by_hand():
    assert detection([1, 2, 3], [2, 3]) == {"precision": 2 / 3, "recall": 1.0, "declared": 3.0}
    assert detection([], [0])["precision"] == 0.0
    assert auc(np.array([3.0, 2.0, 1.0, 0.0]), [0]) == 1.0
    assert auc(np.array([0.0, 0.0, 1.0, 0.0]), [0]) == pytest.approx(2 / 6)  # two ties, one loss


def test_bad_input_is_refused():
    s = np.eye(3)
    with pytest.raises(ValueError, match="square and of one shape"):
        pnjgl(s, np.eye(4), 5, 5, 1.0, 1.0)
    with pytest.raises(ValueError, match="n1, n2 > 0"):
        pnjgl(s, s, 0, 5, 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        pnjgl(s * np.nan, s, 5, 5, 1.0, 1.0)

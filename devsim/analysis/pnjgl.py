"""Two Gaussian graphical models over the same nodes, estimated jointly.

Given sample covariances S_1, S_2 of the same p nodes under two conditions (n_1 and
n_2 samples), every estimator here minimises

    sum_k n_k (-log det Theta_k + tr(S_k Theta_k)) + lambda1 (|Theta_1|_1 + |Theta_2|_1)
        + lambda2 P(Theta_1, Theta_2)

over positive definite Theta_1, Theta_2 (the l1 norms cover the diagonal unless
``penalize_diagonal=False``). The penalty P on how the two networks differ selects
the estimator:

- ``pnjgl``, the perturbed-node joint graphical lasso (Mohan, Chung, Han, Witten, Lee
  and Fazel, NIPS 2012; Mohan, London, Fazel, Witten and Lee, JMLR 15, 2014):
  P = Psi(Theta_1 - Theta_2), the row-column overlap norm with q = 2,
  Psi(D) = min { sum_j |V_j|_2 : V + V^T = D } over the columns V_j of V. A node is
  *perturbed* when its column of V is not zero: all its edges may change at once.
- ``fused`` and ``group``, the joint graphical lasso baselines (Danaher, Wang and
  Witten, JRSS-B 76, 2014): P = sum_ij |Theta_1,ij - Theta_2,ij| (edges change one at a
  time) and P = sum_ij sqrt(Theta_1,ij^2 + Theta_2,ij^2) (the two networks share their
  zeros; nothing pulls their values together).

All three are solved by ADMM with the closed-form eigen-decomposition step

    argmin_Theta -n log det Theta + r |Theta - A|_F^2 = U diag((d + sqrt(d^2 + 2 n / r)) / 2) U^T

for symmetric A = U diag(d) U^T (set the gradient -n Theta^-1 + 2 r (Theta - A) to zero
in A's eigenbasis: theta^2 - d theta - n / (2 r) = 0). PNJGL uses r = rho, its
splitting Theta_1 - Theta_2 = V + W, V = W^T, Theta_k = Z_k weighting the Theta_k
step by two quadratic terms; the joint graphical lasso's single term gives r = rho / 2.
Each run steps rho through a schedule (``rho``, times ``rho_factor``, up to
``rho_max``, the multipliers carried over), each stage iterating until the primal and
dual residuals meet Boyd et al.'s absolute-plus-relative tolerances (Foundations and
Trends in ML 3, 2011, section 3.3) or ``max_iter`` iterations pass. The returned
precision matrices are the sparse copies Z_k.

The schedule's numbers are the authors' (1, times 5, up to 5), but in units of
n s^2, n = (n_1 + n_2) / 2 and s the mean diagonal entry of (S_1 + S_2) / 2: scaling
the data by c scales the solution by 1 / c and the best step size by c^2, and the
loss by n. On the authors' synthetic set-up (p = 50, n = 100, lambda1 = 0.1 n,
lambda2 = n) their absolute rho = 1 is 0.055-0.071 in these units and takes 560-990
iterations to the default tolerances, rho = 1 here 47-68 (5 seeds). The authors'
code stops on a relative change of Theta below 1e-4; here both residuals must meet
their tolerances.

The solvers run with one BLAS thread: their matrices are small, and at p = 50 an
iteration took 1.4 ms on one thread against 13-16 ms on two on the shared 2-core
machine under load (eigen-decompositions dominate; NumPy's LAPACK call is already
the whole step, so there is nothing for Numba to compile).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["AdmmSettings", "JointResult", "pnjgl", "fused_jgl", "group_jgl", "METHODS",
           "empirical_covariance", "optimality", "expand"]


class AdmmSettings(NamedTuple):
    """ADMM step size schedule and stopping rule (defaults: the authors' schedule)."""

    rho: float = 1.0
    """First step size (penalty weight of the augmented Lagrangian), in units of
    n s^2 (module doc)."""
    rho_factor: float = 5.0
    """Multiplier from one stage's step size to the next."""
    rho_max: float = 5.0
    """Last step size: stages run for rho, rho * factor, ... while <= rho_max."""
    max_iter: int = 1000
    """Most iterations of one stage."""
    eps_abs: float = 1e-6
    """Absolute part of the residual tolerances (per matrix entry)."""
    eps_rel: float = 1e-4
    """Relative part of the residual tolerances."""


@dataclass(frozen=True)
class JointResult:
    """Two estimated precision matrices, their difference and the nodes that changed."""

    method: str
    """``pnjgl``, ``fused`` or ``group``."""
    theta1: np.ndarray
    """Estimated precision matrix of condition 1 (p, p)."""
    theta2: np.ndarray
    """Estimated precision matrix of condition 2 (p, p)."""
    node_scores: np.ndarray
    """How much each node's row and column changed (p,): the column norms |V_j|_2 for
    PNJGL, the column norms of theta1 - theta2 for the baselines."""
    iterations: int
    """ADMM iterations over all step-size stages."""
    primal_residual: float
    """Norm of the constraint violation at the last iteration."""
    dual_residual: float
    """Norm of the stationarity violation the last step left (Boyd et al. 3.3)."""
    converged: bool
    """Whether the last stage met both tolerances within ``max_iter``."""
    objective: float
    """The minimised objective at (theta1, theta2) (for PNJGL with Psi bounded by the
    returned V; inf if a matrix is not positive definite)."""
    problem: dict = field(repr=False)
    """The data and weights solved for: S1, S2, n1, n2, lambda1, lambda2, penalize_diagonal."""
    state: dict = field(repr=False)
    """Final ADMM variables and multipliers, for a warm start and :func:`optimality`."""

    @property
    def difference(self) -> np.ndarray:
        """theta1 - theta2."""
        return self.theta1 - self.theta2

    @property
    def ranking(self) -> np.ndarray:
        """Node indices by decreasing score (ties by index)."""
        return np.argsort(-self.node_scores, kind="stable")

    @property
    def selected(self) -> np.ndarray:
        """Nodes the estimator declares changed: a non-zero score, in ranking order."""
        return self.ranking[:int(np.count_nonzero(self.node_scores))]


def empirical_covariance(x: np.ndarray) -> np.ndarray:
    """Maximum-likelihood covariance (divisor n) of the rows of ``x`` (n, p)."""
    centred = x - x.mean(axis=0)
    return centred.T @ centred / len(x)


def expand(a: np.ndarray, r: float, n: float) -> np.ndarray:
    """argmin over symmetric Theta of -n log det Theta + r |Theta - a|_F^2 (module doc)."""
    d, u = np.linalg.eigh((a + a.T) / 2)
    return (u * ((d + np.sqrt(d * d + 2.0 * n / r)) / 2)) @ u.T


def _soft(x: np.ndarray, t) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _column_shrink(y: np.ndarray, t: float) -> np.ndarray:
    """Each column y_j scaled by max(1 - t / |y_j|, 0): the prox of t sum_j |y_j|_2."""
    norms = np.linalg.norm(y, axis=0)
    return y * (np.maximum(norms - t, 0.0) / np.where(norms > 0, norms, 1.0))


def _l1_weights(p: int, lambda1: float, penalize_diagonal: bool) -> np.ndarray:
    weights = np.full((p, p), float(lambda1))
    if not penalize_diagonal:
        np.fill_diagonal(weights, 0.0)
    return weights


def _loss(s: np.ndarray, n: float, theta: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(theta)
    if sign <= 0:
        return np.inf
    return n * (float(np.sum(s * theta)) - logdet)


def _one_blas_thread(solver):
    """Run ``solver`` with BLAS limited to one thread (module doc)."""
    @functools.wraps(solver)
    def limited(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return solver(*args, **kwargs)
    return limited


def _check(s1, s2, n1, n2, lambda1, lambda2) -> None:
    s1, s2 = np.asarray(s1), np.asarray(s2)
    if s1.ndim != 2 or s1.shape[0] != s1.shape[1] or s1.shape != s2.shape:
        raise ValueError(f"S1 and S2 must be square and of one shape, got {s1.shape} "
                         f"and {s2.shape}")
    if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
        raise ValueError("S1 and S2 must be finite")
    if min(n1, n2) <= 0 or lambda1 < 0 or lambda2 < 0:
        raise ValueError(f"need n1, n2 > 0 and lambda1, lambda2 >= 0, got n = "
                         f"({n1}, {n2}), lambda = ({lambda1}, {lambda2})")


def _stages(settings: AdmmSettings, s1, s2, n1, n2) -> list[float]:
    """The absolute step sizes of the schedule (module doc)."""
    s_mean = float(np.mean(np.diag(s1) + np.diag(s2))) / 2
    unit = (n1 + n2) / 2 * (s_mean * s_mean if s_mean > 0 else 1.0)
    rhos = [settings.rho]
    while (settings.rho_factor > 1
           and rhos[-1] * settings.rho_factor <= settings.rho_max * (1 + 1e-12)):
        rhos.append(rhos[-1] * settings.rho_factor)
    return [rho * unit for rho in rhos]


@_one_blas_thread
def pnjgl(s1, s2, n1: float, n2: float, lambda1: float, lambda2: float, *,
          penalize_diagonal: bool = True, settings: AdmmSettings = AdmmSettings(),
          warm_start: JointResult | None = None) -> JointResult:
    """The perturbed-node joint graphical lasso (module doc), solved by the authors' ADMM.

    ``warm_start``: a PNJGL result on the same nodes whose variables and multipliers
    start this run (a path over lambda2 converges in far fewer iterations).
    """
    _check(s1, s2, n1, n2, lambda1, lambda2)
    s1, s2 = np.asarray(s1, dtype=float), np.asarray(s2, dtype=float)
    p = len(s1)
    l1 = _l1_weights(p, lambda1, penalize_diagonal)
    if warm_start is not None and warm_start.method == "pnjgl":
        st = {k: v.copy() for k, v in warm_start.state.items()}
    else:
        eye, zero = np.eye(p), np.zeros((p, p))
        st = dict(theta1=eye, theta2=eye.copy(), z1=eye.copy(), z2=eye.copy(), v=zero,
                  w=zero.copy(), lam=zero.copy(), gam=zero.copy(), q1=zero.copy(),
                  q2=zero.copy())
    t1, t2, z1, z2, v, w = (st[k] for k in ("theta1", "theta2", "z1", "z2", "v", "w"))
    lam, gam, q1, q2 = (st[k] for k in ("lam", "gam", "q1", "q2"))
    a1_data, a2_data = n1 * s1, n2 * s2
    tol_abs = settings.eps_abs * p
    iterations, converged, r_norm, s_norm = 0, False, np.inf, np.inf
    for rho in _stages(settings, s1, s2, n1, n2):
        converged = False
        for _ in range(settings.max_iter):
            iterations += 1
            t2_old, z1_old, z2_old, v_old, w_old = t2, z1, z2, v, w
            t1 = expand(0.5 * (t2 + v + w + z1) - (q1 + a1_data + lam) / (2 * rho), rho, n1)
            t2 = expand(0.5 * (t1 - v - w + z2) - (q2 + a2_data - lam) / (2 * rho), rho, n2)
            z1 = _soft(t1 + q1 / rho, l1 / rho)
            z2 = _soft(t2 + q2 / rho, l1 / rho)
            v = _column_shrink(0.5 * (t1 - t2 + w.T - w) + (lam - gam) / (2 * rho),
                               lambda2 / (2 * rho))
            w = 0.5 * (t1 - t2 + v.T - v) + (lam + gam.T) / (2 * rho)
            r_diff, r_sym = t1 - t2 - v - w, v - w.T
            r1, r2 = t1 - z1, t2 - z2
            lam = lam + rho * r_diff
            gam = gam + rho * r_sym
            q1 = q1 + rho * r1
            q2 = q2 + rho * r2
            dvw = (v - v_old) + (w - w_old)
            dw = w - w_old
            r_norm = np.sqrt(_sq(r_diff) + _sq(r_sym) + _sq(r1) + _sq(r2))
            # what the updated multipliers leave of the stationarity of the Theta_1,
            # Theta_2 and V steps, each taken before the later variables moved
            s_norm = rho * np.sqrt(_sq((t2 - t2_old) + dvw + (z1 - z1_old))
                                   + _sq((z2 - z2_old) - dvw) + _sq(dw - dw.T))
            eps_pri = 2 * tol_abs + settings.eps_rel * max(
                np.sqrt(_sq(t1 - t2) + _sq(t1) + _sq(t2)),
                np.sqrt(_sq(v + w) + _sq(v - w.T) + _sq(z1) + _sq(z2)))
            eps_dual = np.sqrt(2) * tol_abs + settings.eps_rel * np.sqrt(
                _sq(lam + q1) + _sq(q2 - lam))
            if r_norm <= eps_pri and s_norm <= eps_dual:
                converged = True
                break
    state = dict(theta1=t1, theta2=t2, z1=z1, z2=z2, v=v, w=w, lam=lam, gam=gam, q1=q1, q2=q2)
    scores = np.linalg.norm(v, axis=0)
    objective = (_loss(s1, n1, z1) + _loss(s2, n2, z2)
                 + float(np.sum(l1 * (np.abs(z1) + np.abs(z2)))) + lambda2 * float(scores.sum()))
    problem = dict(s1=s1, s2=s2, n1=n1, n2=n2, lambda1=lambda1, lambda2=lambda2,
                   penalize_diagonal=penalize_diagonal)
    return JointResult("pnjgl", z1, z2, scores, iterations, float(r_norm), float(s_norm),
                       converged, objective, problem, state)


def _sq(x: np.ndarray) -> float:
    return float(np.vdot(x, x))


# ---------------------------------------------------------------- joint graphical lasso
def _prox_fused(a1, a2, t1, t2):
    """Elementwise prox of t1 (|z1| + |z2|) + t2 |z1 - z2| at (a1, a2): fuse the pair
    (move each toward the other by t2, or meet at the mean), then soft-threshold by t1
    (Friedman, Hastie, Hoefling and Tibshirani 2007; Danaher et al. 2014, K = 2)."""
    gap = a1 - a2
    shift = np.clip(gap / 2, -t2, t2)
    return _soft(a1 - shift, t1), _soft(a2 + shift, t1)


def _prox_group(a1, a2, t1, t2):
    """Elementwise prox of t1 (|z1| + |z2|) + t2 sqrt(z1^2 + z2^2): soft-threshold by t1,
    then shrink the pair's norm by t2 (the sparse group lasso prox)."""
    b1, b2 = _soft(a1, t1), _soft(a2, t1)
    norm = np.sqrt(b1 * b1 + b2 * b2)
    scale = np.maximum(norm - t2, 0.0) / np.where(norm > 0, norm, 1.0)
    return b1 * scale, b2 * scale


_PROX = {"fused": _prox_fused, "group": _prox_group}


@_one_blas_thread
def _jgl(method, s1, s2, n1, n2, lambda1, lambda2, penalize_diagonal, settings, warm_start):
    _check(s1, s2, n1, n2, lambda1, lambda2)
    s1, s2 = np.asarray(s1, dtype=float), np.asarray(s2, dtype=float)
    p = len(s1)
    mask = _l1_weights(p, 1.0, penalize_diagonal)
    prox = _PROX[method]
    if warm_start is not None and warm_start.method == method:
        st = {k: v.copy() for k, v in warm_start.state.items()}
    else:
        eye, zero = np.eye(p), np.zeros((p, p))
        st = dict(theta1=eye, theta2=eye.copy(), z1=eye.copy(), z2=eye.copy(), y1=zero,
                  y2=zero.copy())
    t1, t2, z1, z2, y1, y2 = (st[k] for k in ("theta1", "theta2", "z1", "z2", "y1", "y2"))
    a1_data, a2_data = n1 * s1, n2 * s2
    tol_abs = settings.eps_abs * p
    iterations, converged, r_norm, s_norm = 0, False, np.inf, np.inf
    for rho in _stages(settings, s1, s2, n1, n2):
        converged = False
        for _ in range(settings.max_iter):
            iterations += 1
            z1_old, z2_old = z1, z2
            t1 = expand(z1 - (y1 + a1_data) / rho, rho / 2, n1)
            t2 = expand(z2 - (y2 + a2_data) / rho, rho / 2, n2)
            z1, z2 = prox(t1 + y1 / rho, t2 + y2 / rho, mask * (lambda1 / rho),
                          mask * (lambda2 / rho))
            r1, r2 = t1 - z1, t2 - z2
            y1 = y1 + rho * r1
            y2 = y2 + rho * r2
            r_norm = np.sqrt(_sq(r1) + _sq(r2))
            s_norm = rho * np.sqrt(_sq(z1 - z1_old) + _sq(z2 - z2_old))
            eps_pri = np.sqrt(2) * tol_abs + settings.eps_rel * max(
                np.sqrt(_sq(t1) + _sq(t2)), np.sqrt(_sq(z1) + _sq(z2)))
            eps_dual = np.sqrt(2) * tol_abs + settings.eps_rel * np.sqrt(_sq(y1) + _sq(y2))
            if r_norm <= eps_pri and s_norm <= eps_dual:
                converged = True
                break
    state = dict(theta1=t1, theta2=t2, z1=z1, z2=z2, y1=y1, y2=y2)
    diff = z1 - z2
    penalty = (np.abs(diff) if method == "fused" else np.sqrt(z1 * z1 + z2 * z2))
    objective = (_loss(s1, n1, z1) + _loss(s2, n2, z2)
                 + float(np.sum(mask * (lambda1 * (np.abs(z1) + np.abs(z2)) + lambda2 * penalty))))
    problem = dict(s1=s1, s2=s2, n1=n1, n2=n2, lambda1=lambda1, lambda2=lambda2,
                   penalize_diagonal=penalize_diagonal)
    return JointResult(method, z1, z2, np.linalg.norm(diff, axis=0), iterations, float(r_norm),
                       float(s_norm), converged, objective, problem, state)


def fused_jgl(s1, s2, n1: float, n2: float, lambda1: float, lambda2: float, *,
              penalize_diagonal: bool = True, settings: AdmmSettings = AdmmSettings(),
              warm_start: JointResult | None = None) -> JointResult:
    """The fused joint graphical lasso: P = sum_ij |Theta_1,ij - Theta_2,ij| (module doc)."""
    return _jgl("fused", s1, s2, n1, n2, lambda1, lambda2, penalize_diagonal, settings,
                warm_start)


def group_jgl(s1, s2, n1: float, n2: float, lambda1: float, lambda2: float, *,
              penalize_diagonal: bool = True, settings: AdmmSettings = AdmmSettings(),
              warm_start: JointResult | None = None) -> JointResult:
    """The group joint graphical lasso: P = sum_ij sqrt(Theta_1,ij^2 + Theta_2,ij^2)."""
    return _jgl("group", s1, s2, n1, n2, lambda1, lambda2, penalize_diagonal, settings,
                warm_start)


METHODS = {"pnjgl": pnjgl, "fused": fused_jgl, "group": group_jgl}
"""Every estimator by name, with one signature."""


# ---------------------------------------------------------------- optimality
def optimality(result: JointResult) -> dict[str, float]:
    """How far a result is from the optimality (KKT) conditions of its problem.

    The certificate is the final multipliers: for PNJGL, G_k = Q_k / lambda1 must be a
    subgradient of |.|_1 at Z_k, H = (Lambda + Lambda^T) / (2 lambda2) a subgradient of
    Psi at Z_1 - Z_2 (every column |2 H_j| <= 1, and 2 H_j = V_j / |V_j| where V_j != 0,
    with V + V^T = Z_1 - Z_2), and n_1 (S_1 - Z_1^-1) + lambda1 G_1 + lambda2 H = 0,
    n_2 (S_2 - Z_2^-1) + lambda1 G_2 - lambda2 H = 0. For the joint graphical lasso
    the multipliers Y_k must satisfy n_k (S_k - Z_k^-1) + Y_k = 0 with (Y_1, Y_2) a
    subgradient of the penalty at (Z_1, Z_2), i.e. (Z_1, Z_2) = prox(Z + Y).

    Returns the violations, each relative to the size of the terms it balances:
    ``stationarity`` (max over k), ``subgradient`` (largest entrywise or columnwise
    violation of the subgradient conditions, in units of the penalty weight) and
    ``decomposition`` (PNJGL's |Z_1 - Z_2 - V - V^T| / max_k |Z_k|; 0 for the others).
    """
    pr, st = result.problem, result.state
    z = (st["z1"], st["z2"])
    grads = [pr[f"n{k}"] * (pr[f"s{k}"] - np.linalg.inv(z[k - 1])) for k in (1, 2)]
    p = len(z[0])
    l1 = _l1_weights(p, pr["lambda1"], pr["penalize_diagonal"])
    if result.method == "pnjgl":
        lam_sym = (st["lam"] + st["lam"].T) / 2
        terms = [(grads[0], st["q1"], lam_sym), (grads[1], st["q2"], -lam_sym)]
        stationarity = max(np.linalg.norm(g + (q + q.T) / 2 + h) / _scale(g, q, h)
                           for g, q, h in terms)
        sub = max(_l1_violation(q, zk, l1) for q, zk in zip((st["q1"], st["q2"]), z))
        lam2 = pr["lambda2"]
        if lam2 > 0:
            two_h = 2 * lam_sym / lam2
            norms = np.linalg.norm(st["v"], axis=0)
            active = norms > 0
            sub = max(sub, float(np.max(np.linalg.norm(two_h, axis=0) - 1.0, initial=0.0)))
            if active.any():
                direction = st["v"][:, active] / norms[active]
                sub = max(sub, float(np.max(np.linalg.norm(two_h[:, active] - direction, axis=0))))
        diff = z[0] - z[1]
        decomposition = (np.linalg.norm(diff - st["v"] - st["v"].T)
                         / _scale(z[0], z[1]))
    else:
        ys = (st["y1"], st["y2"])
        stationarity = max(np.linalg.norm(g + y) / _scale(g, y) for g, y in zip(grads, ys))
        mask = _l1_weights(p, 1.0, pr["penalize_diagonal"])
        fixed = _PROX[result.method](z[0] + ys[0], z[1] + ys[1], mask * pr["lambda1"],
                                     mask * pr["lambda2"])
        weight = max(pr["lambda1"], pr["lambda2"], 1e-300)
        sub = max(float(np.max(np.abs(f - zk))) for f, zk in zip(fixed, z)) / weight
        decomposition = 0.0
    return {"stationarity": float(stationarity), "subgradient": float(sub),
            "decomposition": float(decomposition)}


def _scale(*terms) -> float:
    return max(max(np.linalg.norm(t) for t in terms), 1e-300)


def _l1_violation(q: np.ndarray, z: np.ndarray, weights: np.ndarray) -> float:
    """Largest violation of q in weights * subdifferential(|.|) at z, in units of the
    largest weight (entries with weight 0 must have q = 0)."""
    scale = max(float(weights.max()), 1e-300)
    outside = np.maximum(np.abs(q) - weights, 0.0)
    on_support = np.where(z != 0, np.abs(q - weights * np.sign(z)), 0.0)
    return float(max(outside.max(), on_support.max())) / scale

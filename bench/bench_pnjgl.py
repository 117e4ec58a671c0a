"""PNJGL by ADMM against a generic convex solver (cvxpy with Clarabel) on the same problem.

The authors' synthetic set-up (``devsim.analysis.synthetic``: p nodes, n = 2p samples
per condition, 2 perturbed nodes, lambda1 = 0.1 n, lambda2 = 0.5 n). Per p, best of
``--repeat`` after a warm-up: ``admm`` at the default stop (relative residuals 1e-4),
``admm tight`` (1e-8), and cvxpy building and solving the conic problem with Clarabel
(interior point, default tolerances 1e-8) and with SCS (first-order, eps 1e-7).
Reported: seconds, the ratio to cvxpy, and the largest entry of
|theta_ADMM - theta_cvxpy| relative to the largest entry of theta_cvxpy.

    python -m bench.bench_pnjgl [--p 8 16 32 50] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from bench.timing import best_time
from devsim.analysis.pnjgl import AdmmSettings, empirical_covariance, pnjgl
from devsim.analysis.synthetic import perturbed_pair, sample

TIGHT = AdmmSettings(eps_rel=1e-8, eps_abs=1e-10, max_iter=20000)
SOLVERS = {"clarabel": dict(solver="CLARABEL"), "scs": dict(solver="SCS", eps=1e-7)}
"""cvxpy's interior-point solver at its default tolerances (1e-8) and its first-order
conic solver at 1e-7."""


def problem(p: int):
    rng = np.random.default_rng(p)
    pair = perturbed_pair(p, 2, rng)
    n = 2 * p
    return (empirical_covariance(sample(pair.theta1, n, rng)),
            empirical_covariance(sample(pair.theta2, n, rng)), n)


def cvxpy_pnjgl(s1, s2, n, lam1, lam2, solver: str):
    """theta1 from cvxpy (model built and solved), or None where the solver fails."""
    import cvxpy as cp
    p = len(s1)
    t1, t2 = cp.Variable((p, p), symmetric=True), cp.Variable((p, p), symmetric=True)
    v = cp.Variable((p, p))
    objective = (n * (-cp.log_det(t1) + cp.trace(s1 @ t1))
                 + n * (-cp.log_det(t2) + cp.trace(s2 @ t2))
                 + lam1 * (cp.sum(cp.abs(t1)) + cp.sum(cp.abs(t2)))
                 + lam2 * cp.sum(cp.norm(v, 2, axis=0)))
    try:
        cp.Problem(cp.Minimize(objective), [t1 - t2 == v + v.T]).solve(**SOLVERS[solver])
    except cp.error.SolverError:
        return None
    return t1.value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, nargs="+", default=[8, 16, 32, 50])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| p | admm s (iterations) | admm tight s (iterations) | solver | cvxpy s | "
          "cvxpy / admm | cvxpy / admm tight | max rel. difference (admm, admm tight) |")
    print("|---|---|---|---|---|---|---|---|")
    for p in args.p:
        s1, s2, n = problem(p)
        lam1, lam2 = 0.1 * n, 0.5 * n
        default = pnjgl(s1, s2, n, n, lam1, lam2)
        tight = pnjgl(s1, s2, n, n, lam1, lam2, settings=TIGHT)
        t_default = best_time(lambda: pnjgl(s1, s2, n, n, lam1, lam2), args.repeat)
        t_tight = best_time(lambda: pnjgl(s1, s2, n, n, lam1, lam2, settings=TIGHT),
                            args.repeat)
        for solver in SOLVERS:
            reference = cvxpy_pnjgl(s1, s2, n, lam1, lam2, solver)
            head = (f"| {p} | {t_default:.4f} ({default.iterations}) | {t_tight:.4f} "
                    f"({tight.iterations}) | {solver} |")
            if reference is None:
                print(f"{head} failed | | | |", flush=True)
                continue
            t_cvxpy = best_time(lambda: cvxpy_pnjgl(s1, s2, n, lam1, lam2, solver),
                                args.repeat)
            scale = np.abs(reference).max()
            print(f"{head} {t_cvxpy:.3f} | {t_cvxpy / t_default:.0f} | "
                  f"{t_cvxpy / t_tight:.1f} | "
                  f"{np.abs(default.theta1 - reference).max() / scale:.1e}, "
                  f"{np.abs(tight.theta1 - reference).max() / scale:.1e} |", flush=True)


if __name__ == "__main__":
    main()

"""Brute-force Monte Carlo of the linear teacher-student task, against trainer.theory.

Plain NumPy, independent of the theory: every step draws an input and a
perturbation for each of many runs, evaluates the clean and perturbed loss
``|(W - W*) x|^2 / 2`` directly, and applies the GD, NP or WP update stated in
:mod:`trainer.theory`.  Running the script prints, for each method, perturbation
law and learning rate (as a fraction of the method's maximum), how far the
simulated mean of ``||W_t - W*||_F^2`` lies from the analytic curve, in standard
errors and relatively.

    python experiments/werfel_monte_carlo.py --n-in 10 --n-out 4 --trials 10000
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from trainer import theory


def _draw(rng, law, sigma, shape):
    if law == "gaussian":
        return sigma * rng.standard_normal(shape)
    if law == "rademacher":
        return sigma * rng.choice(np.array([-1.0, 1.0]), size=shape)
    return sigma * math.sqrt(3.0) * rng.uniform(-1.0, 1.0, size=shape)


def simulate(method, eta, sigma, n_in, n_out, steps, e0, trials, rng,
             law="gaussian", sequential=False, cost_noise=0.0):
    """Mean, standard error and final per-run values of ``||W_t - W*||_F^2``.

    ``cost_noise`` is the standard deviation of a Gaussian error added to each
    observed cost difference.

    Returns ``(mean, stderr, final)``: two arrays over ``t = 0 .. steps`` and the
    ``trials`` values at ``t = steps``.  The start ``W_0 - W*`` is one random matrix
    of squared norm ``e0``, shared by all runs.
    """
    w_star = rng.standard_normal((n_out, n_in))
    d0 = rng.standard_normal((n_out, n_in))
    d = np.broadcast_to(d0 * math.sqrt(e0) / np.linalg.norm(d0), (trials, n_out, n_in)).copy()
    total = np.zeros(steps + 1)
    total_sq = np.zeros(steps + 1)
    err = (d**2).sum(axis=(1, 2))
    total[0], total_sq[0] = err.sum(), (err**2).sum()
    for t in range(1, steps + 1):
        x = rng.standard_normal((trials, n_in))
        clean = np.einsum("kmn,kn->km", d + w_star, x) - x @ w_star.T
        if method == "gd":
            d -= eta * clean[:, :, None] * x[:, None, :]
        else:
            shape = (trials, n_out) if method == "np" else (trials, n_out, n_in)
            p = _draw(rng, law, sigma, shape).reshape(trials, -1)
            if sequential:
                keep = rng.integers(p.shape[1], size=trials)
                p = np.where(np.arange(p.shape[1]) == keep[:, None], p, 0.0)
            p = p.reshape(shape)
            if method == "np":
                noisy = clean + p
            else:
                noisy = np.einsum("kmn,kn->km", d + w_star + p, x) - x @ w_star.T
            dl = 0.5 * ((noisy**2).sum(axis=1) - (clean**2).sum(axis=1))
            if cost_noise:
                dl += cost_noise * rng.standard_normal(trials)
            if method == "np":
                d -= (eta / sigma**2) * dl[:, None, None] * p[:, :, None] * x[:, None, :]
            else:
                d -= (eta / sigma**2) * dl[:, None, None] * p
        err = (d**2).sum(axis=(1, 2))
        total[t], total_sq[t] = err.sum(), (err**2).sum()
    mean = total / trials
    var = np.maximum(total_sq / trials - mean**2, 0.0) * trials / (trials - 1)
    return mean, np.sqrt(var / trials), err


def compare(method, frac, law, sequential, n_in, n_out, sigma, e0, trials, rng,
            cost_noise=0.0):
    """One row of the agreement table: the curve over ``3 / best_decay`` steps."""
    eta = frac * theory.max_learning_rate(method, n_in, n_out, law, sequential)
    steps = int(round(3.0 / theory.best_decay(method, n_in, n_out, law, sequential)))
    mean, se, final = simulate(method, eta, sigma, n_in, n_out, steps, e0, trials, rng,
                               law, sequential, cost_noise)
    expected = theory.learning_curve(method, eta, sigma, n_in, n_out, steps, e0, law,
                                     sequential, cost_noise)
    z = (mean[1:] - expected[1:]) / se[1:]
    rel = mean[1:] / expected[1:] - 1.0
    return dict(method=method + ("-seq" if sequential else ""), law=law, frac=frac,
                eta=eta, steps=steps, max_abs_z=float(np.max(np.abs(z))),
                max_abs_rel=float(np.max(np.abs(rel))), end_rel=float(rel[-1]),
                end_theory=float(expected[-1]), end_median=float(np.median(final)),
                floor=theory.error_floor(method, eta, sigma, n_in, n_out, law, sequential,
                                         cost_noise))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-in", type=int, default=10)
    parser.add_argument("--n-out", type=int, default=4)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--e0", type=float, default=1.0)
    parser.add_argument("--cost-noise", type=float, default=0.0,
                        help="standard deviation of the error on each cost difference")
    parser.add_argument("--fracs", type=float, nargs="+", default=[0.1, 0.5, 0.9, 1.1])
    parser.add_argument("--laws", nargs="+", default=["gaussian", "rademacher"],
                        choices=list(theory.PERTURBATIONS))
    parser.add_argument("--sequential", action="store_true",
                        help="also run sequential NP and WP")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"N={args.n_in} M={args.n_out} trials={args.trials} sigma={args.sigma} "
          f"cost_noise={args.cost_noise} e0={args.e0} seed={args.seed}")
    header = ("method", "law", "eta/max", "eta", "steps", "max|z|", "max|rel|",
              "end rel", "end theory", "end median", "floor")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    variants = [("gd", "gaussian", False)] + [
        (m, law, s) for m in ("np", "wp") for law in args.laws
        for s in ((False, True) if args.sequential else (False,))]
    for method, law, sequential in variants:
        for frac in args.fracs:
            row = compare(method, frac, law, sequential, args.n_in, args.n_out, args.sigma,
                          args.e0, args.trials, rng, args.cost_noise)
            print(f"| {row['method']} | {row['law'] if method != 'gd' else '-'} | {frac:g} | "
                  f"{row['eta']:.4g} | {row['steps']} | {row['max_abs_z']:.2f} | "
                  f"{row['max_abs_rel']:.3f} | {row['end_rel']:+.3f} | "
                  f"{row['end_theory']:.3g} | {row['end_median']:.3g} | {row['floor']:.3g} |",
                  flush=True)


if __name__ == "__main__":
    main()

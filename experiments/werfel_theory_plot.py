"""Plot the analytic GD, NP and WP learning curves of the linear teacher-student task.

Top row: each method at several learning rates, given as fractions of its own
maximum stable rate (0.5 is the optimal rate; above 1 the mean error diverges).
Bottom row: the three methods at one small rate (they coincide), the error floor
against the perturbation size (slope 2 on log axes; dotted with noisy cost readings,
lowest at the optimal sigma), and the maximum rates against the number of outputs.
``--trials K`` overlays the mean of K brute-force runs from
:mod:`experiments.werfel_monte_carlo` on the top row.  The script also prints the
maximum and optimal rates as a table.

    python -m experiments.werfel_theory_plot --out werfel_theory.png
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.werfel_monte_carlo import simulate  # noqa: E402
from trainer import theory  # noqa: E402

FRACTIONS = (0.1, 0.5, 0.9, 1.05)
NAMES = {"gd": "GD", "np": "NP", "wp": "WP"}


def plot_rates(ax, method, n_in, n_out, sigma, e0, trials, rng):
    """One method at each rate in FRACTIONS, with Monte-Carlo means if trials > 0."""
    steps = int(round(3.0 / theory.best_decay(method, n_in, n_out)))
    eta_max = theory.max_learning_rate(method, n_in, n_out)
    t = np.arange(steps + 1)
    for frac in FRACTIONS:
        eta = frac * eta_max
        curve = theory.learning_curve(method, eta, sigma, n_in, n_out, steps, e0)
        line, = ax.plot(t, curve, label=f"{frac:g} max ({eta:.3g})")
        if trials:
            mean, _, _ = simulate(method, eta, sigma, n_in, n_out, steps, e0, trials, rng)
            every = max(1, steps // 25)
            ax.plot(t[::every], mean[::every], "o", ms=3, color=line.get_color())
    ax.set(yscale="log", xlabel="step", ylabel="E ||W - W*||²",
           title=f"{NAMES[method]}: max rate {eta_max:.3g}")
    ax.set_ylim(top=10 * e0)
    ax.legend(fontsize=7, title="eta / max (eta)", title_fontsize=7, loc="best")


def plot_small_rate(ax, n_in, n_out, sigma, e0):
    """All three methods at 1% of WP's maximum rate, with and without perturbation size."""
    eta = 0.01 * theory.max_learning_rate("wp", n_in, n_out)
    steps = int(round(3.0 / (2.0 * eta)))
    t = np.arange(steps + 1)
    ax.plot(t, e0 * np.exp(-2.0 * eta * t), "k:", label="e0 exp(-2 eta t)")
    for method in theory.METHODS:
        for s, style in ((0.0, "-"), (sigma, "--")):
            if method == "gd" and s > 0.0:
                continue
            curve = theory.learning_curve(method, eta, s, n_in, n_out, steps, e0)
            ax.plot(t, curve, style, label=f"{NAMES[method]}, sigma={s:g}")
    ax.set(yscale="log", xlabel="step", ylabel="E ||W - W*||²",
           title=f"same small eta = {eta:.3g}")
    ax.legend(fontsize=7)


def plot_floors(ax, n_in, n_out, cost_noise):
    """Error floor at the optimal rate against sigma, Gaussian and Rademacher.

    Dotted: Gaussian perturbations with noisy cost readings, lowest at the optimal sigma.
    """
    sigmas = np.logspace(-3, 0, 31)
    for method in ("np", "wp"):
        for law, style in (("gaussian", "-"), ("rademacher", "--")):
            eta = theory.optimal_learning_rate(method, n_in, n_out, law)
            floors = [theory.error_floor(method, eta, s, n_in, n_out, law) for s in sigmas]
            line, = ax.plot(sigmas, floors, style, label=f"{NAMES[method]} {law}")
            if cost_noise > 0.0 and law == "gaussian":
                noisy = [theory.error_floor(method, eta, s, n_in, n_out, law,
                                            cost_noise=cost_noise) for s in sigmas]
                ax.plot(sigmas, noisy, ":", color=line.get_color(),
                        label=f"{NAMES[method]} gaussian, cost noise {cost_noise:g}")
    ax.set(xscale="log", yscale="log", xlabel="sigma", ylabel="error floor",
           title="floor at the optimal rate ∝ sigma²")
    ax.legend(fontsize=7)


def plot_max_rates(ax, n_in):
    """Maximum stable rate against the number of outputs: 1/M (NP), 1/(M N) (WP)."""
    outputs = np.arange(1, 33)
    for method in theory.METHODS:
        for law, style in (("gaussian", "-"), ("rademacher", "--")):
            if method == "gd" and law != "gaussian":
                continue
            rates = [theory.max_learning_rate(method, n_in, int(m), law) for m in outputs]
            label = NAMES[method] + ("" if method == "gd" else " " + law)
            ax.plot(outputs, rates, style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="outputs M", ylabel="max learning rate",
           title=f"stability limit, N = {n_in}")
    ax.legend(fontsize=7)


def print_rates(n_in, n_out, sigma):
    """A markdown table of the stability limits, optimal rates and floors."""
    print(f"N={n_in} M={n_out} sigma={sigma:g}")
    print("| method | law | max eta | optimal eta | 1 - r at optimum | floor at optimum |")
    print("|---|---|---|---|---|---|")
    for method in theory.METHODS:
        for law in ("gaussian",) if method == "gd" else ("gaussian", "rademacher"):
            for sequential in (False,) if method == "gd" else (False, True):
                args = (method, n_in, n_out, law, sequential)
                eta = theory.optimal_learning_rate(*args)
                floor = theory.error_floor(method, eta, sigma, n_in, n_out, law, sequential)
                name = NAMES[method] + (" sequential" if sequential else "")
                print(f"| {name} | {law if method != 'gd' else '-'} | "
                      f"{theory.max_learning_rate(*args):.4g} | {eta:.4g} | "
                      f"{theory.best_decay(*args):.4g} | {floor:.3g} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-in", type=int, default=10)
    parser.add_argument("--n-out", type=int, default=4)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--e0", type=float, default=1.0)
    parser.add_argument("--cost-noise", type=float, default=0.01,
                        help="cost-difference noise for the dotted floors (0: none)")
    parser.add_argument("--trials", type=int, default=0,
                        help="overlay the mean of this many Monte-Carlo runs (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="werfel_theory.png")
    args = parser.parse_args(argv)
    print_rates(args.n_in, args.n_out, args.sigma)
    rng = np.random.default_rng(args.seed)
    fig, axes = plt.subplots(2, 3, figsize=(15, 9), constrained_layout=True)
    for ax, method in zip(axes[0], theory.METHODS):
        plot_rates(ax, method, args.n_in, args.n_out, args.sigma, args.e0, args.trials, rng)
    plot_small_rate(axes[1, 0], args.n_in, args.n_out, args.sigma, args.e0)
    plot_floors(axes[1, 1], args.n_in, args.n_out, args.cost_noise)
    plot_max_rates(axes[1, 2], args.n_in)
    fig.suptitle(f"Linear teacher-student, N = {args.n_in} inputs, M = {args.n_out} outputs, "
                 f"Gaussian perturbations of size sigma = {args.sigma:g}"
                 + (f"; dots: mean of {args.trials} simulated runs" if args.trials else ""))
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

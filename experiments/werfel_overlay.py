"""The real devsim estimators on the linear teacher task, overlaid on trainer.theory.

Every run is ``configs/np_werfel.yaml`` built by :func:`devsim.runner.build` with a
different seed (teacher, student initialisation, samples and perturbations all
change) and one of three estimators: ``backprop`` (GD), ``np`` and ``wp``, both with
Gaussian (or, with ``--perturbation rademacher``, +-sigma) perturbations of standard
deviation ``sigma``. After each update (one fresh
sample) the script reads the parameters back and records ``||W - W*||_F^2``, with W*
recovered exactly from the noise-free teacher data by least squares. The theory's rate
is ``eta = 2 lr / M`` (devsim's mse is ``(2 / M)`` times the theory's loss); the
analytic curve starts from the mean of the runs' own initial errors (the recursion
is linear in ``e_t``, so this is exact in expectation).

Prints, per method and rate, the largest |z| (simulated mean minus theory over its
standard error) over all steps and the largest relative deviation, and writes the
figure.

    python -m experiments.werfel_overlay --seeds 300 --out experiments/werfel_overlay.png
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from devsim.runner import build, load_config
from trainer import theory
from trainer.backprop import BackpropParams
from trainer.node_perturbation import NPParams
from trainer.weight_perturbation import WPParams


def teacher_weights(data) -> np.ndarray:
    """W* (M, N) of a noise-free linear teacher, exactly, from its training data."""
    return np.linalg.lstsq(data.x_train, data.y_train, rcond=None)[0].T


def simulate(config, estimator, lr: float, updates: int, seeds: range) -> np.ndarray:
    """``||W_t - W*||^2`` for t = 0..updates (rows) of every seed (columns)."""
    config = config.replace(train=config.train.replace(
        estimator=estimator, optimizer=config.train.optimizer.replace(lr=lr)))
    errors = np.empty((updates + 1, len(seeds)))
    for j, seed in enumerate(seeds):
        built = build(config.replace(seed=seed))
        bench = built.bench
        n_out, n_in = bench.chip.layer_shapes[0]
        if updates > len(built.data.x_train):
            raise ValueError("more updates than training samples: samples would repeat")
        w_star = teacher_weights(built.data)
        for t in range(updates + 1):
            w = bench.read_params()[: n_out * n_in].reshape(n_out, n_in)
            errors[t, j] = np.sum((w - w_star) ** 2)
            if t < updates:
                built.loop.update()
    return errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/np_werfel.yaml")
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--fracs", type=float, nargs="+", default=[0.2, 0.5, 0.9],
                    help="learning rates as fractions of each method's maximum")
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--perturbation", choices=("gaussian", "rademacher"), default="gaussian")
    ap.add_argument("--methods", nargs="+", choices=("gd", "np", "wp"), default=["gd", "np", "wp"])
    ap.add_argument("--time-constants", type=float, default=3.0,
                    help="run length in units of 1 / (1 - r) at each method's optimal rate")
    ap.add_argument("--out", default="experiments/werfel_overlay.png")
    args = ap.parse_args(argv)
    config = load_config(args.config)
    n_in, n_out = config.data.inputs, config.data.outputs
    law = args.perturbation
    estimators = {"gd": BackpropParams(),
                  "np": NPParams(perturbation=law, sigma=args.sigma),
                  "wp": WPParams(perturbation=law, sigma=args.sigma)}
    methods = {name: estimators[name] for name in args.methods}
    results = {}
    print(f"N = {n_in}, M = {n_out}, sigma = {args.sigma} ({law}), {args.seeds} seeds per curve")
    print("| method | eta / max | eta | lr | updates | max abs z | max rel. dev. "
          "| final e (sim) | final e (theory) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, estimator in methods.items():
        updates = int(np.ceil(args.time_constants / theory.best_decay(name, n_in, n_out, law)))
        for frac in args.fracs:
            eta = frac * theory.max_learning_rate(name, n_in, n_out, law)
            lr = eta * n_out / 2.0
            t0 = time.perf_counter()
            e = simulate(config, estimator, lr, updates,
                         range(args.first_seed, args.first_seed + args.seeds))
            mean, se = e.mean(1), e.std(1, ddof=1) / np.sqrt(e.shape[1])
            curve = theory.learning_curve(name, eta, args.sigma, n_in, n_out, updates,
                                          float(mean[0]), law)
            # z at t = 0 is 0 by construction; the initial spread is part of later errors.
            z = np.abs(mean[1:] - curve[1:]) / se[1:]
            rel = np.abs(mean[1:] - curve[1:]) / curve[1:]
            results[name, frac] = (eta, mean, se, curve)
            print(f"| {name.upper()} | {frac} | {eta:.4g} | {lr:.4g} | {updates} | {z.max():.2f} "
                  f"| {100 * rel.max():.1f} % | {mean[-1]:.4g} | {curve[-1]:.4g} |"
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    plot(results, args, n_in, n_out)


def plot(results, args, n_in, n_out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(args.methods), figsize=(4.7 * len(args.methods), 4.2),
                             squeeze=False)
    for ax, name in zip(axes[0], args.methods):
        for frac, colour in zip(args.fracs, ("C0", "C1", "C3", "C4", "C5")):
            eta, mean, se, curve = results[name, frac]
            t = np.arange(len(mean))
            ax.plot(t, curve, color=colour, lw=1.5, label=f"theory, eta = {frac:g} max")
            if name != "gd":
                floor = theory.error_floor(name, eta, args.sigma, n_in, n_out, args.perturbation)
                ax.axhline(floor, color=colour, lw=0.8, ls=":")
            step = max(1, len(t) // 40)
            ax.errorbar(t[::step], mean[::step], yerr=2 * se[::step], fmt="o", ms=3,
                        color=colour, elinewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{name.upper()} (devsim estimator), N={n_in}, M={n_out}, "
                     f"sigma={args.sigma}" + ("" if name == "gd" else f" {args.perturbation}"),
                     fontsize=9)
        ax.set_xlabel("update (one fresh sample each)")
        ax.set_ylabel("E ||W - W*||^2")
        ax.legend(fontsize=8)
    fig.suptitle(f"dots: mean of {args.seeds} devsim runs +- 2 s.e.; lines: trainer.theory; "
                 "dotted: its error floors")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

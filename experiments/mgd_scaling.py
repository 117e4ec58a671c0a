"""Time to target accuracy against network size, weight and node perturbation.

The central claim of Oripov et al. (2025, arXiv 2501.15403): although the time to
estimate a gradient grows linearly with the number of perturbed parameters, the
time MGD needs to reach a target accuracy on a fixed task does not, and often
falls as the network widens. Two fixed tasks, with the hidden width swept and every
other setting held (normalised estimates, so one learning rate serves all sizes):

- digits: ``configs/quickstart.yaml`` (64-h-10 sigmoid, MSE, eps 0.1, tau_theta 100)
  with SGD lr 1, target 90 % test accuracy, budget 4 M steps;
- parity: ``configs/parity.yaml`` (4-bit parity, 4-h-1 tanh/sigmoid, eps 0.05,
  tau_theta 32) with SGD lr 1, target 100 %, budget 3 M steps.

Training runs on chip (:class:`devsim.insitu.OnChipMGD`) until three successive
evaluations hold the target, or the budget ends. Time to target is the MGD papers'
definition: the last evaluated hardware step with accuracy below the target (baseline
inferences count as steps). Usage::

    PYTHONPATH=. python experiments/mgd_scaling.py [--seeds 0 1 2] [--out experiments]

writes ``mgd_scaling.json`` and ``mgd_scaling.png`` into ``--out`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mgd_common import config, train_on_chip

TASKS = {
    "digits": dict(file="quickstart.yaml", widths=(8, 16, 32, 64, 128, 256), target=0.90,
                   eval_every=20_000, budget=4_000_000, overrides=("train.optimizer.lr=1.0",)),
    "parity": dict(file="parity.yaml", widths=(4, 8, 16, 32, 64, 128), target=1.0,
                   eval_every=2_000, budget=3_000_000,
                   overrides=("train.optimizer.type=sgd", "train.optimizer.lr=1.0")),
}


def run(seeds, tasks, extra=()):
    rows = []
    for task in tasks:
        spec = TASKS[task]
        for target in ("nodes", "weights"):
            for width in spec["widths"]:
                for seed in seeds:
                    cfg = config(spec["file"], *spec["overrides"], *extra, f"seed={seed}",
                                 f"network.layers[0].units={width}")
                    curve = train_on_chip(cfg, target, spec["budget"],
                                          spec["eval_every"], spec["target"], hold=3)
                    rows.append(dict(task=task, target=target, width=width, seed=seed,
                                     n_params=curve.n_params, steps_to_target=curve.steps_to_target,
                                     final_accuracy=float(curve.accuracy[-1]),
                                     steps_run=int(curve.steps[-1]),
                                     wall_seconds=curve.wall_seconds))
                    print(rows[-1], flush=True)
    return rows


def plot(rows, path, tasks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for target, marker in (("nodes", "o"), ("weights", "s")):
            sel = [r for r in rows if r["task"] == task and r["target"] == target]
            ps = sorted({r["n_params"] for r in sel})
            med, lo, hi = [], [], []
            for p in ps:
                t = [r["steps_to_target"] for r in sel if r["n_params"] == p]
                t = np.array([np.inf if v is None else v for v in t], float)
                med.append(np.median(t))
                lo.append(t.min())
                hi.append(t.max())
            med = np.array(med)
            ax.errorbar(ps, med, yerr=[med - lo, np.array(hi) - med], marker=marker,
                        capsize=3, label=f"{target} perturbation")
        p = np.array(ps, float)
        reached = sorted((r["n_params"], r["steps_to_target"]) for r in rows
                         if r["task"] == task and r["steps_to_target"] is not None)
        p0, t0 = reached[0]  # the smallest network that reached the target
        ax.plot(p[p >= p0], t0 * p[p >= p0] / p0, "k:", label="linear in P (from the smallest)")
        ax.set(xscale="log", yscale="log", xlabel="parameters P",
               ylabel="hardware steps to target", title=f"{task}: target "
               f"{TASKS[task]['target']:.0%}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="experiments")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="extra config override for every run, e.g. train.optimizer.lr=0.3")
    ap.add_argument("--name", default="mgd_scaling", help="stem of the output files")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run(args.seeds, args.tasks, args.extra)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / f"{args.name}.png", args.tasks)
    print("| task | perturbation | hidden | P | steps to target (median) | per seed |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for target in ("nodes", "weights"):
            for width in TASKS[task]["widths"]:
                sel = [r for r in rows
                       if (r["task"], r["target"], r["width"]) == (task, target, width)]
                t = [r["steps_to_target"] for r in sel]
                med = np.median([np.inf if v is None else v for v in t])
                print(f"| {task} | {target} | {width} | {sel[0]['n_params']} | "
                      f"{'not reached' if np.isinf(med) else f'{med:,.0f}'} | "
                      f"{', '.join('-' if v is None else f'{v:,}' for v in t)} |")


if __name__ == "__main__":
    main()

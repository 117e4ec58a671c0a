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

Training runs on chip (:class:`trainer.compiled.CompiledMGD`) until three successive
evaluations hold the target, or the budget ends. Time to target is the MGD papers'
definition: the last evaluated hardware step with accuracy below the target (baseline
inferences count as steps). Usage::

    PYTHONPATH=. python experiments/mgd_scaling.py [--seeds 0 1 2] [--out experiments]

writes ``mgd_scaling.json`` and ``mgd_scaling.png`` into ``--out`` and prints a table.

The paper's claim is about the best time to target at each size, and at one fixed
learning rate the wide networks can stall. ``--lrs 0.03 0.1 0.3 1`` runs every
learning rate at every size and perturbation type on all seeds, keeps for each size
the learning rate with the smallest median time to target (a run that misses the
target counts as infinite), plots and tabulates that best time, and writes the whole
grid into the JSON.

``--tau-thetas 8 32 128 512`` searches the update window as well: every (tau_theta,
lr) pair of the grid runs at every size, and the pair with the smallest median time
to target is kept (ties to the smaller tau_theta, then the smaller lr). The update
moves the weights by lr times a normalised estimate of the gradient once per window,
so its step per hardware step is lr / tau_theta: with ``--tau-thetas`` each value of
``--lrs`` is the learning rate at the task's own tau_theta (32 for parity) and is
scaled by tau_theta / 32 at the other windows, so every window covers the same steps
per hardware step and the search compares windows at equal speed rather than equal lr.
``--from-json A.json B.json --name C`` tabulates and plots earlier runs together (the best
over both grids) without training.
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


def run(seeds, tasks, extra=(), lrs=(None,), tau_thetas=(None,), widths=None):
    """One row per (task, perturbation, width, tau_theta, learning rate, seed).

    ``lrs`` of ``(None,)`` keeps the learning rate of the task's overrides and ``extra``,
    ``tau_thetas`` of ``(None,)`` the configured window; a given tau_theta scales each
    lr by tau_theta over the configured window (equal lr / tau_theta at equal lr).
    ``widths`` replaces the task's hidden widths."""
    rows = []
    for task in tasks:
        spec = TASKS[task]
        base = config(spec["file"], *spec["overrides"], *extra).train
        for target in ("nodes", "weights"):
            for width in widths or spec["widths"]:
                for tau in tau_thetas:
                    for lr in lrs:
                        sets = []
                        if tau is not None:
                            sets.append(f"train.timescales.tau_theta={tau}")
                            lr = (base.optimizer.lr if lr is None else lr) \
                                * tau / base.timescales.tau_theta
                        if lr is not None:
                            sets.append(f"train.optimizer.lr={lr:.6g}")
                        for seed in seeds:
                            cfg = config(spec["file"], *spec["overrides"], *extra, *sets,
                                         f"seed={seed}", f"network.layers[0].units={width}")
                            curve = train_on_chip(cfg, target, spec["budget"],
                                                  spec["eval_every"], spec["target"], hold=3)
                            rows.append(dict(task=task, target=target, width=width, seed=seed,
                                             tau_theta=cfg.train.timescales.tau_theta,
                                             lr=cfg.train.optimizer.lr,
                                             n_params=curve.n_params,
                                             steps_to_target=curve.steps_to_target,
                                             final_accuracy=float(curve.accuracy[-1]),
                                             steps_run=int(curve.steps[-1]),
                                             wall_seconds=curve.wall_seconds))
                            print(rows[-1], flush=True)
    return rows


def median_steps(rows) -> float:
    """Median time to target over seeds, a missed target counting as infinite."""
    return float(np.median([np.inf if r["steps_to_target"] is None else r["steps_to_target"]
                            for r in rows]))


def setting(row) -> tuple[int | None, float]:
    """A row's searched setting: (tau_theta, learning rate); tau_theta is None in the
    JSON files written before ``--tau-thetas`` existed."""
    return row.get("tau_theta"), row["lr"]


def best_lr(rows):
    """The rows of the setting (tau_theta, learning rate) with the smallest median time
    to target for each (task, perturbation, width); on a tie the smaller tau_theta, then
    the smaller learning rate."""
    best = []
    for key in sorted({(r["task"], r["target"], r["width"]) for r in rows}):
        sel = [r for r in rows if (r["task"], r["target"], r["width"]) == key]
        pick = min(sorted({setting(r) for r in sel}),
                   key=lambda v: median_steps([r for r in sel if setting(r) == v]))
        best += [r for r in sel if setting(r) == pick]
    return best


def plot(rows, path, tasks, label_lr=False, label_tau=False):
    """Median (bars: min-max over seeds) steps to target against P; ``label_lr`` writes
    each point's learning rate next to it (the best-lr curves of ``--lrs``), with
    ``label_tau`` preceded by its tau_theta."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
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
            with np.errstate(invalid="ignore"):  # inf - inf where no seed reached it
                yerr = [med - lo, np.array(hi) - med]
            ax.errorbar(ps, med, yerr=yerr, marker=marker,
                        capsize=3, label=f"{target} perturbation")
            if label_lr:
                for p, m in zip(ps, med):
                    tau, lr = setting(next(r for r in sel if r["n_params"] == p))
                    if np.isfinite(m):
                        ax.annotate(f"τθ {tau}, lr {lr:g}" if label_tau else f"{lr:g}", (p, m),
                                    textcoords="offset points", fontsize=7,
                                    xytext=(4, 6 if marker == "o" else -12))
        p = np.array(ps, float)
        medians = [(r["n_params"], median_steps([q for q in rows if (q["task"], q["target"],
                     q["n_params"]) == (task, r["target"], r["n_params"])])) for r in rows
                   if r["task"] == task]
        # the smallest network whose median reached the target
        p0, t0 = min((pm for pm in medians if np.isfinite(pm[1])), default=(p[0], np.nan))
        ax.plot(p[p >= p0], t0 * p[p >= p0] / p0, "k:", label="linear in P (from the smallest)")
        ax.set(xscale="log", yscale="log", xlabel="parameters P",
               ylabel="hardware steps to target", title=f"{task}: target "
               f"{TASKS[task]['target']:.0%}" + (" (best tau_theta, lr per size)" if label_tau
                                                  else " (best lr per size)" if label_lr else ""))
        ax.xaxis.set_minor_formatter(NullFormatter())  # crowded minor labels on a short range
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def fmt(v) -> str:
    """A time to target for a table cell."""
    return "not reached" if v is None or np.isinf(v) else f"{v:,.0f}"


def keyed(rows, key):
    """The rows of one (task, perturbation, width)."""
    return [r for r in rows if (r["task"], r["target"], r["width"]) == key]


def table(rows, tasks, lrs=None, tau_thetas=None):
    """Markdown table: per size the (best) median time to target and the per-seed times;
    with ``lrs`` alone also the best learning rate and the median at every learning rate,
    with ``tau_thetas`` the best (tau_theta, lr) and per tau_theta the best median over
    its learning rates (that lr in brackets)."""
    if tau_thetas:
        extra = ["best tau_theta", "best lr", "lr / tau_theta"]
        grid = [f"tau_theta {t}" for t in tau_thetas]
    else:
        extra, grid = (["best lr"], [f"lr {lr:g}" for lr in lrs]) if lrs else ([], [])
    head = ["task", "perturbation", "hidden", "P", *extra, "steps to target (median)",
            "per seed", *grid]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    best = best_lr(rows)
    for task in tasks:
        for target in ("nodes", "weights"):
            for width in sorted({r["width"] for r in rows if r["task"] == task}):
                key = (task, target, width)
                sel = keyed(best, key)
                cells = [task, target, str(width), str(sel[0]["n_params"])]
                med = median_steps(sel)
                tau, lr = setting(sel[0])
                found = np.isfinite(med)
                if tau_thetas:
                    cells += [str(tau), f"{lr:g}", f"{lr / tau:.3g}"] if found else ["-"] * 3
                elif lrs:
                    cells.append(f"{lr:g}" if found else "-")
                cells += [fmt(med), ", ".join("-" if r["steps_to_target"] is None
                                              else f"{r['steps_to_target']:,}" for r in sel)]
                if tau_thetas:
                    for t in tau_thetas:
                        at = best_lr([r for r in keyed(rows, key) if r["tau_theta"] == t])
                        m = median_steps(at)
                        cells.append(fmt(m) + (f" ({at[0]['lr']:g})" if np.isfinite(m) else ""))
                else:
                    for v in lrs or ():
                        cells.append(fmt(median_steps([r for r in keyed(rows, key)
                                                       if r["lr"] == v])))
                print("| " + " | ".join(cells) + " |")


def grid_table(rows, tasks):
    """Markdown table of the whole (tau_theta, lr) grid: one line per size and tau_theta,
    one column per step per hardware step lr / tau_theta, cells the median time."""
    steps = sorted({float(f"{r['lr'] / r['tau_theta']:.3g}") for r in rows})
    print("| perturbation | hidden | tau_theta | "
          + " | ".join(f"lr/tau_theta {v:.3g}" for v in steps) + " |")
    print("|---" * (3 + len(steps)) + "|")
    for task in tasks:
        for target in ("nodes", "weights"):
            for width in sorted({r["width"] for r in rows if r["task"] == task}):
                sel = keyed(rows, (task, target, width))
                for tau in sorted({r["tau_theta"] for r in sel}):
                    cells = [target, str(width), str(tau)]
                    for v in steps:
                        at = [r for r in sel if r["tau_theta"] == tau
                              and float(f"{r['lr'] / tau:.3g}") == v]
                        cells.append(fmt(median_steps(at)) if at else "")
                    print("| " + " | ".join(cells) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="experiments")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="extra config override for every run, e.g. train.optimizer.lr=0.3")
    ap.add_argument("--lrs", type=float, nargs="+",
                    help="learning rates to search at every size (report the best per size)")
    ap.add_argument("--tau-thetas", type=int, nargs="+",
                    help="update windows to search with --lrs; each lr is then the lr at the "
                         "task's tau_theta, scaled by tau_theta over it (equal lr/tau_theta)")
    ap.add_argument("--widths", type=int, nargs="+", help="hidden widths in place of the task's")
    ap.add_argument("--name", default="mgd_scaling", help="stem of the output files")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="train nothing: tabulate and plot the rows of these earlier runs' "
                         "JSON files together (e.g. two tau_theta grids) into NAME.png")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        rows = [r for f in args.from_json for r in json.loads(Path(f).read_text())]
        tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
        taus = sorted({r.get("tau_theta") for r in rows} - {None})
        lrs = sorted({r["lr"] for r in rows})
        report(rows, out / f"{args.name}.png", tasks, lrs if len(lrs) > 1 else None,
               taus if len(taus) > 1 else None)
        return
    rows = run(args.seeds, args.tasks, args.extra, args.lrs or (None,),
               args.tau_thetas or (None,), args.widths)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    report(rows, out / f"{args.name}.png", args.tasks, args.lrs, args.tau_thetas)


def report(rows, png, tasks, lrs, tau_thetas):
    """Plot the best time per size into ``png`` and print the tables."""
    plot(best_lr(rows), png, tasks, label_lr=bool(lrs or tau_thetas),
         label_tau=bool(tau_thetas))
    table(rows, tasks, lrs, tau_thetas)
    if tau_thetas:
        print()
        grid_table(rows, tasks)

if __name__ == "__main__":
    main()

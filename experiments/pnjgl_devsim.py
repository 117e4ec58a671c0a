"""Which neurons of a crossbar chip have faulty devices? PNJGL against the fused and
group joint graphical lasso on recorded node activity.

A 64-32-10 sigmoid network is trained on the digits (backprop reference, 200k
samples) on an analog crossbar (w_max 4, read noise 0.2 % of the conductance range
per device and read). The trained parameters are then programmed into chips with
programming noise (0.5 % of the range per device): ``devsim.analysis.activity``.
Per seed, three of the 42 neurons (hidden and output) get faulty devices, one effect
per row of the tables:

- ``drift``: every device of the neuron (weights and bias) holds half its weight;
- ``stuck``: half of them (drawn per neuron) are stuck at weight 0;
- ``bias``: every one reads 0.25 weight units high (about the mean |weight| of the
  hidden layer).

Two scenarios: ``same chip``, the chip recorded fresh and again after the faults
(its programming noise shared, read noise fresh); ``two chips``, a fresh reference
chip against another chip of the same design with the faults (each its own
programming and read noise). Every recording runs all 1797 digits; the pre-activations
of the 42 neurons are the nodes. ``devsim.analysis.compare`` standardises them
(pooled scale), fits each method along a 12-point lambda2 path at lambda1 per sample
(default 0.1, the authors'), and BIC or EBIC picks the fit. Reported as means over
seeds: precision of the declared neurons (over the seeds that declared any), recall,
how many were declared, how often none, top-3 precision of the path ranking (are the
three faulty neurons the first three to enter?) and its AUC.

Usage::

    PYTHONPATH=. nice python experiments/pnjgl_devsim.py [--seeds 10] [--first-seed 0]
        [--lambda1 0.1]

prints Markdown tables and writes ``pnjgl_devsim_lambda1_<lambda1>.json`` and ``.png``
(the trained trace goes to ``runs/pnjgl_devsim.h5``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from devsim import load_config, run
from devsim.analysis.activity import FRESH, ConditionParams, FaultParams, record_activity
from devsim.analysis.compare import compare
from devsim.analysis.selection import auc, detection, information_criterion

ROOT = Path(__file__).parents[1]
TRAIN = ["network.device={type: crossbar, w_max: 4.0, read_noise: 0.002}",
         "train.steps=200000", "train.eval_every=100000"]
DEPLOY = ["network.device.prog_noise=0.005"]
EFFECTS = {"drift": dict(factor=0.5), "stuck": dict(fraction=0.5, value=0.0),
           "bias": dict(offset=0.25)}
SCENARIOS = ("same chip", "two chips")
METHODS = ("pnjgl", "fused", "group")
CRITERIA = ("bic", "ebic")
FAULTY = 3


def trained_trace(path: Path) -> Path:
    if not path.exists():
        config = load_config(ROOT / "configs/digits_backprop.yaml", TRAIN)
        summary = run(config, out=path)
        print(f"trained {path}: test accuracy {summary['final']['test_accuracy']:.3f}")
    return path


def faulty_condition(effect: str, seed: int, shapes) -> tuple[ConditionParams, list[str]]:
    """Three random neurons of the network, with ``effect``; their node names."""
    rng = np.random.default_rng(seed)
    nodes = [(layer, j) for layer, n_out in enumerate(shapes) for j in range(n_out)]
    picked = sorted(nodes[i] for i in rng.choice(len(nodes), FAULTY, replace=False))
    faults = tuple(FaultParams(effect=effect, layer=layer, neurons=(j,), **EFFECTS[effect])
                   for layer, j in picked)
    return (ConditionParams(name=f"{effect}_{seed}", seed=seed, faults=faults),
            [f"L{layer}.{j}" for layer, j in picked])


def recordings(trace: Path, scenario: str, condition: ConditionParams, seed: int):
    if scenario == "same chip":
        return record_activity(trace, [FRESH, condition], chip_seed=100 + seed,
                               overrides=DEPLOY)
    (fresh,) = record_activity(trace, [FRESH], chip_seed=1000 + seed, overrides=DEPLOY)
    (faulty,) = record_activity(trace, [condition], chip_seed=2000 + seed, overrides=DEPLOY)
    return fresh, faulty


def evaluate(a, b, truth: list[str], seed: int, lambda1: float) -> tuple[list[dict], dict]:
    rows, fits = [], {}
    for method in METHODS:
        start = time.perf_counter()
        comparison = compare(a, b, method=method, lambda1=lambda1)
        seconds = time.perf_counter() - start
        path, names = comparison.path, comparison.names
        ranking = [names[j] for j in path.ranking]
        true_index = [names.index(t) for t in truth]
        for criterion in CRITERIA:
            values = [information_criterion(r, criterion) for r in path.results]
            chosen = path.results[int(np.argmin(values))]
            declared = [names[j] for j in chosen.selected]
            found = detection(declared, truth)
            rows.append(dict(method=method, selection=criterion, seed=seed, truth=truth,
                             declared_nodes=declared, ranking=ranking[:10],
                             precision=found["precision"], recall=found["recall"],
                             declared=found["declared"],
                             top_k=detection(ranking[:len(truth)], truth)["precision"],
                             auc=auc(-np.argsort(path.ranking).astype(float), true_index),
                             path_seconds=seconds,
                             converged=all(r.converged for r in path.results)))
        fits[method] = comparison
    return rows, fits


def one_row_per_line(rows: list[dict]) -> str:
    """The rows as a JSON list, one row per line."""
    return "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"


def table(rows: list[dict]) -> list[str]:
    lines = ["| scenario | effect | method | lambda2 by | precision | recall | declared | "
             "none declared | top-3 precision | AUC | s per path |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        key = (r["scenario"], r["effect"], r["method"], r["selection"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        sel = [r for r in rows if (r["scenario"], r["effect"], r["method"], r["selection"]) == key]
        m = {k: np.mean([r[k] for r in sel]) for k in
             ("recall", "declared", "top_k", "auc", "path_seconds")}
        hits = [r["precision"] for r in sel if r["declared"] > 0]
        lines.append(f"| {' | '.join(key)} | {np.mean(hits) if hits else float('nan'):.2f} | "
                     f"{m['recall']:.2f} | {m['declared']:.1f} | "
                     f"{sum(r['declared'] == 0 for r in sel)}/{len(sel)} | {m['top_k']:.2f} | "
                     f"{m['auc']:.3f} | {m['path_seconds']:.2f} |")
    return lines


def plot(rows: list[dict], example, lambda1: float, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(15, 8.5))
    grid = fig.add_gridspec(2, 3)
    groups = [(s, e) for s in SCENARIOS for e in EFFECTS]
    for i, (metric, label) in enumerate((("top_k", "top-3 precision of the ranking"),
                                         ("precision", "precision of the declared (BIC)"),
                                         ("recall", "recall of the declared (BIC)"))):
        ax = fig.add_subplot(grid[0, i])
        width = 0.8 / len(METHODS)
        for j, method in enumerate(METHODS):
            means = [np.mean([r[metric] for r in rows if (r["scenario"], r["effect"]) == g
                              and r["method"] == method and r["selection"] == "bic"
                              and (metric != "precision" or r["declared"] > 0)] or [0.0])
                     for g in groups]
            ax.bar(np.arange(len(groups)) + (j - 1) * width, means, width, label=method)
        ax.set_xticks(np.arange(len(groups)), [f"{s}\n{e}" for s, e in groups], fontsize=7)
        ax.set(ylabel=label, ylim=(0, 1.05))
        if i == 0:
            ax.legend(fontsize=8)
    comparison, truth, seed = example
    for i, method in enumerate(METHODS):
        ax = fig.add_subplot(grid[1, i])
        c = comparison[method]
        diff = c.result.difference.copy()
        np.fill_diagonal(diff, 0.0)
        bound = max(np.abs(diff).max(), 1e-12)
        ax.imshow(diff, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        ticks = [c.names.index(t) for t in truth]
        ax.set_xticks(ticks, truth, rotation=90, fontsize=7)
        ax.set_yticks(ticks, truth, fontsize=7)
        hidden = sum(name.startswith("L0.") for name in c.names)
        ax.axhline(hidden - 0.5, color="k", lw=0.5)
        ax.axvline(hidden - 0.5, color="k", lw=0.5)
        ax.set_title(f"{method}: theta_fresh - theta_faulty ({len(c.suspected)} declared)",
                     fontsize=9)
    fig.suptitle(f"Faulty neurons of a 64-32-10 crossbar network, lambda1 = {lambda1:g}: means "
                 f"over seeds (top); seed {seed}, same chip, drift (bottom; ticks: the faulty "
                 f"neurons)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per row")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed")
    parser.add_argument("--lambda1", type=float, default=0.1, help="l1 weight per sample")
    parser.add_argument("--out", default=str(Path(__file__).parent),
                        help="folder for the JSON and PNG")
    parser.add_argument("--trace", default=str(ROOT / "runs/pnjgl_devsim.h5"),
                        help="trained trace (made if missing)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    trace = trained_trace(Path(args.trace))
    shapes = [layer.units for layer in load_config(ROOT / "configs/digits_backprop.yaml",
                                                   TRAIN).network.layers]
    rows, example = [], None
    start = time.perf_counter()
    for scenario in SCENARIOS:
        for effect in EFFECTS:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                condition, truth = faulty_condition(effect, seed, shapes)
                a, b = recordings(trace, scenario, condition, seed)
                new, fits = evaluate(a, b, truth, seed, args.lambda1)
                rows += [dict(r, scenario=scenario, effect=effect) for r in new]
                if example is None:
                    example = (fits, truth, seed)
            print(f"{scenario}, {effect}: done after {time.perf_counter() - start:.0f} s",
                  flush=True)
    name = f"pnjgl_devsim_lambda1_{args.lambda1:g}"
    (out / f"{name}.json").write_text(one_row_per_line(rows))
    plot(rows, example, args.lambda1, out / f"{name}.png")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()

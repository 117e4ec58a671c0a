"""Perturbed-node recovery on the synthetic set-up of Mohan et al.: PNJGL against the
fused and group joint graphical lasso on the same data.

Set-up (the authors' script, ``devsim.analysis.synthetic``): p = 50 nodes, n1 = n2 =
2p samples, a base network with 90 % zeros and entries U[0.3, 0.6] of random sign;
the perturbed nodes' rows and columns redrawn in condition 1; both matrices shifted
by (|lambda_min| + 0.1) I. Three cases: the authors' 2 % (one perturbed node, whole
rows redrawn), three perturbed nodes, and three whose redrawn rows keep only 20 % of
their entries (fewer edges change: harder).

Every method gets lambda1 = 0.1 n (the authors') and a warm-started path of 12
lambda2 values from ``lambda2_max`` down to 2 % of it; BIC and EBIC (gamma 0.5) each
choose one fit. A node is *declared* perturbed when its score is non-zero in that fit
(PNJGL: its column of V; the baselines: its column of theta1 - theta2). Nodes are
ranked by the path (``LambdaPath.ranking``: in the order they enter as lambda2 falls).
Reported per case, method and criterion, as means over seeds: precision of the
declared set (over the seeds that declared any node), recall, the set's size, how
often nothing was declared, top-k precision of the ranking (k = the number of
perturbed nodes) and its AUC (the probability that a perturbed node ranks above an
unperturbed one). PNJGL is also run at the authors' fixed lambda2 = n (ranked by its
scores, zeros tied). Every chosen fit's optimality (KKT) violation is recorded.

Usage::

    PYTHONPATH=. nice python experiments/pnjgl_synthetic.py [--seeds 20]

prints Markdown tables and writes ``pnjgl_synthetic.json`` and ``pnjgl_synthetic.png``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from devsim.analysis.pnjgl import METHODS, empirical_covariance, optimality
from devsim.analysis.selection import auc, detection, fit_path, information_criterion
from devsim.analysis.synthetic import perturbed_pair, sample

CASES = {"authors: 1 node (2 %), whole rows": dict(n_perturbed=1, row_density=1.0),
         "3 nodes, whole rows": dict(n_perturbed=3, row_density=1.0),
         "3 nodes, 20 % of each row": dict(n_perturbed=3, row_density=0.2)}
P = 50
CRITERIA = ("bic", "ebic")


def scores_of(result, truth, ranking):
    """Detection by the declared set of ``result``, ranking quality of ``ranking``."""
    found = detection(result.selected, truth)
    return {"precision": found["precision"], "recall": found["recall"],
            "declared": found["declared"],
            "top_k": detection(ranking[:len(truth)], truth)["precision"],
            "auc": auc(-np.argsort(ranking).astype(float), truth)}


def run_case(case: dict, seed: int) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    pair = perturbed_pair(P, case["n_perturbed"], rng, row_density=case["row_density"])
    n = 2 * P
    s1 = empirical_covariance(sample(pair.theta1, n, rng))
    s2 = empirical_covariance(sample(pair.theta2, n, rng))
    rows, fits = [], {}
    for method in METHODS:
        start = time.perf_counter()
        path = fit_path(method, s1, s2, n, n, 0.1 * n)
        seconds = time.perf_counter() - start
        iterations = sum(r.iterations for r in path.results)
        for criterion in CRITERIA:
            values = [information_criterion(r, criterion) for r in path.results]
            chosen = path.results[int(np.argmin(values))]
            kkt = optimality(chosen)
            rows.append(dict(method=method, selection=criterion, seed=seed,
                             lambda2_per_n=chosen.problem["lambda2"] / n,
                             converged=all(r.converged for r in path.results),
                             path_seconds=seconds, path_iterations=iterations,
                             kkt=max(kkt.values()),
                             **scores_of(chosen, pair.perturbed, path.ranking)))
            fits[method, criterion] = chosen
    start = time.perf_counter()
    fixed = METHODS["pnjgl"](s1, s2, n, n, 0.1 * n, float(n))
    rows.append(dict(method="pnjgl", selection="lambda2 = n", seed=seed, lambda2_per_n=1.0,
                     converged=fixed.converged, path_seconds=time.perf_counter() - start,
                     path_iterations=fixed.iterations, kkt=max(optimality(fixed).values()),
                     **scores_of(fixed, pair.perturbed, fixed.ranking)))
    return rows, {"truth": pair, "fits": fits}


def precision(rows: list[dict]) -> str:
    """Mean precision over the rows that declared any node ("-" if none did)."""
    values = [r["precision"] for r in rows if r["declared"] > 0]
    return f"{np.mean(values):.2f}" if values else "-"


def one_row_per_line(rows: list[dict]) -> str:
    """The rows as a JSON list, one row per line."""
    return "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"


def table(rows: list[dict]) -> list[str]:
    lines = ["| case | method | lambda2 by | precision | recall | declared | none declared "
             "| top-k precision | AUC | converged | max KKT violation | s per path |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        key = (r["case"], r["method"], r["selection"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        sel = [r for r in rows if (r["case"], r["method"], r["selection"]) == key]
        mean = {m: np.mean([r[m] for r in sel]) for m in
                ("recall", "declared", "top_k", "auc", "path_seconds")}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {precision(sel)} | "
                     f"{mean['recall']:.2f} | {mean['declared']:.1f} | "
                     f"{sum(r['declared'] == 0 for r in sel)}/{len(sel)} | {mean['top_k']:.2f} | "
                     f"{mean['auc']:.3f} | {sum(r['converged'] for r in sel)}/{len(sel)} | "
                     f"{max(r['kkt'] for r in sel):.1e} | {mean['path_seconds']:.2f} |")
    return lines


def plot(rows: list[dict], example: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(14, 8))
    grid = fig.add_gridspec(2, 4)
    cases = list(CASES)
    labels = [("pnjgl", "bic"), ("pnjgl", "ebic"), ("pnjgl", "lambda2 = n"), ("fused", "bic"),
              ("fused", "ebic"), ("group", "bic"), ("group", "ebic")]
    for i, metric in enumerate(("precision", "recall")):
        ax = fig.add_subplot(grid[0, 2 * i:2 * i + 2])
        width = 0.8 / len(labels)
        for j, (method, selection) in enumerate(labels):
            means = [np.mean([r[metric] for r in rows if r["case"] == c and r["method"] == method
                              and r["selection"] == selection
                              and (metric == "recall" or r["declared"] > 0)] or [0.0])
                     for c in cases]
            ax.bar(np.arange(len(cases)) + (j - len(labels) / 2 + 0.5) * width, means, width,
                   label=f"{method} ({selection})")
        ax.set_xticks(np.arange(len(cases)), cases, fontsize=8)
        ax.set(ylabel=f"{metric} of the declared nodes", ylim=(0, 1.05))
        if i == 0:
            ax.legend(fontsize=7, ncol=2)
    truth = example["truth"]
    panels = [("true theta1 - theta2", truth.theta1 - truth.theta2)] + [
        (f"{method} ({criterion})", example["fits"][method, criterion].difference)
        for method, criterion in (("pnjgl", "bic"), ("fused", "bic"), ("group", "bic"))]
    for i, (title, diff) in enumerate(panels):
        ax = fig.add_subplot(grid[1, i])
        diff = diff.copy()
        np.fill_diagonal(diff, 0.0)
        bound = max(np.abs(diff).max(), 1e-12)
        ax.imshow(diff, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"PNJGL and the joint graphical lasso on the synthetic set-up (p = {P}, "
                 f"n = 2p; bottom: seed 0 of '{cases[1]}', off-diagonal)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 per case")
    parser.add_argument("--out", default=str(Path(__file__).parent),
                        help="folder for the JSON and PNG")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows, example = [], None
    start = time.perf_counter()
    for name, case in CASES.items():
        for seed in range(args.seeds):
            case_rows, fits = run_case(case, seed)
            rows += [dict(r, case=name) for r in case_rows]
            if name == list(CASES)[1] and seed == 0:
                example = fits
        print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    (out / "pnjgl_synthetic.json").write_text(one_row_per_line(rows))
    plot(rows, example, out / "pnjgl_synthetic.png")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()

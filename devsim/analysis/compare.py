"""Which nodes changed between two activity records: standardise, fit, rank, plot.

Each node is scaled by its pooled standard deviation over both records (one scale
per node for both conditions, so a node whose activity shrinks or grows still
differs), nodes constant in both are set aside, and the joint graphical lasso of
:mod:`devsim.analysis.pnjgl` is fitted to the two sample covariances. Penalty
weights are given per sample: the absolute weight is the value times
n = (n_1 + n_2) / 2, the authors' convention (their lambda1 = 0.1 n).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from devsim.analysis.pnjgl import METHODS, AdmmSettings, JointResult, empirical_covariance
from devsim.analysis.records import ActivityRecord
from devsim.analysis.selection import LambdaPath, fit_path, lambda2_grid

__all__ = ["Comparison", "compare", "summary", "heatmap"]


class Comparison(NamedTuple):
    """The fit of two activity records and what it says about their nodes."""

    names: list[str]
    """Nodes fitted, in record order."""
    dropped: list[str]
    """Nodes constant under both conditions (not fitted)."""
    result: JointResult
    """The chosen fit (condition A is theta1, B theta2)."""
    path: LambdaPath | None
    """The lambda2 path the fit was chosen from (None where lambda2 was given)."""
    lambda1: float
    """Per-sample l1 weight."""
    lambda2: float
    """Per-sample weight of the difference penalty."""
    samples: tuple[int, int]
    """Rows of record A and of record B."""
    criterion: str | None
    """Information criterion that chose lambda2, if one did."""

    @property
    def suspected(self) -> list[tuple[str, float]]:
        """The nodes the fit declares changed, most changed first, with their scores."""
        return [(self.names[j], float(self.result.node_scores[j])) for j in self.result.selected]

    @property
    def ranked(self) -> list[tuple[str, float, float]]:
        """Every fitted node, most changed first, with its score in the chosen fit and
        the per-sample lambda2 at which it enters the path (0: never; nan without a
        path). With a path, nodes rank in the order they enter
        (:attr:`devsim.analysis.selection.LambdaPath.ranking`), else by score."""
        scores = self.result.node_scores
        if self.path is None:
            return [(self.names[j], float(scores[j]), float("nan")) for j in self.result.ranking]
        entry = self.path.entry / (sum(self.samples) / 2)
        return [(self.names[j], float(scores[j]), float(entry[j])) for j in self.path.ranking]


def _standardised(a: np.ndarray, b: np.ndarray):
    """Both activities scaled by each node's pooled standard deviation, and the mask of
    the nodes kept (pooled standard deviation above 1e-12 of the largest)."""
    n1, n2 = len(a), len(b)
    sd = np.sqrt((n1 * a.var(axis=0) + n2 * b.var(axis=0)) / (n1 + n2))
    keep = sd > 1e-12 * max(float(sd.max(initial=0.0)), 1e-300)
    return a[:, keep] / sd[keep], b[:, keep] / sd[keep], keep


def compare(a: ActivityRecord, b: ActivityRecord, *, method: str = "pnjgl",
            lambda1: float = 0.3, lambda2: float | None = None, criterion: str = "ebic",
            path_points: int = 12, penalize_diagonal: bool = True,
            settings: AdmmSettings = AdmmSettings()) -> Comparison:
    """Fit ``method`` to records ``a`` and ``b`` of the same nodes.

    ``lambda1``, ``lambda2``: per-sample weights (module doc). Without ``lambda2``, a
    path of ``path_points`` values (:func:`devsim.analysis.selection.lambda2_grid`) is
    fitted and ``criterion`` (``bic``, ``aic``, ``ebic``) picks one. The defaults,
    lambda1 = 0.3 and EBIC, declared the faulty neurons of a crossbar network best in
    ``experiments/pnjgl_devsim.py`` (EXPERIMENTS.md: lambda1 = 0.1, the authors' value
    on their synthetic data, and BIC declare many neurons whose precision-matrix rows
    change only through the faulty ones).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not (np.array_equal(a.layer, b.layer) and np.array_equal(a.neuron, b.neuron)):
        raise ValueError("the two records hold different nodes (record both from one "
                         "network)")
    if min(len(a.activity), len(b.activity)) < 2:
        raise ValueError("each record needs at least 2 rows of activity")
    xa, xb, keep = _standardised(np.asarray(a.activity, float), np.asarray(b.activity, float))
    if keep.sum() < 2:
        raise ValueError("fewer than 2 nodes vary in the records; nothing to compare")
    names = a.names
    fitted = [n for n, k in zip(names, keep) if k]
    dropped = [n for n, k in zip(names, keep) if not k]
    n1, n2 = len(xa), len(xb)
    scale = (n1 + n2) / 2
    s1, s2 = empirical_covariance(xa), empirical_covariance(xb)
    lam1 = lambda1 * scale
    path = None
    if lambda2 is None:
        grid = lambda2_grid(method, s1, s2, n1, n2, num=path_points)
        path = fit_path(method, s1, s2, n1, n2, lam1, grid, criterion=criterion,
                        penalize_diagonal=penalize_diagonal, settings=settings)
        result, lam2 = path.chosen, float(grid[path.best])
    else:
        lam2 = lambda2 * scale
        result = METHODS[method](s1, s2, n1, n2, lam1, lam2,
                                 penalize_diagonal=penalize_diagonal, settings=settings)
    return Comparison(fitted, dropped, result, path, float(lambda1), lam2 / scale, (n1, n2),
                      criterion if path is not None else None)


def summary(comparison: Comparison, top: int = 10) -> dict:
    """What ``devsim analyse`` reports, as plain data."""
    r = comparison.result
    return {"method": r.method, "lambda1": comparison.lambda1, "lambda2": comparison.lambda2,
            "criterion": comparison.criterion, "samples": list(comparison.samples),
            "nodes": len(comparison.names), "dropped": comparison.dropped,
            "suspected": [{"node": n, "score": s} for n, s in comparison.suspected],
            "ranking": [{"node": n, "score": s, "enters_at": e}
                        for n, s, e in comparison.ranked[:top]],
            "iterations": r.iterations, "converged": r.converged,
            "primal_residual": r.primal_residual, "dual_residual": r.dual_residual}


def heatmap(comparison: Comparison, out: str | Path, title: str = "") -> Path:
    """PNG of the estimated difference theta_A - theta_B (left) and every node's score
    with the suspected nodes marked (right)."""
    try:
        import matplotlib
    except ImportError:
        from devsim.config import ConfigError
        raise ConfigError(["analyse: matplotlib is not installed "
                           "(pip install 'devsim-lab[plot]')"]) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, names = comparison.result, comparison.names
    diff = r.difference.copy()
    np.fill_diagonal(diff, 0.0)  # the diagonal's scale would drown the edges
    bound = max(float(np.abs(diff).max()), 1e-12)
    fig, (ax_map, ax_bar) = plt.subplots(1, 2, figsize=(12, 5.2),
                                         gridspec_kw={"width_ratios": [1.1, 1]})
    image = ax_map.imshow(diff, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    fig.colorbar(image, ax=ax_map, fraction=0.046, pad=0.04,
                 label="theta_A - theta_B (off-diagonal)")
    layers = [name.split(".")[0] for name in names]
    edges = [i for i in range(1, len(layers)) if layers[i] != layers[i - 1]]
    for e in edges:
        ax_map.axhline(e - 0.5, color="k", lw=0.6)
        ax_map.axvline(e - 0.5, color="k", lw=0.6)
    suspected = set(r.selected.tolist())
    ticks = sorted(suspected)[:30]
    ax_map.set_xticks(ticks, [names[j] for j in ticks], rotation=90, fontsize=7)
    ax_map.set_yticks(ticks, [names[j] for j in ticks], fontsize=7)
    ax_map.set_title("estimated difference of the precision matrices", fontsize=10)
    colours = ["tab:red" if j in suspected else "tab:gray" for j in range(len(names))]
    ax_bar.bar(np.arange(len(names)), r.node_scores, color=colours)
    for e in edges:
        ax_bar.axvline(e - 0.5, color="k", lw=0.6, ls=":")
    ax_bar.set(xlabel="node (record order; dotted: layer boundaries)",
               ylabel="node score (row/column change)")
    ax_bar.set_title(f"{len(suspected)} suspected node(s) in red", fontsize=10)
    fig.suptitle(title or f"{r.method}: lambda1 = {comparison.lambda1:.3g}, "
                 f"lambda2 = {comparison.lambda2:.3g} per sample; n = {comparison.samples}",
                 fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

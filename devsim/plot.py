"""PNG plots of traces: training cost and evaluation metrics against hardware steps,
wall-clock seconds, or what the chip's devices spent (hardware seconds, joules)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from devsim.trace import read_trace

AXES = {"steps": ("step", "hardware steps"), "seconds": ("wall_time", "wall-clock seconds"),
        "hardware_time": ("hardware_time_s", "hardware time (s)"),
        "energy": ("energy_j", "energy (J)")}
"""Horizontal axes of :func:`plot_traces`: the trace column each reads and its label."""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (a one-line error without it)."""
    try:
        import matplotlib
    except ImportError:
        from devsim.config import ConfigError
        raise ConfigError(["plot: matplotlib is not installed (pip install 'devsim-lab[plot]')"]) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _x_values(trace, x: str) -> tuple[np.ndarray, np.ndarray]:
    """The horizontal positions of the trace's scalar rows and of its evaluations."""
    from devsim.config import ConfigError
    column = AXES[x][0]
    s, e = trace.scalars, trace.evals
    if column not in s:
        raise ConfigError([f"{trace.path}: the trace has no {column!r} column to plot "
                           f"against (written by an older devsim)"])
    if x in ("hardware_time", "energy") and not np.any(s[column] > 0):
        raise ConfigError([f"{trace.path}: {AXES[x][1]} is 0 throughout: the chip's device "
                           f"models give no {x.replace('_', ' ')} figures"])
    xs = s[column]
    if column in e:
        return xs, e[column]
    return xs, (np.interp(e["step"], s["step"], xs) if len(s["step"]) else e["step"] * 0.0)


def plot_traces(paths, out: str | Path, x: str = "steps") -> Path:
    """Plot cost and test/train accuracy (or test cost) of each trace into one PNG, against
    ``x`` (a key of :data:`AXES`)."""
    plt = pyplot()
    traces = [read_trace(p) for p in paths]
    positions = [_x_values(trace, x) for trace in traces]  # every error before drawing
    fig, (ax_cost, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    for trace, (xs, ex) in zip(traces, positions):
        label = Path(trace.path).stem
        s, e = trace.scalars, trace.evals
        ax_cost.plot(xs, s["cost"], label=label)
        metric = "test_accuracy" if "test_accuracy" in e else "test_cost"
        ax_eval.plot(ex, e[metric], marker="o", ms=3, label=f"{label} test")
        if "train_accuracy" in e:
            ax_eval.plot(ex, e["train_accuracy"], ls="--", label=f"{label} train")
        ax_eval.set_ylabel(metric.replace("_", " "))
    xlabel = AXES[x][1]
    ax_cost.set(xlabel=xlabel, ylabel="training cost (mean per logged row)", yscale="log")
    ax_eval.set(xlabel=xlabel)
    for ax in (ax_cost, ax_eval):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

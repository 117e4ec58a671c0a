"""PNG plots of traces: training cost and evaluation metrics against hardware steps."""
from __future__ import annotations

from pathlib import Path

from devsim.trace import read_trace


def plot_traces(paths, out: str | Path, x: str = "steps") -> Path:
    """Plot cost and test/train accuracy (or test cost) of each trace into one PNG."""
    try:
        import matplotlib
    except ImportError:
        from devsim.config import ConfigError
        raise ConfigError(["plot: matplotlib is not installed (pip install 'devsim-lab[plot]')"]) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = [read_trace(p) for p in paths]
    fig, (ax_cost, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    for trace in traces:
        label = Path(trace.path).stem
        s, e = trace.scalars, trace.evals
        if x == "seconds":
            xs = s["wall_time"]
        else:
            xs = s["step"]
        ax_cost.plot(xs, s["cost"], label=label)
        metric = "test_accuracy" if "test_accuracy" in e else "test_cost"
        ex = e["step"]
        if x == "seconds" and len(s["step"]):
            import numpy as np
            ex = np.interp(e["step"], s["step"], s["wall_time"])
        ax_eval.plot(ex, e[metric], marker="o", ms=3, label=f"{label} test")
        if "train_accuracy" in e:
            ax_eval.plot(ex, e["train_accuracy"], ls="--", label=f"{label} train")
        ax_eval.set_ylabel(metric.replace("_", " "))
    xlabel = "hardware steps" if x == "steps" else "wall-clock seconds"
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

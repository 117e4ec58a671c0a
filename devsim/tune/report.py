"""What a study found: the best trials or the Pareto front as a table, and PNG plots
(optimisation history, each objective against each searched key, the Pareto front)
with labelled axes and units, for a person reading them in a talk.

Best and front are taken over complete, feasible trials (every constraint met),
whichever sampler ran the study. Runs outside the study (a preset's defaults, say)
can be shown next to it as references: their traces are measured with the same
metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devsim import config as cfg
from devsim.config import ConfigError
from devsim.tune import metrics, study as bookkeeping
from devsim.tune.params import TuneParams
from devsim.tune.space import Source


def load_study(folder: str | Path, storage: str | None = None):
    """The Optuna study of a study folder (``storage``: the RDB URL, needed where
    ``study.json`` hides its password)."""
    folder = Path(folder)
    marker = bookkeeping.read_marker(folder)
    label = marker.get("storage", "journal")
    if storage is None and label != "journal":
        if "***" in label:
            raise ConfigError([f"{folder}: the study is in {label}; give --storage with "
                               f"its password"])
        storage = label
    op = bookkeeping.optuna()
    handle = bookkeeping.open_storage(storage, folder)
    try:
        return op.load_study(study_name=marker["study"], storage=handle)
    except KeyError:
        raise ConfigError([f"{folder}: study {marker['study']!r} is not in {label}"]) from None


def study_config(study):
    """The base run config the study was made from, its ``tune`` section included."""
    from devsim.runconfig import RunConfig
    return cfg.loads(study.user_attrs["config_yaml"], RunConfig, f"study {study.study_name}")


@dataclass
class Point:
    """One measured setting: a trial, or a reference run."""

    name: str
    values: list[float]
    spread: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    feasible: bool = True
    number: int | None = None


def points(study, tune: TuneParams) -> list[Point]:
    """The complete trials, in trial order."""
    from optuna.trial import TrialState
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        feasible = max(t.user_attrs.get("constraints", [0.0])) <= 0
        out.append(Point(f"trial {t.number}", list(t.values), t.user_attrs.get("spread", {}),
                         dict(t.params), feasible, t.number))
    return out


def best(points_: list[Point], tune: TuneParams, top: int = 10) -> list[Point]:
    """The Pareto front of the feasible points (several objectives, sorted by the
    first), or the ``top`` best of them (one objective)."""
    signs = [1.0 if d == "minimize" else -1.0 for d in tune.directions]
    feasible = [p for p in points_ if p.feasible and not any(map(math.isnan, p.values))]
    keyed = [(np.multiply(signs, p.values), p) for p in feasible]
    if len(signs) == 1:
        return [p for _, p in sorted(keyed, key=lambda kp: kp[0][0])][:top]
    front = [p for v, p in keyed
             if not any(np.all(w <= v) and np.any(w < v) for w, _ in keyed)]
    return sorted(front, key=lambda p: signs[0] * p.values[0])


def reference(label: str, traces: list[str], tune: TuneParams) -> Point:
    """A reference point: the mean of ``tune``'s objectives over finished run traces."""
    from devsim.runconfig import RunConfig
    from devsim.trace import read_trace
    per = {o.metric: [] for o in tune.objectives}
    for path in traces:
        trace = read_trace(path)
        if not trace.complete:
            raise ConfigError([f"{path}: the run did not finish"])
        config = cfg.loads(trace.config_yaml, RunConfig, str(path))
        for name in per:
            try:
                per[name].append(metrics.value(name, trace.summary, config, path))
            except metrics.MetricUnavailable as exc:
                raise ConfigError([f"{path}: {exc}"]) from None
    spread = {k: float(np.std(v, ddof=1)) for k, v in per.items() if len(v) > 1}
    return Point(label, [float(np.mean(v)) for v in per.values()], spread)


def _number(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.4g}"


def table(study, tune: TuneParams, top: int = 10, references=()) -> str:
    """A Markdown summary: trial counts, failure reasons, and the best trials or the
    Pareto front with their values and settings, then any references."""
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    found = points(study, tune)
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    lost = sum(map(bookkeeping.is_lost, trials))
    failed = [t.user_attrs["fail_reason"] for t in trials if "fail_reason" in t.user_attrs]
    infeasible = sum(not p.feasible for p in found)
    lines = [f"study {study.study_name!r}: {len(found)} complete"
             + (f" ({infeasible} infeasible)" if infeasible else "")
             + f", {count[TrialState.PRUNED]} pruned, {len(failed)} failed"
             + (f", {lost} lost" if lost else "")
             + (f", {count[TrialState.RUNNING]} running" if count[TrialState.RUNNING] else "")]
    reasons: dict[str, int] = {}
    for reason in failed:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]:
        lines.append(f"  failed x{n}: {reason}")
    chosen = best(found, tune, top)
    lines += ["", ("Pareto front" if len(tune.objectives) > 1 else f"best {len(chosen)}")
              + " (complete, feasible trials):", ""]
    keys = [k.key for k in tune.space]
    lines.append("| trial | " + " | ".join([o.metric for o in tune.objectives] + keys) + " |")
    lines.append("|---" * (1 + len(tune.objectives) + len(keys)) + "|")
    for p in list(chosen) + list(references):
        cells = [p.name] + [_number(v) + (f" ± {p.spread[o.metric]:.2g}"
                                          if o.metric in p.spread else "")
                            for v, o in zip(p.values, tune.objectives)]
        cells += [_setting(p.params[k]) if k in p.params else "-" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _setting(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- plots
def plot(study, tune: TuneParams, folder: str | Path, references=()) -> list[Path]:
    """Write ``history.png``, ``params.png`` and (several objectives) ``pareto.png``
    into ``folder``; their paths."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(["tune-report: matplotlib is not installed "
                           "(pip install 'devsim-lab[plot]')"]) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12})
    folder = Path(folder)
    found = points(study, tune)
    chosen = best(found, tune, top=1 if len(tune.objectives) == 1 else 10 ** 9)
    base = study_config(study)
    labels = [_objective_label(o, base) for o in tune.objectives]
    out = [_history(plt, study, tune, labels, folder / "history.png", references),
           _params(plt, found, chosen, tune, labels, base, folder / "params.png")]
    if len(tune.objectives) > 1:
        out.append(_pareto(plt, found, chosen, tune, labels, folder / "pareto.png", references))
    return out


def _objective_label(objective, base) -> str:
    arrow = "higher is better" if objective.goal == "maximize" else "lower is better"
    return f"{metrics.label(objective.metric, base)}\n({arrow})"


def _key_label(key, found: list[Point], base) -> str:
    """``key (unit)``, the unit from the schema of a config where the key is set."""
    source = Source(cfg.dump(base.replace(tune=None)))
    path = metrics.key_path(key.key)
    for p in found:
        if key.key in p.params:
            try:
                unit = metrics.unit(source.load(p.params), path)
            except ConfigError:
                continue
            return f"{key.key} ({unit})" if unit else key.key
    return key.key


def _scale(ax, axis: str, values) -> None:
    """Log scale for positive values over more than two decades."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def _history(plt, study, tune, labels, path, references) -> Path:
    from matplotlib.ticker import MaxNLocator
    from optuna.trial import TrialState
    n = len(tune.objectives)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    trials = study.get_trials(deepcopy=False)
    for i, (ax, objective) in enumerate(zip(axes[0], tune.objectives)):
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        feasible = [t for t in done if max(t.user_attrs.get("constraints", [0.0])) <= 0]
        other = [t for t in done if t not in feasible]
        ax.plot([t.number for t in feasible], [t.values[i] for t in feasible], "o", ms=5,
                color="C0", label="complete")
        if other:
            ax.plot([t.number for t in other], [t.values[i] for t in other], "x", ms=6,
                    color="0.5", label="infeasible")
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
        if pruned and n == 1:
            ax.plot([t.number for t in pruned],
                    [t.intermediate_values[max(t.intermediate_values)] for t in pruned], "o",
                    mfc="none", color="C1", label="pruned (last evaluation)")
        if feasible:
            pick = max if objective.goal == "maximize" else min
            xs, ys, so_far = [], [], None
            for t in feasible:
                so_far = t.values[i] if so_far is None else pick(so_far, t.values[i])
                xs.append(t.number)
                ys.append(so_far)
            ax.step(xs, ys, where="post", color="C3", label="best so far")
        for j, ref in enumerate(references):
            ax.axhline(ref.values[i], ls="--", color=f"C{4 + j}", label=ref.name)
        _scale(ax, "y", [t.values[i] for t in done])
        ax.set(xlabel="trial number", ylabel=labels[i])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"optimisation history of study {study.study_name!r}")
    return _save(fig, path)


def _params(plt, found, chosen, tune, labels, base, path) -> Path:
    from matplotlib.ticker import MaxNLocator
    keys, n = tune.space, len(tune.objectives)
    fig, axes = plt.subplots(n, len(keys), figsize=(4.2 * len(keys), 3.6 * n), squeeze=False)
    marked = {p.number for p in chosen}
    for col, key in enumerate(keys):
        having = [p for p in found if key.key in p.params]
        categorical = key.type == "categorical"
        ticks = [str(c) for c in key.choices]
        xs = [ticks.index(str(p.params[key.key])) if categorical else p.params[key.key]
              for p in having]
        for row in range(n):
            ax = axes[row][col]
            for x, p in zip(xs, having):
                style = dict(color="C3", ms=7, zorder=3) if p.number in marked else \
                    dict(color="C0" if p.feasible else "0.6", ms=5, alpha=0.8)
                ax.plot([x], [p.values[row]], "o" if p.feasible else "x", **style)
            if categorical:
                ax.set_xticks(range(len(ticks)), ticks, rotation=20)
            elif key.log:
                ax.set_xscale("log")
            elif key.type == "int":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _scale(ax, "y", [p.values[row] for p in having])
            ax.set(xlabel=_key_label(key, found, base) if row == n - 1 else "",
                   ylabel=labels[row] if col == 0 else "")
            ax.grid(alpha=0.3)
    what = "Pareto front" if n > 1 else "best trial"
    fig.suptitle(f"objectives against each searched key (red: {what}; x: infeasible)")
    return _save(fig, path)


def _pareto(plt, found, chosen, tune, labels, path, references) -> Path:
    n = len(tune.objectives)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4.8), squeeze=False)
    front = {p.number for p in chosen}
    for ax, (a, b) in zip(axes[0], pairs):
        rest = [p for p in found if p.number not in front]
        ax.plot([p.values[a] for p in rest if p.feasible], [p.values[b] for p in rest if p.feasible],
                "o", color="0.65", ms=5, label="other trials")
        if any(not p.feasible for p in rest):
            ax.plot([p.values[a] for p in rest if not p.feasible],
                    [p.values[b] for p in rest if not p.feasible], "x", color="0.5", ms=6,
                    label="infeasible")
        line = sorted(chosen, key=lambda p: p.values[a])
        ax.plot([p.values[a] for p in line], [p.values[b] for p in line],
                "o-" if n == 2 else "o", color="C3", ms=7, label="Pareto front")
        for p in line:
            ax.annotate(str(p.number), (p.values[a], p.values[b]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        for j, ref in enumerate(references):
            ax.plot([ref.values[a]], [ref.values[b]], "*", ms=14, color=f"C{4 + j}",
                    label=ref.name)
        _scale(ax, "x", [p.values[a] for p in found])
        _scale(ax, "y", [p.values[b] for p in found])
        ax.set(xlabel=labels[a], ylabel=labels[b])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("Pareto front (numbers: trials)")
    return _save(fig, path)

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

SI_UNITS = ("J", "s")
"""Units shown with engineering prefixes, in tables and on axes (12 µJ, 3 ms)."""


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
    spread = {k: float(np.std(v, ddof=1)) for k, v in per.items()
              if len(v) > 1 and not k.startswith("config:")}
    return Point(label, [float(np.mean(v)) for v in per.values()], spread)


def _number(value: float, unit: str = "", digits: int = 4) -> str:
    """``value`` to ``digits`` digits; with an engineering prefix for SI_UNITS."""
    if value == math.inf:
        return "inf"
    if unit not in SI_UNITS or value == 0:
        return f"{value:.{digits}g}" + (f" {unit}" if unit in SI_UNITS else "")
    power = min(max(int(math.floor(math.log10(abs(value)) / 3)), -5), 3)
    prefix = {-5: "f", -4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G"}[power]
    scaled = value / 1000.0 ** power
    text = f"{scaled:.{digits}g}"
    return f"{scaled:.0f} {prefix}{unit}" if "e" in text else f"{text} {prefix}{unit}"


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
    units = [metrics.label(o.metric)[1] if o.metric in metrics.METRICS else ""
             for o in tune.objectives]
    for p in list(chosen) + list(references):
        cells = [p.name] + [_number(v, u) + (f" ± {_number(p.spread[o.metric], u, 2)}"
                                             if o.metric in p.spread else "")
                            for v, o, u in zip(p.values, tune.objectives, units)]
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
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9,
                         "legend.framealpha": 0.85})
    folder = Path(folder)
    found = points(study, tune)
    chosen = best(found, tune, top=1 if len(tune.objectives) == 1 else 10 ** 9)
    base = study_config(study)
    axes = [_objective_axis(o, base) for o in tune.objectives]
    out = [_history(plt, study, tune, axes, folder / "history.png", references),
           _params(plt, found, chosen, tune, axes, base, folder / "params.png")]
    if len(tune.objectives) > 1:
        out.append(_pareto(plt, found, tune, axes, folder / "pareto.png", references))
    return out


def _objective_axis(objective, base) -> tuple[str, str]:
    """(label, unit) of an objective's axis, the better direction in the label."""
    text, unit = metrics.label(objective.metric, base)
    better = "higher is better" if objective.goal == "maximize" else "lower is better"
    return f"{text}\n({better})", unit


def _key_axis(key, found: list[Point], base) -> tuple[str, str]:
    """(key path, unit from the schema of a config where the key is set)."""
    source = Source(cfg.dump(base.replace(tune=None)))
    path = metrics.key_path(key.key)
    for p in found:
        if key.key in p.params:
            try:
                return key.key, metrics.unit(source.load(p.params), path) or ""
            except ConfigError:
                continue
    return key.key, ""


def _dress(ax, which: str, axis: tuple[str, str], values, log: bool | None = None) -> None:
    """Label an axis with its unit, engineering prefixes for SI units and for large
    numbers, log scale (``log``, or None: for positive values over two decades)."""
    from matplotlib.ticker import EngFormatter, MaxNLocator
    label, unit = axis
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if log is None:
        log = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100
    target = ax.xaxis if which == "x" else ax.yaxis
    if log:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if unit in SI_UNITS:
        target.set_major_formatter(EngFormatter(unit=unit))
    elif finite and max(abs(v) for v in finite) >= 1e4:
        target.set_major_formatter(EngFormatter())
    if finite and all(float(v).is_integer() for v in finite) and not log:
        target.set_major_locator(MaxNLocator(integer=True))
    shown = label if unit in SI_UNITS or not unit else f"{label} ({unit})"
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(shown)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _history(plt, study, tune, axes, path, references) -> Path:
    from optuna.trial import TrialState
    n = len(tune.objectives)
    fig, grid = plt.subplots(1, n, figsize=(5.5 * n, 4.4), squeeze=False)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in done if max(t.user_attrs.get("constraints", [0.0])) <= 0]
    other = [t for t in done if t not in feasible]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    for i, (ax, objective) in enumerate(zip(grid[0], tune.objectives)):
        ax.plot([t.number for t in feasible], [t.values[i] for t in feasible], "o", ms=4,
                color="C0", label="complete")
        if other:
            ax.plot([t.number for t in other], [t.values[i] for t in other], "x", ms=6,
                    color="0.5", label="infeasible")
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
            ax.step(xs, ys, where="post", color="C3",
                    label="best so far" + (" (this objective alone)" if n > 1 else ""))
        for j, ref in enumerate(references):
            ax.axhline(ref.values[i], ls="--", color=f"C{4 + j}", label=ref.name)
        _dress(ax, "x", ("trial number", ""), [t.number for t in trials])
        _dress(ax, "y", axes[i], [t.values[i] for t in done])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"optimisation history of study {study.study_name!r}")
    return _save(fig, path)


def _params(plt, found, chosen, tune, axes, base, path) -> Path:
    keys, n = tune.space, len(tune.objectives)
    fig, grid = plt.subplots(n, len(keys), figsize=(4.2 * len(keys), 3.6 * n), squeeze=False)
    marked = {p.number for p in chosen}
    for col, key in enumerate(keys):
        having = [p for p in found if key.key in p.params]
        categorical = key.type == "categorical"
        ticks = [str(c) for c in key.choices]
        xs = [ticks.index(str(p.params[key.key])) if categorical else p.params[key.key]
              for p in having]
        for row in range(n):
            ax = grid[row][col]
            for x, p in zip(xs, having):
                style = dict(color="C3", ms=6, zorder=3) if p.number in marked else \
                    dict(color="C0" if p.feasible else "0.6", ms=4, alpha=0.7)
                ax.plot([x], [p.values[row]], "o" if p.feasible else "x", **style)
            if categorical:
                ax.set_xticks(range(len(ticks)), ticks, rotation=20)
                ax.set_xlabel(key.key if row == n - 1 else "")
            else:
                _dress(ax, "x", _key_axis(key, found, base) if row == n - 1 else ("", ""),
                       xs, log=key.log)
                values = key.grid()
                if values is not None and len(values) <= 12:
                    ax.set_xticks(values)
            _dress(ax, "y", axes[row] if col == 0 else ("", axes[row][1]),
                   [p.values[row] for p in having])
            ax.grid(alpha=0.3)
    what = "Pareto front" if n > 1 else "best trial"
    fig.suptitle(f"each objective against each searched key (red: {what}; x: infeasible)")
    return _save(fig, path)


def _pareto(plt, found, tune, axes, path, references) -> Path:
    """One panel per pair of objectives: every feasible trial, and the front of that
    pair (the trials no other beats on both), joined by a line."""
    n = len(tune.objectives)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    fig, grid = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 5), squeeze=False)
    for ax, (a, b) in zip(grid[0], pairs):
        pair = tune.replace(objectives=(tune.objectives[a], tune.objectives[b]))
        flat = [Point(p.name, [p.values[a], p.values[b]], feasible=p.feasible,
                      number=p.number) for p in found]
        front = {p.number for p in best(flat, pair)}
        rest = [p for p in flat if p.number not in front]
        ax.plot([p.values[0] for p in rest if p.feasible], [p.values[1] for p in rest if p.feasible],
                "o", color="0.7", ms=4, label="other trials")
        if any(not p.feasible for p in rest):
            ax.plot([p.values[0] for p in rest if not p.feasible],
                    [p.values[1] for p in rest if not p.feasible], "x", color="0.5", ms=6,
                    label="infeasible")
        line = sorted((p for p in flat if p.number in front), key=lambda p: p.values)
        ax.plot([p.values[0] for p in line], [p.values[1] for p in line], "o-", color="C3",
                ms=6, label="Pareto front of these two")
        for p in line:
            ax.annotate(str(p.number), (p.values[0], p.values[1]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        for j, ref in enumerate(references):
            ax.plot([ref.values[a]], [ref.values[b]], "*", ms=15, color=f"C{4 + j}",
                    markeredgecolor="k", label=ref.name)
        _dress(ax, "x", axes[a], [p.values[0] for p in flat])
        _dress(ax, "y", axes[b], [p.values[1] for p in flat])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("trade-offs between objectives (numbers: trials)")
    return _save(fig, path)

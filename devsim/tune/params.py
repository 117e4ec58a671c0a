"""The ``tune:`` section of a run config: what a study searches, optimises and respects.

The search space names key paths into the same config (the paths ``--set`` takes),
each with its range or choices, optionally only when an earlier key took a given value
(``network.device.adc_bits`` only when ``network.device.type`` is ``crossbar``). The
objectives and constraints are metrics of :mod:`devsim.tune.metrics`. The sampler and
pruner are Optuna's, named here so that a study is one file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from devsim.params import ParamError, Params, param
from devsim.tune import metrics


@dataclass(frozen=True)
class SearchKey(Params):
    """One dimension of the search space: a config key path and the values it may take."""

    key: str = param()
    """Key path into the run config, as ``--set`` takes it (``network.device.adc_bits``)."""
    type: str = param("float", choices=("float", "int", "categorical"))
    """``float`` or ``int`` (from ``low`` to ``high``), or ``categorical`` (``choices``)."""
    low: float | None = None
    """Smallest value (float and int keys)."""
    high: float | None = None
    """Largest value (float and int keys), included."""
    log: bool = False
    """Sample uniformly in the logarithm (both bounds must be > 0)."""
    step: float | None = param(None, gt=0.0)
    """Spacing of the allowed values from ``low`` (float and int keys; not with ``log``;
    int keys default to 1)."""
    choices: tuple[Any, ...] = ()
    """The values of a categorical key (strings, numbers, booleans)."""
    when: tuple[str, ...] = ()
    """Conditions ``KEY=VALUE`` on earlier keys of the space: this key is searched only
    in trials where all of them hold (otherwise the config's own value stays)."""

    def validate(self):
        try:
            metrics.key_path(self.key)
        except ValueError as exc:
            raise ParamError(("key",), str(exc)) from None
        if self.type == "categorical":
            if not self.choices:
                raise ParamError(("choices",), "a categorical key needs at least one choice")
            for i, choice in enumerate(self.choices):
                if choice is not None and not isinstance(choice, (str, int, float, bool)):
                    raise ParamError(("choices", i), f"must be a string, number or boolean, "
                                                     f"got {type(choice).__name__}")
            for name in ("low", "high", "step"):
                if getattr(self, name) is not None:
                    raise ParamError((name,), "only float and int keys have a range")
            return
        if self.choices:
            raise ParamError(("choices",), f"only categorical keys have choices ({self.type} "
                                           f"keys take low and high)")
        if self.low is None or self.high is None:
            raise ParamError(("low" if self.low is None else "high",),
                             f"a {self.type} key needs low and high")
        for name in ("low", "high", "step"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ParamError((name,), f"must be a finite number, got {v!r}")
            if self.type == "int" and v is not None and not float(v).is_integer():
                raise ParamError((name,), f"must be a whole number for an int key, got {v!r}")
        if not self.low <= self.high:
            raise ParamError(("high",), f"must be >= low ({self.low}), got {self.high}")
        if self.log and self.low <= 0:
            raise ParamError(("low",), f"must be > 0 with log: true, got {self.low}")
        if self.log and self.step is not None:
            raise ParamError(("step",), "cannot be combined with log: true")
        for i, text in enumerate(self.when):
            if "=" not in text:
                raise ParamError(("when", i), f"expected KEY=VALUE, got {text!r}")

    def conditions(self) -> list[tuple[str, Any]]:
        """``when`` as (key, value) pairs, values read as YAML."""
        out = []
        for text in self.when:
            key, raw = text.split("=", 1)
            out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else None))
        return out

    def grid(self) -> list | None:
        """Every value this key may take, or None if they are not finitely many."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step for i in range(n)]


@dataclass(frozen=True)
class Objective(Params):
    """One objective of the study."""

    metric: str = param()
    """What to optimise (``devsim/tune/metrics.py``): ``final_test_accuracy``,
    ``best_test_accuracy``, ``final_test_cost``, ``steps_to_target``, ``energy_j``,
    ``hardware_time_s``, ``pulses``, ``reads``, ``sram_bytes``, ``flash_bytes``,
    ``wall_seconds``, ``scalar:COLUMN`` (last logged value) or ``config:KEY.PATH``."""
    direction: str | None = param(None, choices=(None, "maximize", "minimize"))
    """Which way is better; None: the metric's own (accuracies up, everything else down)."""

    def validate(self):
        why = metrics.check_name(self.metric)
        if why:
            raise ParamError(("metric",), why)

    @property
    def goal(self) -> str:
        """The direction in effect."""
        return self.direction or metrics.direction(self.metric)


@dataclass(frozen=True)
class Constraint(Params):
    """A bound a trial must respect to count as feasible (an energy or SRAM budget)."""

    metric: str = param()
    """The metric bounded (the names objectives take)."""
    max: float | None = None
    """Feasible if the metric (mean over seeds) is at most this."""
    min: float | None = None
    """Feasible if the metric (mean over seeds) is at least this."""

    def validate(self):
        why = metrics.check_name(self.metric)
        if why:
            raise ParamError(("metric",), why)
        if self.max is None and self.min is None:
            raise ParamError(("max",), "give max, min or both")

    def violations(self, measured: float) -> dict[str, float]:
        """Optuna's constraint values for ``measured``, by name: <= 0 where the bound
        holds."""
        out = {}
        if self.max is not None:
            out[f"{self.metric} <= {self.max:g}"] = measured - self.max
        if self.min is not None:
            out[f"{self.metric} >= {self.min:g}"] = self.min - measured
        return out


@dataclass(frozen=True)
class SamplerParams(Params):
    """Optuna's sampler: how the next trial's values are chosen."""

    type: str = param("auto", choices=("auto", "tpe", "nsga2", "cmaes", "random", "grid"))
    """``tpe`` (model-based), ``nsga2`` (evolutionary, for several objectives), ``cmaes``
    (continuous and integer keys), ``random``, ``grid`` (every combination once; keys with
    finitely many values); ``auto``: tpe for one objective, nsga2 for several."""
    startup_trials: int = param(10, ge=0)
    """Random trials before TPE or CMA-ES start to model the results."""
    population_size: int = param(20, ge=2)
    """NSGA-II: trials per generation."""


@dataclass(frozen=True)
class PrunerParams(Params):
    """Optuna's pruner: which trials to stop early from their intermediate evaluations."""

    type: str = param("none", choices=("none", "median", "percentile", "halving", "hyperband"))
    """``median``/``percentile``: stop a trial whose evaluation is worse than that
    percentile of earlier trials at the same evaluation; ``halving``, ``hyperband``:
    successive halving and Hyperband; ``none``: every trial runs to its end."""
    startup_trials: int = param(5, ge=0)
    """Median/percentile: trials that finish before any is pruned."""
    warmup_evaluations: int = param(1, ge=0)
    """Median/percentile: evaluations of a trial before it may be pruned."""
    percentile: float = param(25.0, gt=0.0, lt=100.0)
    """Percentile pruner: keep trials better than this percentile (25: the best 75 %)."""
    min_evaluations: int = param(1, ge=1)
    """Halving/Hyperband: evaluations every trial gets (the minimum resource)."""
    reduction_factor: int = param(3, ge=2)
    """Halving/Hyperband: one in this many trials goes on at each rung."""


@dataclass(frozen=True)
class TuneParams(Params):
    """A study: search space, objectives, budget, sampler, pruner and constraints
    (run with ``devsim tune``; the rest of the config is every trial's base)."""

    space: tuple[SearchKey, ...] = ()
    """The keys searched, in order (a key's ``when`` may name only keys above it)."""
    objectives: tuple[Objective, ...] = param(
        default_factory=lambda: (Objective("final_test_accuracy"),))
    """One objective (best trials reported) or several (the Pareto front reported)."""
    trials: int = param(20, ge=1)
    """Trials the study should hold when done (``--trials`` overrides; running the
    command again after an interruption completes this count)."""
    seeds: int = param(1, ge=1)
    """Runs per trial, each with its own seed from the study seed and trial number; a
    trial's objectives are the means (spreads are recorded)."""
    seed: int = param(0, ge=0)
    """Study seed: trial seeds and samplers derive from it."""
    sampler: SamplerParams = field(default_factory=SamplerParams)
    """How trial values are chosen."""
    pruner: PrunerParams = field(default_factory=PrunerParams)
    """Early stopping of unpromising trials (one objective evaluated during the run)."""
    constraints: tuple[Constraint, ...] = ()
    """Bounds on metrics; trials outside them are infeasible (given to the sampler, and
    never reported as best or on the Pareto front)."""

    def validate(self):
        if not self.objectives:
            raise ParamError(("objectives",), "name at least one objective")
        names = [o.metric for o in self.objectives]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ParamError(("objectives", i, "metric"), f"{name} is listed twice")
        seen = {}
        for i, key in enumerate(self.space):
            if key.key in seen:
                raise ParamError(("space", i, "key"), f"{key.key} is already searched "
                                                      f"(space[{seen[key.key]}])")
            for j, (other, value) in enumerate(key.conditions()):
                if other not in seen:
                    raise ParamError(("space", i, "when", j),
                                     f"{other} is not a key searched above this one")
                grid = self.space[seen[other]].grid()
                if grid is not None and value not in grid:
                    raise ParamError(("space", i, "when", j),
                                     f"{other} never takes the value {value!r}")
            seen[key.key] = i
        self._validate_sampler()
        self._validate_pruner()

    def _validate_sampler(self):
        kind, multi = self.sampler.type, len(self.objectives) > 1
        if kind == "cmaes":
            if multi:
                raise ParamError(("sampler", "type"), "cmaes optimises one objective")
            if self.constraints:
                raise ParamError(("sampler", "type"), "cmaes takes no constraints; use tpe "
                                                      "or nsga2")
            for i, key in enumerate(self.space):
                if key.type == "categorical" or key.when:
                    raise ParamError(("space", i), "cmaes searches unconditional float and "
                                                   "int keys only")
        if kind == "grid":
            size = 1
            for i, key in enumerate(self.space):
                values = key.grid()
                if values is None:
                    raise ParamError(("space", i, "step"), "a grid needs a step for a float key")
                if key.when:
                    raise ParamError(("space", i, "when"), "a grid has no conditional keys")
                size *= len(values)
            if self.trials > size:
                raise ParamError(("trials",), f"the grid has {size} points, got {self.trials}")

    def _validate_pruner(self):
        if self.pruner.type == "none":
            return
        if len(self.objectives) > 1:
            raise ParamError(("pruner", "type"), "a pruner needs a single objective "
                                                 "(Optuna prunes single-objective studies)")
        metric = self.objectives[0].metric
        if metric not in metrics.EVALUATED or self.objectives[0].goal != metrics.direction(metric):
            raise ParamError(("pruner", "type"),
                             f"a pruner follows an objective evaluated during the run in its "
                             f"natural direction ({', '.join(metrics.EVALUATED)}), got {metric}")

    @property
    def directions(self) -> list[str]:
        """Optuna's study directions, one per objective."""
        return [o.goal for o in self.objectives]

    def grid_space(self) -> dict[str, list]:
        """Optuna's grid: every key's values (a grid sampler's search space)."""
        return {k.key: k.grid() for k in self.space}

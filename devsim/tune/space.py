"""A study's base config and search space: trial configs from sampled values, and the
checks that refuse a bad study before any trial runs.

A trial's config is the base config file with the trial's values applied as ``--set``
overrides, so a trial can name any key a config file can (presets included), and
every trial config is one ``devsim run CONFIG --set ...`` reproduces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devsim import config as cfg
from devsim.config import ConfigError
from devsim.tune import metrics
from devsim.tune.params import SearchKey, TuneParams


@dataclass(frozen=True)
class Source:
    """Where trial configs come from: the text of the base config (read once, so an edit
    of the file during a study changes nothing), where its presets are looked up, and
    fixed ``--set`` overrides."""

    text: str
    name: str = "<config>"
    """The file name errors are reported against."""
    base_dir: str = "."
    """Folder of the config file (``preset:`` paths are relative to it)."""
    fixed: tuple[str, ...] = ()
    """``--set`` overrides applied to every trial."""

    @classmethod
    def read(cls, path, fixed=()) -> "Source":
        """The source of config file ``path`` with ``--set`` overrides ``fixed``."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
        return cls(text, path.name, str(path.parent), tuple(fixed))

    def load(self, point: dict[str, Any] | None = None):
        """The validated run config with the values of ``point`` (key path -> value)."""
        from devsim.runconfig import RunConfig
        return cfg.loads(self.text, RunConfig, self.name, list(self.fixed) + overrides(point or {}),
                         Path(self.base_dir))


def overrides(point: dict[str, Any]) -> list[str]:
    """The ``--set`` arguments that reproduce a trial's values."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def suggest(trial, space: tuple[SearchKey, ...]) -> dict[str, Any]:
    """Ask Optuna's ``trial`` for a value of every key whose conditions hold."""
    point: dict[str, Any] = {}
    for key in space:
        if not all(k in point and point[k] == v for k, v in key.conditions()):
            continue
        if key.type == "categorical":
            point[key.key] = trial.suggest_categorical(key.key, list(key.choices))
        elif key.type == "int":
            point[key.key] = trial.suggest_int(key.key, int(key.low), int(key.high),
                                               step=int(key.step or 1), log=key.log)
        else:
            point[key.key] = trial.suggest_float(key.key, key.low, key.high, step=key.step,
                                                 log=key.log)
    return point


def _corners(tune: TuneParams) -> list[tuple[int, dict[str, Any]]]:
    """Trial points that between them set every key to each end of its range and to
    each choice: key ``i`` at that value, the keys its conditions name at the values
    they need, and every other key whose conditions then hold at its first value (as a
    trial would set it)."""
    out = []
    index = {k.key: j for j, k in enumerate(tune.space)}
    for i, key in enumerate(tune.space):
        needed, todo = {}, list(key.conditions())
        while todo:  # the conditions of the keys the conditions name, and so on
            k, w = todo.pop()
            needed[k] = w
            todo += tune.space[index[k]].conditions()
        values = key.choices if key.type == "categorical" else (
            [int(key.low), int(key.high)] if key.type == "int" else [key.low, key.high])
        for v in dict.fromkeys(values):
            point: dict[str, Any] = {}
            for j, other in enumerate(tune.space):
                if all(k in point and point[k] == w for k, w in other.conditions()):
                    point[other.key] = v if j == i else needed.get(other.key, _first(other))
            if point.get(key.key) == v:
                out.append((i, point))
    return out


def _first(key: SearchKey):
    if key.type == "categorical":
        return key.choices[0]
    return int(key.low) if key.type == "int" else key.low


def check(source: Source, tune: TuneParams) -> None:
    """Refuse a study that cannot run, before its first trial: an empty space, a key
    that does not exist or a bound its rules forbid (each key at each end of its range
    and each choice, with its conditions, must make a valid config), or a metric the
    runs cannot report. Raises :class:`ConfigError` naming the ``tune.`` key path."""
    base = source.load()
    errors = []
    if not tune.space:
        errors.append(f"{source.name}: tune.space: name at least one key to search")
    seen = set()
    searched = {k.key: j for j, k in enumerate(tune.space)}
    for i, point in _corners(tune):
        try:
            source.load(point)
        except ConfigError as exc:
            for message in exc.messages:
                reason = message.split(": ", 1)[1] if message.startswith(source.name) else message
                j = searched.get(reason.split(": ", 1)[0], i)  # a searched key named: its fault
                if (j, reason) not in seen:
                    seen.add((j, reason))
                    errors.append(f"{source.name}: tune.space[{j}].key: {tune.space[j].key}: "
                                  f"a trial with {' '.join(overrides(point))} fails: {reason}")
    named = [(f"tune.objectives[{i}].metric", o.metric) for i, o in enumerate(tune.objectives)]
    named += [(f"tune.constraints[{i}].metric", c.metric) for i, c in enumerate(tune.constraints)]
    scalars = {"cost", "estimate_norm", "update_norm", "wall_time",
               *base.train.estimator.diagnostics()}
    for where, name in named:
        if name.startswith("scalar:") and name[7:] not in scalars:
            errors.append(f"{source.name}: {where}: the trace logs no scalar {name[7:]!r}; "
                          f"it logs {', '.join(sorted(scalars))}")
        elif name.startswith("config:"):
            try:
                metrics.lookup(base, metrics.key_path(name[7:]))
            except (KeyError, ValueError):
                errors.append(f"{source.name}: {where}: the config has no key {name[7:]}")
        elif name == "steps_to_target" and not base.train.target_accuracy:
            errors.append(f"{source.name}: {where}: steps_to_target needs "
                          f"train.target_accuracy > 0")
    if errors:
        raise ConfigError(errors)

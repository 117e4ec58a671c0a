"""Many runs over hardware and training parameters: grid or random search.

A study is a base config plus a search space over dotted key paths (the same paths
``--set`` takes). Every trial is an ordinary run with its own trace; trials run in
worker processes (Numba kernels hold the GIL, threads would not help), and every
trial config is validated before the first one starts, so a typo fails at once.
Results go to ``results.csv`` in the study folder, one row per (point, seed).
"""
from __future__ import annotations

import csv
import itertools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yaml

from devsim.config import ConfigError, parse_overrides

OBJECTIVES = {"final_test_accuracy": max, "best_test_accuracy": max, "final_test_cost": min,
              "steps_to_target": min}


@dataclass(frozen=True)
class Trial:
    """One run of a study: its overrides, seed and trace path."""

    number: int
    overrides: tuple[str, ...]
    seed: int
    out: str


def _values(text: str, flag: str) -> list:
    if "=" not in text:
        raise ConfigError([f"{flag} {text}: expected KEY=V1,V2,... "])
    key, raw = text.split("=", 1)
    parse_overrides([f"{key}=0"])  # the key path must be readable
    return [key, [yaml.safe_load(v) for v in raw.split(",") if v.strip()]]


def grid_points(grid: list[str]) -> Iterator[tuple[str, ...]]:
    """Every combination of ``KEY=V1,V2,...`` axes, as ``--set`` strings."""
    axes = [_values(g, "--grid") for g in grid]
    for combo in itertools.product(*[values for _, values in axes]):
        yield tuple(f"{key}={value}" for (key, _), value in zip(axes, combo))


def random_points(space: list[str], trials: int, rng: np.random.Generator) -> Iterator[tuple[str, ...]]:
    """``trials`` draws from ``KEY=LO:HI`` (uniform) or ``KEY=log:LO:HI`` (log-uniform) axes;
    integer bounds give integer draws."""
    axes = []
    for item in space:
        if "=" not in item:
            raise ConfigError([f"--random {item}: expected KEY=LO:HI or KEY=log:LO:HI"])
        key, raw = item.split("=", 1)
        parse_overrides([f"{key}=0"])
        parts = raw.split(":")
        log = parts[0] == "log"
        try:
            lo, hi = (yaml.safe_load(p) for p in parts[int(log):])
            lo_f, hi_f = float(lo), float(hi)
        except (ValueError, TypeError):
            raise ConfigError([f"--random {item}: expected KEY=LO:HI or KEY=log:LO:HI"]) from None
        if not lo_f < hi_f or (log and lo_f <= 0):
            raise ConfigError([f"--random {item}: need 0 < LO < HI for log, LO < HI otherwise"])
        axes.append((key, lo_f, hi_f, log, isinstance(lo, int) and isinstance(hi, int)))
    for _ in range(trials):
        point = []
        for key, lo, hi, log, integer in axes:
            u = rng.random()
            v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if log else lo + u * (hi - lo)
            point.append(f"{key}={int(round(v)) if integer else float(f'{v:.6g}')}")
        yield tuple(point)


def plan(config_path: str, points, seeds: int, base_overrides: list[str], out_dir: Path,
         base_seed: int | None = None) -> list[Trial]:
    """Expand points x seeds into validated trials."""
    from devsim.runner import load_config
    trials = []
    for point in points:
        config = load_config(config_path, list(base_overrides) + list(point))
        first = config.seed if base_seed is None else base_seed
        for s in range(seeds):
            n = len(trials)
            trials.append(Trial(n, tuple(point), first + s,
                                str(out_dir / f"trial_{n:04d}_seed{first + s}.h5")))
    return trials


def _run_trial(args) -> dict:
    config_path, base_overrides, trial = args
    from devsim.runner import load_config, run
    config = load_config(config_path, list(base_overrides) + list(trial.overrides))
    summary = run(config.replace(seed=trial.seed), out=trial.out, source=Path(config_path).name)
    final = summary["final"]
    return {"trial": trial.number, "seed": trial.seed, "overrides": " ".join(trial.overrides),
            "final_test_accuracy": final.get("test_accuracy", math.nan),
            "best_test_accuracy": summary.get("best_test_accuracy", math.nan),
            "final_test_cost": final["test_cost"],
            "steps_to_target": summary.get("steps_to_target") if summary.get("steps_to_target")
            is not None else math.nan,
            "steps": summary["steps"], "wall_seconds": round(summary["wall_seconds"], 2),
            "trace": trial.out}


def run_study(config_path: str, trials: list[Trial], base_overrides: list[str], out_dir: Path,
              workers: int = 1, on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every trial (in ``workers`` processes) and write ``results.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(config_path, tuple(base_overrides), t) for t in trials]
    results = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for row in pool.map(_run_trial, jobs):
                results.append(row)
                if on_result:
                    on_result(row)
    else:
        for job in jobs:
            results.append(_run_trial(job))
            if on_result:
                on_result(results[-1])
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    return results


def best_point(results: list[dict], objective: str) -> tuple[str, float]:
    """The overrides whose seed-averaged objective is best, and that average."""
    by_point: dict[str, list[float]] = {}
    for row in results:
        by_point.setdefault(row["overrides"], []).append(row[objective])
    pick = OBJECTIVES[objective]
    means = {k: float(np.mean(v)) for k, v in by_point.items() if not np.isnan(np.mean(v))}
    if not means:
        return "", math.nan
    key = pick(means, key=means.get)
    return key, means[key]

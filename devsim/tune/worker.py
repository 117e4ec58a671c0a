"""A worker: takes trials from the study until it holds its count, runs each, tells
Optuna the outcome.

A trial is the base config with the sampled values, run once per seed (seeds derived
from the study seed and the trial number), each run with its own trace in the study
folder. Its objectives are the means over seeds (the per-seed values and spreads are
kept as user attributes). A trial that cannot run or diverges is failed with its
reason and the study goes on; a pruned trial stops after the evaluation its pruner
rejected. Worker processes hold BLAS and Numba to their share of the cores.
"""
from __future__ import annotations

import math
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from devsim.config import ConfigError
from devsim.tune import metrics, study as bookkeeping
from devsim.tune.params import TuneParams
from devsim.tune.space import Source, overrides, suggest

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS")
"""Environment variables that fix a worker process's thread counts at start."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    source: Source
    tune: TuneParams
    folder: str
    storage: str | None
    """RDB URL, or None for the folder's journal file."""
    study_name: str
    index: int
    """Worker number within this launch (seeds its sampler)."""
    threads: int | None = None
    """Threads for BLAS and Numba in this worker; None: leave them."""


def trial_seeds(study_seed: int, number: int, n: int) -> list[int]:
    """The run seeds of trial ``number``: independent of the worker and the order in
    which trials finish."""
    state = np.random.SeedSequence([study_seed, number]).generate_state(n)
    return [int(s) for s in state]


def limit_threads(n: int) -> None:
    """Hold this process's BLAS and Numba thread pools to ``n`` threads."""
    import numba
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def thread_counts() -> dict[str, int]:
    """This process's Numba threads and the most threads of its BLAS libraries."""
    import numba
    from threadpoolctl import threadpool_info
    blas = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return {"numba": numba.get_num_threads(), "blas": max(blas, default=0)}


def sampler_seed(spec: WorkerSpec, trials) -> int:
    """The seed of this worker's sampler. Samplers draw from their own generator, so
    workers must not share a seed: it derives from the study seed, the trials already
    there (a resumed study does not repeat its first draws) and the worker number, and,
    where other workers may be at work (an RDB storage, or trials running at start), from
    this process's host and pid. One worker alone on its journal is reproducible. A grid
    sampler is the exception: its grid order comes from its seed, the same everywhere."""
    if spec.tune.sampler.type == "grid":
        return spec.tune.seed
    entropy = [spec.tune.seed, len(trials), spec.index]
    if spec.storage is not None or any(t.state.name == "RUNNING" for t in trials):
        entropy += [os.getpid(), *socket.gethostname().encode()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def work(spec: WorkerSpec, log: Callable[[str], None] = print) -> int:
    """Run trials until the study holds its count; the number this worker ran."""
    if spec.threads:
        limit_threads(spec.threads)
    folder = Path(spec.folder)
    op = bookkeeping.optuna()
    storage = bookkeeping.open_storage(spec.storage, folder)
    there = op.load_study(study_name=spec.study_name, storage=storage).get_trials(deepcopy=False)
    study = op.load_study(study_name=spec.study_name, storage=storage,
                          sampler=bookkeeping.sampler(spec.tune, sampler_seed(spec, there)),
                          pruner=bookkeeping.pruner(spec.tune))
    ran = 0
    while True:
        with bookkeeping.folder_lock(folder):
            bookkeeping.recover(study, local_only=spec.storage is None)
            trial = _take(study, spec.tune.trials)
        if trial is None:
            return ran
        heartbeat = bookkeeping.Heartbeat(study, trial)
        try:
            line = run_trial(study, trial, spec)
        finally:
            heartbeat.close()
        ran += 1
        finished = bookkeeping.done(study.get_trials(deepcopy=False))
        log(f"[{finished}/{spec.tune.trials}] {line}")


def _take(study, target: int):
    """A new trial, or None once the study holds ``target`` trials that count."""
    if sum(map(bookkeeping.counts, study.get_trials(deepcopy=False))) >= target:
        return None
    with warnings.catch_warnings():  # Optuna expects heartbeats from optimize(); Heartbeat does it
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    trial.set_user_attr("worker", bookkeeping.identity())
    trial.set_user_attr("threads", thread_counts())
    ahead = sum(1 for t in study.get_trials(deepcopy=False)
                if bookkeeping.counts(t) and t.number < trial.number)
    if ahead >= target:  # another machine took the last one first
        from optuna.trial import TrialState
        trial.set_user_attr("surplus", f"the study already held {target} trials")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


class _Pruning:
    """``on_evaluation`` of a trial's first run: reports each evaluation after step 0
    to Optuna (step = evaluation number) and stops the run when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.count, self.best = trial, metric, 0, -math.inf

    def __call__(self, step: int, row: dict):
        from devsim.runner import StopRun
        if step == 0:
            return
        self.count += 1
        value = row[metrics.EVALUATED[self.metric]]
        if self.metric == "best_test_accuracy":
            self.best = value = max(self.best, value)
        self.trial.report(value, self.count)
        if self.trial.should_prune():
            raise StopRun(f"pruned at evaluation {self.count} (step {step}): "
                          f"{self.metric} {value:.4g}")


class _Failed(Exception):
    """A trial that failed for a stated reason (recorded, the study goes on)."""


def run_trial(study, trial, spec: WorkerSpec) -> str:
    """Run one trial and tell Optuna its outcome; a one-line account of it."""
    from optuna.trial import TrialState
    started = time.perf_counter()
    tune = spec.tune
    point = suggest(trial, tune.space)
    trial.set_user_attr("overrides", overrides(point))
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in point.items()) or "(base config)"
    try:
        state, values, attrs = _measure(trial, spec, point)
    except _Failed as exc:
        reason = str(exc)
        trial.set_user_attr("fail_reason", reason)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        study.tell(trial, state=TrialState.FAIL)
        return f"trial {trial.number} failed: {reason} | {shown}"
    except BaseException:  # interrupted or killed: lost, retried by the next launch
        trial.set_user_attr("lost", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        raise
    attrs["seconds"] = round(time.perf_counter() - started, 2)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return f"trial {trial.number} pruned: {attrs['stopped']} | {shown}"
    study.tell(trial, values)
    spread = attrs["spread"]
    text = ", ".join(f"{o.metric} {values[i]:.4g}" + (f" ± {spread[o.metric]:.2g}"
                                                     if o.metric in spread else "")
                     for i, o in enumerate(tune.objectives))
    feasible = "" if max(attrs.get("constraints", [0.0])) <= 0 else " (infeasible)"
    return f"trial {trial.number}: {text}{feasible} | {shown} ({attrs['seconds']:.1f} s)"


def _measure(trial, spec: WorkerSpec, point: dict) -> tuple[str, list[float], dict]:
    """Run every seed of the trial: ("complete" | "pruned", objective means, user attrs);
    :class:`_Failed` with the reason if the trial cannot run or diverges."""
    from devsim.runner import Diverged, run
    tune = spec.tune
    try:
        config = spec.source.load(point).replace(tune=None)
    except ConfigError as exc:
        raise _Failed("invalid: " + "; ".join(exc.messages)) from None
    names = list(dict.fromkeys([o.metric for o in tune.objectives]
                               + [c.metric for c in tune.constraints]))
    per_seed: dict[str, list[float]] = {name: [] for name in names}
    seeds = trial_seeds(tune.seed, trial.number, tune.seeds)
    attrs = {"seeds": seeds, "traces": []}
    for i, seed in enumerate(seeds):
        path = Path(spec.folder) / bookkeeping.TRIALS / f"trial{trial.number:05d}_seed{seed}.h5"
        attrs["traces"].append(str(path))
        hook = (_Pruning(trial, tune.objectives[0].metric)
                if tune.pruner.type != "none" and i == 0 else None)
        try:
            # overwrite: a trial run again after its worker was lost rewrites its traces
            summary = run(config.replace(seed=seed), out=path, source=spec.source.name,
                          overwrite=True, on_evaluation=hook)
        except ConfigError as exc:  # e.g. a memory budget refused at build
            raise _Failed("invalid: " + "; ".join(exc.messages)) from None
        except Diverged as exc:
            raise _Failed(f"{exc.message} (seed {seed})") from None
        except Exception as exc:  # noqa: BLE001 (a run that breaks fails its trial only)
            reason = " ".join(str(exc).split())
            raise _Failed(f"seed {seed}: {type(exc).__name__}: {reason}") from None
        cost = summary["final"].get("test_cost", math.nan)
        if not math.isfinite(cost):
            raise _Failed(f"diverged: final test cost {cost} (seed {seed})")
        for name in names:
            try:
                per_seed[name].append(metrics.value(name, summary, config, path))
            except metrics.MetricUnavailable as exc:
                raise _Failed(str(exc)) from None
        if "stopped" in summary:
            attrs["stopped"] = summary["stopped"]
            break
    means = {name: float(np.mean(v)) for name, v in per_seed.items()}
    attrs["metrics"] = means
    attrs["per_seed"] = per_seed
    attrs["spread"] = {name: float(np.std(v, ddof=1)) for name, v in per_seed.items()
                       if len(v) > 1 and not name.startswith("config:")}
    if tune.constraints:
        named = {k: v for c in tune.constraints for k, v in c.violations(means[c.metric]).items()}
        attrs["constraints"] = list(named.values())
        if bookkeeping.trial_constraints():
            for name, value in named.items():
                trial.set_constraint(name, value)
    values = [means[o.metric] for o in tune.objectives]
    if any(math.isnan(v) for v in values):
        raise _Failed("an objective is nan: " + ", ".join(f"{k} {v}" for k, v in means.items()))
    return ("pruned" if "stopped" in attrs else "complete"), values, attrs


def pool_environment(threads: int) -> dict[str, str]:
    """The environment of worker processes that each use ``threads`` threads."""
    env = dict(os.environ)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env

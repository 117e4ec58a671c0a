"""Shared pieces of the MGD experiments: on-chip training runs with evaluations.

``train_on_chip`` trains a config's network with :class:`trainer.compiled.CompiledMGD`
(MGD with random +-codes: the config's estimator, optimizer and timescales)
and evaluates test accuracy every ``eval_every`` hardware steps, returning the curve
and the time to target with the MGD papers' definition
(:func:`devsim.runner.steps_to_target`).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from devsim.runner import build, evaluate, load_config, steps_to_target
from trainer.base import Setup
from trainer.compiled import CompiledMGD
from trainer.loop import TrainingLoop

ROOT = Path(__file__).parents[1]


class Curve(NamedTuple):
    steps: np.ndarray
    accuracy: np.ndarray
    steps_to_target: int | None
    wall_seconds: float
    n_params: int


def config(name: str, *overrides: str):
    """A config file under configs/ with ``--set`` style overrides."""
    return load_config(ROOT / "configs" / name, list(overrides))


def train_on_chip(cfg, target: str, steps: int, eval_every: int, accuracy_target: float,
                  hold: int = 0) -> Curve:
    """Train cfg's network on chip for ``steps`` hardware steps, or (``hold`` > 0) until
    ``hold`` successive evaluations are at or above the target: the compiled executor
    (:class:`trainer.compiled.CompiledMGD`) runs the windows between evaluations in one
    call each."""
    built = build(cfg)
    bench, chip, data = built.bench, built.hardware, built.data
    ts = cfg.train.timescales
    estimator = cfg.train.estimator.replace(target=target).build(
        Setup(chip, np.random.default_rng([cfg.seed, 1]), ts))
    loop = TrainingLoop(chip, data.x_train, data.y_train, estimator,
                        cfg.train.optimizer.build(), ts, np.random.default_rng([cfg.seed, 2]),
                        executor=CompiledMGD(bench, estimator, cfg.train.optimizer))
    t0 = time.perf_counter()
    at, acc = [0], [evaluate(bench, data.x_test, data.y_test, data.labels_test)["accuracy"]]
    next_eval = eval_every
    while chip.steps < steps:
        loop.advance(min(steps, next_eval))
        if chip.steps >= next_eval:
            at.append(chip.steps)
            acc.append(evaluate(bench, data.x_test, data.y_test, data.labels_test)["accuracy"])
            next_eval = (chip.steps // eval_every + 1) * eval_every
            if hold and len(acc) >= hold and min(acc[-hold:]) >= accuracy_target:
                break
    at, acc = np.array(at), np.array(acc)
    return Curve(at, acc, steps_to_target(at, acc, accuracy_target), time.perf_counter() - t0,
                 chip.n_params)


def run_controller(name: str, overrides, seed: int, out_dir: Path) -> dict:
    """``devsim run configs/<name>`` with ``--set`` overrides and a seed through the
    controller path (``train.executor: plain``: every window asked and told in Python;
    the compiled executor gives the same bits; traces under out_dir); returns the run
    summary."""
    from devsim.runner import run
    cfg = config(name, "train.executor=plain", *overrides, f"seed={seed}")
    tag = hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:10]
    return run(cfg, out=out_dir / f"{Path(name).stem}_{tag}_s{seed}.h5", overwrite=True)


def sweep_arguments(description: str, name: str, argv=None):
    """The options every MGD sweep script takes: ``(args, out folder, runs folder)``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(ROOT / "experiments"))
    args = ap.parse_args(argv)
    runs = ROOT / "runs" / name
    runs.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out, runs

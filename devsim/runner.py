"""One run: a validated config in, a trained hardware model and an HDF5 trace out."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from devsim import config as cfg
from devsim.assemble import Built, build
from devsim.config import ConfigError
from devsim.hardware import Hardware
from devsim.runconfig import RunConfig, load_config
from devsim.trace import TraceWriter

__all__ = ["run", "build", "load_config", "RunConfig", "evaluate", "steps_to_target", "StopRun"]


class StopRun(Exception):
    """Raised by an ``on_evaluation`` callback of :func:`run` to end the run early (a
    tuning trial its pruner gave up on): the run stops after that evaluation, its trace
    is closed as usual, and the summary's ``stopped`` holds the exception's message."""


def evaluate(hardware: Hardware, x: np.ndarray, y: np.ndarray,
             labels: np.ndarray | None) -> dict:
    """Mean cost and (for classification) accuracy of the hardware on (x, y)."""
    from devsim.losses import loss_function
    out = hardware.outputs(x)
    metrics = {"cost": float(loss_function(hardware.loss)(out, y).mean())}
    if labels is not None:
        predicted = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
        metrics["accuracy"] = float((predicted == labels).mean())
    return metrics


def chip_state(hardware: Hardware) -> dict[str, np.ndarray]:
    """What a snapshot stores: the parameters and, if present, the decorrelation
    matrices R_l (flattened and concatenated)."""
    state = {"params": hardware.read_params()}
    if hardware.decorrelated:
        state["decorrelation"] = np.concatenate([r.ravel() for r in hardware.read_decorrelation()])
    return state


def steps_to_target(steps: np.ndarray, accuracy: np.ndarray, target: float) -> int | None:
    """MGD papers' time to target: the last evaluated step with accuracy below target
    (None if the last evaluation is still below it)."""
    below = np.flatnonzero(accuracy < target)
    if len(below) == len(accuracy) or (len(below) and below[-1] == len(accuracy) - 1):
        return None
    return int(steps[below[-1]]) if len(below) else 0


class _Progress:
    """A tqdm bar on a terminal, nothing otherwise."""

    def __init__(self, total: int, enabled: bool, initial: int = 0):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", unit_scale=True,
                            dynamic_ncols=True)

    def update(self, n: int, **postfix):
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Every:
    """True once each time the hardware step passes a multiple of ``period`` (0: never)."""

    def __init__(self, period: int):
        self.period, self.next = period, period or math.inf

    def __call__(self, step: int) -> bool:
        if step < self.next:
            return False
        self.next = (step // self.period + 1) * self.period
        return True


class _RowMean:
    """Means of the per-update values since the last logged row."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def add(self, values: dict):
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def pop(self) -> dict:
        row = {name: total / self.count for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return row


@dataclass
class RunState:
    """Everything a run carries from one update window to the next; a checkpoint is
    this object, pickled, so a resumed run continues exactly where it stopped."""

    built: Built
    log_due: _Every
    eval_due: _Every
    snapshot_due: _Every
    checkpoint_due: _Every
    rows: _RowMean = field(default_factory=_RowMean)
    eval_steps: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)
    last_eval: dict = field(default_factory=dict)
    elapsed: float = 0.0
    """Wall-clock seconds spent before the latest checkpoint."""


def checkpoint_path(trace: Path) -> Path:
    """Where a run writing ``trace`` keeps its checkpoint."""
    return trace.with_name(trace.name + ".ckpt")


def _save_checkpoint(path: Path, config: RunConfig, state: RunState, writer: TraceWriter):
    import cloudpickle
    writer.flush()  # the checkpoint must not be ahead of the trace on disk
    blob = cloudpickle.dumps({"config_yaml": cfg.dump(config), "state": state,
                              "rows": writer.row_counts()})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, config: RunConfig) -> tuple[RunState, dict]:
    import pickle
    try:
        saved = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError([f"{path}: no checkpoint to resume from (set trace.checkpoint_every)"]) from None
    if saved["config_yaml"] != cfg.dump(config):
        raise ConfigError([f"{path}: the config differs from the one the checkpoint was "
                           f"written with; resume with the same config and --set values"])
    return saved["state"], saved["rows"]


def run(config: RunConfig, out: str | Path | None = None, progress: bool = False,
        source: str = "<config>", resume: bool = False,
        on_evaluation: Callable[[int, dict], None] | None = None) -> dict:
    """Train as configured, write the trace, and return the run summary.

    With ``resume=True`` the run continues from its checkpoint (``<trace>.ckpt``,
    written every ``trace.checkpoint_every`` steps) and produces the same trace an
    uninterrupted run would, wall times aside. ``on_evaluation(step, metrics)`` is
    called after every evaluation (step 0 included) with the metrics written to the
    trace; if it raises :class:`StopRun`, the run ends there as that class describes.
    """
    path = Path(out or config.trace.path or f"runs/{config.name}.h5")
    checkpoint = checkpoint_path(path)
    if resume:
        state, rows_written = _load_checkpoint(checkpoint, config)
        writer = TraceWriter.reopen(path, rows_written, config.trace.flush_seconds)
    else:
        built = build(config, source)
        state = RunState(built, _Every(config.trace.log_every), _Every(config.train.eval_every),
                         _Every(config.trace.snapshot_every), _Every(config.trace.checkpoint_every))
        is_classification = built.data.is_classification
        writer = TraceWriter(
            path, cfg.dump(config), config.seed,
            scalars=["cost", "estimate_norm", "update_norm", "wall_time"]
            + list(config.train.estimator.diagnostics()),
            evals=["test_cost"] + (["test_accuracy", "train_accuracy"] if is_classification else []),
            snapshots={name: len(v) for name, v in chip_state(built.hardware).items()},
            flush_seconds=config.trace.flush_seconds)
    hw, loop, data = state.built.hardware, state.built.loop, state.built.data
    extra = list(config.train.estimator.diagnostics())  # estimator-reported scalars
    train_rows = np.random.default_rng(0).permutation(len(data.x_train))[:config.train.eval_train_samples]
    budget, t0 = config.train.steps, time.perf_counter() - state.elapsed
    bar = _Progress(budget, progress, initial=hw.steps)
    stopped = []  # the message of the StopRun that on_evaluation raised, if any

    def record_eval():
        test = evaluate(hw, data.x_test, data.y_test, data.labels_test)
        row = {"test_cost": test["cost"]}
        if data.is_classification:
            row["test_accuracy"] = test["accuracy"]
            if len(train_rows):
                row["train_accuracy"] = evaluate(hw, data.x_train[train_rows], data.y_train[train_rows],
                                                 data.labels_train[train_rows])["accuracy"]
            state.eval_steps.append(hw.steps)
            state.eval_accuracy.append(test["accuracy"])
        writer.evaluation(hw.steps, **row)
        state.last_eval = row
        if on_evaluation is not None:
            try:
                on_evaluation(hw.steps, dict(row))
            except StopRun as stop:
                stopped.append(str(stop) or "stopped")

    with writer:
        if not resume:
            writer.snapshot(0, **chip_state(hw))
            record_eval()
        while hw.steps < budget and not stopped:
            before = hw.steps
            stats = loop.update()
            state.rows.add({"cost": stats.cost, "estimate_norm": stats.estimate_norm,
                            "update_norm": stats.update_norm, **{n: stats.info[n] for n in extra}})
            done = hw.steps >= budget
            if state.log_due(hw.steps) or done:
                writer.scalar(hw.steps, wall_time=time.perf_counter() - t0, **state.rows.pop())
            if state.eval_due(hw.steps) or done:
                record_eval()
            if state.snapshot_due(hw.steps):
                writer.snapshot(hw.steps, **chip_state(hw))
            if state.checkpoint_due(hw.steps) and not done:
                state.elapsed = time.perf_counter() - t0
                _save_checkpoint(checkpoint, config, state, writer)
            bar.update(hw.steps - before, cost=f"{stats.cost:.4g}")
        bar.close()
        writer.snapshot(hw.steps, **chip_state(hw))
        wall = time.perf_counter() - t0
        summary = {"name": config.name, "seed": config.seed, "steps": hw.steps,
                   "eval_reads": hw.eval_reads, "wall_seconds": wall,
                   "steps_per_second": hw.steps / wall, "final": state.last_eval,
                   "trace": str(path), "device": hw.meter(), "resumed": resume}
        if stopped:
            summary["stopped"] = stopped[0]
        if state.built.memory is not None:
            summary["memory"] = state.built.memory.to_dict()
        if state.eval_accuracy:
            summary["best_test_accuracy"] = max(state.eval_accuracy)
            if config.train.target_accuracy:
                summary["steps_to_target"] = steps_to_target(
                    np.array(state.eval_steps), np.array(state.eval_accuracy),
                    config.train.target_accuracy)
        writer.close(summary)
    checkpoint.unlink(missing_ok=True)
    return summary

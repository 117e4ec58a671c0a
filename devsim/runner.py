"""One run: a validated config in, a trained hardware model and an HDF5 trace out."""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from devsim import checkpoint
from devsim import config as cfg
from devsim.assemble import Built, build
from devsim.config import ConfigError
from devsim.bench import Bench
from devsim.runconfig import RunConfig, load_config
from devsim.stopping import Diverged, DivergenceGuard, Interrupted, StopSignals, signal_name
from devsim.trace import (OutputError, TraceWriter, WriteError, check_output, partial_path,
                          trace_attrs)

if TYPE_CHECKING:
    from trainer.loop import UpdateStats

__all__ = ["run", "build", "load_config", "RunConfig", "evaluate", "steps_to_target",
           "Diverged", "Interrupted", "StopRun"]

SCALARS = ("cost", "estimate_norm", "update_norm", "skipped_updates", "nonfinite_costs",
           "nonfinite_params", "wall_time")
"""The trace's scalar columns (then the estimator's diagnostics): each a mean over the
row's update windows where it was finite; the windows skipped because their cost,
estimate or step was not finite, and those with a non-finite cost; the parameters
that are not finite at the row's end."""

METER_COLUMNS = {"reads": "reads", "pulses": "pulses", "time_s": "hardware_time_s",
                 "energy_j": "energy_j"}
"""Trace columns of the chip's meters (:meth:`devsim.bench.Bench.meter` key -> column),
in scalar and evaluation rows alike: device reads, programming pulses, hardware seconds
and joules that training has spent up to the row's step (evaluation reads excluded)."""


class StopRun(Exception):
    """Raised by an ``on_evaluation`` callback of :func:`run` to end the run early (a
    tuning trial its pruner gave up on): the run stops after that evaluation, its trace
    is closed as usual, and the summary's ``stopped`` holds the exception's message."""


def evaluate(bench: Bench, x: np.ndarray, y: np.ndarray, labels: np.ndarray | None) -> dict:
    """Mean cost and (for classification) accuracy of the network on (x, y), read on the
    bench (:meth:`devsim.bench.Bench.outputs`: training never sees the reads)."""
    from devsim.losses import loss_function
    out = bench.outputs(x)
    metrics = {"cost": float(loss_function(bench.chip.loss)(out, y).mean())}
    if labels is not None:
        predicted = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
        metrics["accuracy"] = float((predicted == labels).mean())
    return metrics


def meter_row(bench: Bench) -> dict:
    """The :data:`METER_COLUMNS` of a trace row: the chip's meter totals now."""
    return {column: float(value) for key, value in bench.meter().items()
            for column in (METER_COLUMNS[key],)}


def _diagnostics(config) -> list[str]:
    """Trace columns of the extra per-window scalars: the estimator's, and the cosine to
    the exact gradient when asked for."""
    return (list(config.train.estimator.diagnostics())
            + (["cosine"] if config.train.diagnose_cosine else []))


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


class _Row:
    """One trace row in the making: the mean of each value over the update windows
    since the last row where it was finite, and counts of the windows that were not."""

    def __init__(self):
        self.sums, self.counts, self.skipped, self.nonfinite_costs = {}, {}, 0, 0

    def add(self, stats: UpdateStats, extra: list[str]):
        self.skipped += stats.skipped
        self.nonfinite_costs += not math.isfinite(stats.cost)
        values = {"cost": stats.cost, "estimate_norm": stats.estimate_norm,
                  "update_norm": stats.update_norm, **{n: stats.info[n] for n in extra}}
        for name, value in values.items():
            if math.isfinite(value):
                self.sums[name] = self.sums.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self) -> dict:
        """The row's values (a value never finite in the row has no mean: NaN in the trace)."""
        row = {name: total / self.counts[name] for name, total in self.sums.items()}
        row.update(skipped_updates=self.skipped, nonfinite_costs=self.nonfinite_costs)
        self.__init__()
        return row


@dataclass
class RunState:
    """Everything a run carries from one update window to the next: the built run and
    the runner's bookkeeping (a checkpoint saves the bookkeeping with the built run's
    training state, :mod:`devsim.checkpoint`)."""

    built: Built | None
    log_due: _Every
    eval_due: _Every
    snapshot_due: _Every
    checkpoint_due: _Every
    guard: DivergenceGuard
    rows: _Row = field(default_factory=_Row)
    eval_steps: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)
    last_eval: dict = field(default_factory=dict)
    elapsed: float = 0.0
    """Wall-clock seconds spent before the latest checkpoint."""

    def next_due(self, budget: int) -> int:
        """The hardware step at which the runner next has something to do (a row, an
        evaluation, a snapshot, a checkpoint, the budget's end)."""
        return int(min(budget, self.log_due.next, self.eval_due.next,
                       self.snapshot_due.next, self.checkpoint_due.next))


def _save_checkpoint(path: Path, config: RunConfig, state: RunState, writer: TraceWriter):
    writer.flush()  # the checkpoint must not be ahead of the trace on disk
    try:
        checkpoint.save(path, cfg.dump(config), checkpoint.capture(state.built),
                        dataclasses.replace(state, built=None), writer.row_counts())
    except OSError as exc:
        raise WriteError(f"{path}: writing the checkpoint failed ({exc.strerror or exc}); "
                         f"the previous one, if any, is kept") from None


def _load_checkpoint(path: Path, config: RunConfig, trace: Path,
                     source: str) -> tuple[RunState, dict]:
    try:
        training, state, rows = checkpoint.load(path, cfg.dump(config))
    except FileNotFoundError:
        raise OutputError(_nothing_to_resume(trace, path)) from None
    except checkpoint.CheckpointMismatch as exc:
        raise ConfigError([str(exc)]) from None
    if not partial_path(trace).exists():
        raise OutputError(f"{partial_path(trace)}: the interrupted run's trace is gone; "
                          f"its checkpoint cannot continue it")
    return dataclasses.replace(state, built=build(config, source, restore=training)), rows


def _nothing_to_resume(trace: Path, checkpoint: Path) -> str:
    """Why there is no checkpoint for the trace at ``trace``, in the user's terms."""
    if trace.exists():
        attrs = trace_attrs(trace)
        how = ("completed" if attrs.get("complete")
               else f"ended early ({attrs.get('stop_reason') or 'no reason recorded'})")
        return (f"{trace}: this run has already {how}; nothing to resume (run it again "
                f"with --overwrite)")
    if partial_path(trace).exists():
        return (f"{checkpoint}: no checkpoint to resume from; the interrupted run wrote none "
                f"(set trace.checkpoint_every)")
    return f"{trace}: no run to resume here (no trace, no checkpoint {checkpoint.name})"


def trace_path(config: RunConfig, out: str | Path | None = None) -> Path:
    """Where a run of ``config`` writes its trace: ``out``, else ``trace.path``, else
    ``runs/<name>.h5``."""
    return Path(out or config.trace.path or f"runs/{config.name}.h5")


def _start(config: RunConfig, path: Path, source: str) -> tuple[RunState, TraceWriter]:
    """A fresh run's state and its new trace writer."""
    built = build(config, source)
    state = RunState(built, _Every(config.trace.log_every), _Every(config.train.eval_every),
                     _Every(config.trace.snapshot_every), _Every(config.trace.checkpoint_every),
                     DivergenceGuard(config.train.divergence))
    checkpoint.checkpoint_path(path).unlink(missing_ok=True)  # a stale one must not pair
    # with this trace
    classification = built.data.is_classification
    writer = TraceWriter(
        path, cfg.dump(config), config.seed,
        scalars=list(SCALARS) + list(METER_COLUMNS.values()) + _diagnostics(config),
        evals=(["test_cost"] + (["test_accuracy", "train_accuracy"] if classification else [])
               + list(METER_COLUMNS.values())),
        snapshots={name: len(v) for name, v in built.bench.state().items()},
        flush_seconds=config.trace.flush_seconds)
    return state, writer


def run(config: RunConfig, out: str | Path | None = None, progress: bool = False,
        source: str = "<config>", resume: bool = False, overwrite: bool = False,
        on_evaluation: Callable[[int, dict], None] | None = None) -> dict:
    """Train as configured, write the trace, and return the run summary.

    The trace goes to :func:`trace_path`; a path that already holds a trace (or the
    partial trace of an interrupted run) is refused with :class:`OutputError` before
    anything is built, unless ``overwrite``. With ``resume=True`` the run continues from
    its checkpoint (``<trace>.ckpt``, written every ``trace.checkpoint_every`` steps and
    on SIGINT/SIGTERM) and produces the same trace an uninterrupted run would, wall
    times aside. A run stops early by raising :class:`Diverged` (too many non-finite
    update windows), :class:`Interrupted` (a signal) or
    :class:`~devsim.trace.WriteError` (the trace could not be written), each keeping
    the trace written so far (:mod:`devsim.stopping`). ``on_evaluation(step, metrics)``
    is called after every evaluation (step 0 included) with the metrics written to the
    trace; if it raises :class:`StopRun`, the run ends there as that class describes.
    """
    path = trace_path(config, out)
    ckpt = checkpoint.checkpoint_path(path)
    if resume:
        state, rows_written = _load_checkpoint(ckpt, config, path, source)
        writer = TraceWriter.reopen(path, rows_written, config.trace.flush_seconds)
    else:
        check_output(path, overwrite)
        state, writer = _start(config, path, source)
    hw, bench = state.built.hardware, state.built.bench
    loop, data = state.built.loop, state.built.data
    extra = _diagnostics(config)
    train_rows = np.random.default_rng(0).permutation(len(data.x_train))[:config.train.eval_train_samples]
    budget, t0 = config.train.steps, time.perf_counter() - state.elapsed
    bar = _Progress(budget, progress, initial=hw.steps)
    stopped = []  # the message of the StopRun that on_evaluation raised, if any

    def record_eval():
        test = evaluate(bench, data.x_test, data.y_test, data.labels_test)
        row = {"test_cost": test["cost"]}
        if data.is_classification:
            row["test_accuracy"] = test["accuracy"]
            if len(train_rows):
                row["train_accuracy"] = evaluate(bench, data.x_train[train_rows], data.y_train[train_rows],
                                                 data.labels_train[train_rows])["accuracy"]
            state.eval_steps.append(hw.steps)
            state.eval_accuracy.append(test["accuracy"])
        writer.evaluation(hw.steps, **row, **meter_row(bench))
        state.last_eval = row
        if on_evaluation is not None:
            try:
                on_evaluation(hw.steps, dict(row))
            except StopRun as stop:
                stopped.append(str(stop) or "stopped")

    if not resume:
        try:
            if data.scaling is not None:
                writer.record_data(data.scaling.method, feature_offset=data.scaling.offset,
                                   feature_scale=data.scaling.scale)
            writer.snapshot(0, **bench.state())
            record_eval()
        except BaseException:
            writer.discard()  # a run that fails before training leaves no trace behind
            raise
    # Non-finite arithmetic is counted in the trace and stops the run past its
    # tolerance, so NumPy's floating-point warnings would only repeat it.
    with writer, StopSignals() as signals, np.errstate(over="ignore", invalid="ignore",
                                                       divide="ignore"):
        while hw.steps < budget and not signals.requested and not stopped:
            before = hw.steps
            for stats in loop.advance(state.next_due(budget)):  # windows up to the next
                state.rows.add(stats, extra)                      # row, evaluation, ...
                state.guard.observe(stats.skipped)
            done = hw.steps >= budget
            if state.log_due(hw.steps) or done or state.guard.exceeded:
                writer.scalar(hw.steps, wall_time=time.perf_counter() - t0,
                              nonfinite_params=_nonfinite(bench), **meter_row(bench),
                              **state.rows.pop())
            if state.guard.exceeded:
                break
            if state.eval_due(hw.steps) or done:
                record_eval()
            if state.snapshot_due(hw.steps):
                writer.snapshot(hw.steps, **bench.state())
            if state.checkpoint_due(hw.steps) and not done:
                state.elapsed = time.perf_counter() - t0
                _save_checkpoint(ckpt, config, state, writer)
            bar.update(hw.steps - before, cost=f"{stats.cost:.4g}")
        bar.close()
        if signals.requested and hw.steps < budget:
            state.elapsed = time.perf_counter() - t0
            raise _interrupted(signals.signum, config, state, writer, ckpt)
        writer.snapshot(hw.steps, **bench.state())
        summary = _summary(config, state, path, resume, time.perf_counter() - t0)
        if stopped:
            summary["stopped"] = stopped[0]
        stop_reason = state.guard.reason(hw.steps) if state.guard.exceeded else ""
        if stop_reason:
            summary["stop_reason"] = stop_reason
        writer.close(summary, stop_reason)
    ckpt.unlink(missing_ok=True)
    if stop_reason:
        raise Diverged(f"{stop_reason}; the trace {path} keeps every row up to the stop", summary)
    return summary


def _interrupted(signum: int, config: RunConfig, state: RunState, writer: TraceWriter,
                 ckpt: Path) -> Interrupted:
    """Leave a signalled run resumable: its checkpoint (where checkpoints are on) and its
    flushed ``.partial`` trace; the exception that says so."""
    if config.trace.checkpoint_every:
        _save_checkpoint(ckpt, config, state, writer)
    name = signal_name(signum)
    writer.abort(stop_reason=f"interrupted by {name}")
    how = (f"continue it with --resume (checkpoint {ckpt.name})"
           if config.trace.checkpoint_every else
           "set trace.checkpoint_every to make a run resumable")
    return Interrupted(signum, f"interrupted by {name} at step {state.built.hardware.steps:,}; "
                               f"{writer.partial} keeps every row so far; {how}")


def _nonfinite(bench: Bench) -> int:
    """How many of the chip's parameters are not finite."""
    return int(np.count_nonzero(~np.isfinite(bench.read_params())))


def _summary(config: RunConfig, state: RunState, path: Path, resume: bool, wall: float) -> dict:
    """What a run reports when it ends (also stored in its trace)."""
    hw, bench = state.built.hardware, state.built.bench
    summary = {"name": config.name, "seed": config.seed, "steps": hw.steps,
               "eval_reads": bench.eval_reads, "wall_seconds": wall,
               "steps_per_second": hw.steps / wall, "final": state.last_eval,
               "trace": str(path), "device": bench.meter(), "resumed": resume,
               "executor": type(state.built.loop.executor).__name__}
    reasons = getattr(state.built.loop.executor, "reasons", ())
    if reasons:  # the plain loop, and why no compiled executor runs the windows
        summary["plain_loop_reasons"] = list(reasons)
    if state.built.memory is not None:
        summary["memory"] = state.built.memory.to_dict()
    if state.eval_accuracy:
        summary["best_test_accuracy"] = max(state.eval_accuracy)
        if config.train.target_accuracy:
            summary["steps_to_target"] = steps_to_target(
                np.array(state.eval_steps), np.array(state.eval_accuracy),
                config.train.target_accuracy)
    return summary

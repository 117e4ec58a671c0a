"""Checkpoints: a run's state between two update windows, saved so that a killed run
continues exactly where it stopped.

A checkpoint holds the state of the run, never its data: the bench (the network's
parameters and device states, the positions of their noise streams, the chip's step
count), the estimator (its clocks, streams and filters), the optimizer's state, the
sample stream (its position and generator) and the runner's own bookkeeping (the row in
the making, the evaluations so far, the schedules). Resuming rebuilds the run from its
config, the data set from its seed, and puts this state back
(:func:`devsim.assemble.build` with ``restore``). The file is versioned; one of another
version, or written for another config, is refused with the reason.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple

VERSION = 2
"""Layout of the checkpoint file; a file of another version is refused."""


class TrainingState(NamedTuple):
    """What training carries from one update window to the next."""

    bench: Any
    """The :class:`~devsim.bench.Bench`: the network and its chip."""
    estimator: Any
    optimizer_state: Any
    stream: Any
    """The loop's :class:`~devsim.data.SampleStream`."""


def capture(built) -> TrainingState:
    """The training state of a built run (:class:`devsim.assemble.Built`)."""
    loop = built.loop
    return TrainingState(built.bench, loop.estimator, loop.opt_state, loop.stream)


def checkpoint_path(trace: Path) -> Path:
    """Where a run writing ``trace`` keeps its checkpoint."""
    return trace.with_name(trace.name + ".ckpt")


def save(path: Path, config_yaml: str, training: TrainingState, bookkeeping: Any,
         rows: dict[str, int]) -> None:
    """Write the checkpoint atomically (a temporary file renamed over the old one)."""
    import cloudpickle  # activations built from closures pickle by value
    blob = cloudpickle.dumps({"version": VERSION, "config_yaml": config_yaml,
                              "training": training, "bookkeeping": bookkeeping,
                              "rows": rows})
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CheckpointMismatch(ValueError):
    """A checkpoint that cannot continue this run (another version or config)."""


def load(path: Path, config_yaml: str) -> tuple[TrainingState, Any, dict[str, int]]:
    """(training state, bookkeeping, trace rows written) of the checkpoint at ``path``,
    which must be of this version and written for ``config_yaml``; raises
    :class:`FileNotFoundError` where there is none."""
    saved = pickle.loads(path.read_bytes())
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        found = saved.get("version", "none") if isinstance(saved, dict) else "none"
        raise CheckpointMismatch(f"{path}: a checkpoint of version {found}, this devsim "
                                 f"reads version {VERSION}; start the run again")
    if saved["config_yaml"] != config_yaml:
        raise CheckpointMismatch(f"{path}: the config differs from the one the checkpoint "
                                 f"was written with; resume with the same config and --set "
                                 f"values")
    return saved["training"], saved["bookkeeping"], saved["rows"]

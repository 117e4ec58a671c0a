"""Activity records: node activity of a network under one condition, in HDF5.

Layout of one file::

    /activity      (n, p) float64: one row per input, one column per node
    /layer         (p,) int64: the layer of each node
    /neuron        (p,) int64: its index within the layer
    attrs: devsim_activity_version, condition (its name), condition_yaml, source
           (the trace it was recorded from), chip_seed, created_utc

Nodes are named ``L<layer>.<neuron>``, the names a condition's faults use. The file
is written under ``<path>.partial`` and renamed when complete.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from devsim.trace import TraceError

__all__ = ["ActivityRecord", "write_activity", "read_activity", "node_names"]

ACTIVITY_VERSION = 1


def node_names(layer: np.ndarray, neuron: np.ndarray) -> list[str]:
    """``L<layer>.<neuron>`` for every node."""
    return [f"L{int(a)}.{int(b)}" for a, b in zip(layer, neuron)]


@dataclass(frozen=True)
class ActivityRecord:
    """Node activity (n, p) and where each node sits in the network."""

    activity: np.ndarray
    layer: np.ndarray
    neuron: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return node_names(self.layer, self.neuron)

    @property
    def condition(self) -> str:
        return str(self.attrs.get("condition", ""))


def write_activity(path: str | Path, record: ActivityRecord) -> Path:
    """Write ``record`` to ``path`` (through ``<path>.partial``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        f.attrs["devsim_activity_version"] = ACTIVITY_VERSION
        f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key, value in record.attrs.items():
            f.attrs[key] = value
        f.create_dataset("activity", data=np.asarray(record.activity, dtype=np.float64),
                         compression="gzip", shuffle=True)
        f.create_dataset("layer", data=np.asarray(record.layer, dtype=np.int64))
        f.create_dataset("neuron", data=np.asarray(record.neuron, dtype=np.int64))
    os.replace(partial, path)
    return path


def read_activity(path: str | Path) -> ActivityRecord:
    """Read an activity record, raising :class:`devsim.trace.TraceError` (one line)
    for a file that is not one."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        reason = "no such file" if not path.exists() else f"not a readable HDF5 file ({exc})"
        raise TraceError(f"{path}: {reason}") from None
    with f:
        if "devsim_activity_version" not in f.attrs:
            hint = (" but a run trace: record activity from it with 'devsim activity "
                    "TRACE --out FILE'" if "devsim_trace_version" in f.attrs else "")
            raise TraceError(f"{path}: not an activity record{hint}")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        missing = [name for name in ("activity", "layer", "neuron") if name not in f]
        if missing:
            raise TraceError(f"{path}: activity record without {', '.join(missing)}")
        activity, layer, neuron = (f[name][()] for name in ("activity", "layer", "neuron"))
    if (activity.ndim != 2 or layer.shape != activity.shape[1:]
            or neuron.shape != activity.shape[1:]):
        raise TraceError(f"{path}: activity of shape {activity.shape} does not match its "
                         f"{len(layer)} layer and {len(neuron)} neuron indices")
    return ActivityRecord(activity, layer, neuron, attrs)

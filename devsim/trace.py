"""Run traces in HDF5: written crash-safely, read back as arrays.

Layout of one file::

    /config_yaml                  resolved config (string dataset)
    /scalars/step                 hardware step at the end of each row (dimension scale)
    /scalars/<column>             one 1-D float64 column per logged quantity
    /evals/step, /evals/<metric>  evaluation points (accuracy, test cost, ...)
    /snapshots/step, /snapshots/params   sparse parameter snapshots (rows x P), and
    /snapshots/decorrelation             the decorrelation matrices R_l, flattened, if any
    attrs: devsim_trace_version, versions, seed, created_utc, complete, summary_json

The writer buffers rows and appends them in blocks to chunked, gzip-compressed,
resizable datasets, flushing on a time schedule. It writes to ``<path>.partial``
and renames to ``<path>`` only on a clean close, so a file under the final name is
always complete; a killed run leaves the ``.partial`` file with every flushed row.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

TRACE_VERSION = 1
_CHUNK = 4096


def _versions() -> dict:
    import numba
    import yaml

    from devsim import __version__
    return {"devsim": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "pyyaml": yaml.__version__}


class _Table:
    """Buffered appends of named float columns into one HDF5 group."""

    def __init__(self, group: h5py.Group, columns: list[str] | dict[str, int]):
        """``columns``: scalar column names, or ``{name: row width}`` for array columns."""
        widths = dict(columns) if isinstance(columns, dict) else dict.fromkeys(columns)
        self.group, self.columns = group, ["step"] + list(widths)
        self.rows: list[tuple] = []
        for name in self.columns:
            width = widths.get(name)
            shape, chunks = ((0,), (_CHUNK,)) if width is None else \
                ((0, width), (max(1, min(_CHUNK, (1 << 20) // (8 * width))), width))
            group.create_dataset(name, shape=shape, maxshape=(None,) + shape[1:],
                                 dtype="f8" if name != "step" else "i8", chunks=chunks,
                                 compression="gzip", shuffle=True)
        group["step"].make_scale("step")
        for name in self.columns[1:]:
            group[name].dims[0].attach_scale(group["step"])

    @classmethod
    def reopen(cls, group: h5py.Group, rows: int) -> "_Table":
        """The table in an existing group, cut back to its first ``rows`` rows."""
        table = cls.__new__(cls)
        table.group, table.rows = group, []
        table.columns = ["step"] + [name for name in group if name != "step"]
        for name in table.columns:
            group[name].resize(rows, axis=0)
        return table

    def __len__(self) -> int:
        return self.group["step"].shape[0] + len(self.rows)

    def append(self, step: int, values: dict):
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"trace has no column(s) {sorted(unknown)} in /{self.group.name}")
        self.rows.append((step, values))

    def flush(self):
        if not self.rows:
            return
        n0, n = self.group["step"].shape[0], len(self.rows)
        for name in self.columns:
            ds = self.group[name]
            ds.resize(n0 + n, axis=0)
            if name == "step":
                ds[n0:] = [r[0] for r in self.rows]
            else:
                ds[n0:] = np.array([r[1].get(name, np.nan) for r in self.rows], dtype=float)
        self.rows = []


class TraceWriter:
    """Writes one run's trace; use as a context manager."""

    def __init__(self, path: str | Path, config_yaml: str, seed: int, scalars: list[str],
                 evals: list[str], snapshots: dict[str, int], flush_seconds: float = 10.0):
        """``snapshots`` maps each snapshot array (``params``, ...) to its length."""
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.partial, "w")
        f = self._file
        f.attrs["devsim_trace_version"] = TRACE_VERSION
        f.attrs["seed"] = seed
        f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.attrs["complete"] = False
        f.attrs["versions"] = json.dumps(_versions())
        f.create_dataset("config_yaml", data=config_yaml, dtype=h5py.string_dtype())
        self.scalars = _Table(f.create_group("scalars"), scalars)
        self.evals = _Table(f.create_group("evals"), evals)
        self.snapshots = _Table(f.create_group("snapshots"), snapshots)
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()

    @classmethod
    def reopen(cls, path: str | Path, rows: dict[str, int],
               flush_seconds: float = 10.0) -> "TraceWriter":
        """Continue the ``.partial`` trace of an interrupted run, keeping exactly the
        first ``rows[group]`` rows of each group (what its checkpoint had flushed)."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.partial = writer.path.with_name(writer.path.name + ".partial")
        writer._file = h5py.File(writer.partial, "a")
        for name in ("scalars", "evals", "snapshots"):
            setattr(writer, name, _Table.reopen(writer._file[name], rows[name]))
        writer.flush_seconds = flush_seconds
        writer._last_flush = time.monotonic()
        return writer

    def row_counts(self) -> dict[str, int]:
        """Rows per group, buffered ones included."""
        return {name: len(getattr(self, name)) for name in ("scalars", "evals", "snapshots")}

    def scalar(self, step: int, **values):
        """Append one row of per-step scalars."""
        self.scalars.append(step, values)
        self._maybe_flush()

    def evaluation(self, step: int, **values):
        """Append one evaluation point."""
        self.evals.append(step, values)
        self._maybe_flush()

    def snapshot(self, step: int, **arrays: np.ndarray):
        """Store state arrays (``params=...``, ...) as they are at ``step``."""
        self.snapshots.append(step, {k: np.asarray(v, dtype=float) for k, v in arrays.items()})
        self._maybe_flush()

    def _maybe_flush(self):
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self):
        for table in (self.scalars, self.evals, self.snapshots):
            table.flush()
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self, summary: dict | None = None):
        """Flush, mark complete and move the file to its final name."""
        self.flush()
        if summary is not None:
            self._file.attrs["summary_json"] = json.dumps(summary)
        self._file.attrs["complete"] = True
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self):
        """Flush what there is and leave it under the ``.partial`` name."""
        try:
            self.flush()
        finally:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._file.id.valid:
            self.abort()


@dataclass
class Trace:
    """A trace read back into memory."""

    path: Path
    attrs: dict
    config_yaml: str
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    evals: dict[str, np.ndarray] = field(default_factory=dict)
    snapshots: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def summary(self) -> dict:
        return json.loads(self.attrs.get("summary_json", "{}"))

    def to_dataframe(self, group: str = "scalars"):
        """The ``scalars`` or ``evals`` table as a pandas DataFrame indexed by step."""
        import pandas as pd
        table = getattr(self, group)
        return pd.DataFrame({k: v for k, v in table.items() if k != "step"},
                            index=pd.Index(table["step"], name="step"))


class TraceError(ValueError):
    """A file that is not a readable devsim trace."""


def read_trace(path: str | Path) -> Trace:
    """Read a trace (complete, or a ``.partial`` left by a killed run)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        reason = "no such file" if not path.exists() else f"not a readable HDF5 file ({exc})"
        raise TraceError(f"{path}: {reason}") from None
    with f:
        if "devsim_trace_version" not in f.attrs:
            raise TraceError(f"{path}: not a devsim trace (no devsim_trace_version attribute)")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        config = f["config_yaml"][()]
        trace = Trace(path, attrs, config.decode() if isinstance(config, bytes) else config)
        for name in ("scalars", "evals", "snapshots"):
            setattr(trace, name, {k: ds[()] for k, ds in f[name].items()})
    return trace

"""Run traces in HDF5: written crash-safely, read back as arrays.

Layout of one file::

    /config_yaml                  resolved config (string dataset)
    /scalars/step                 hardware step at the end of each row (dimension scale)
    /scalars/<column>             one 1-D float64 column per logged quantity
    /evals/step, /evals/<metric>  evaluation points (accuracy, test cost, ...)
    /snapshots/step, /snapshots/params   sparse parameter snapshots (rows x P), and
    /snapshots/decorrelation             the decorrelation matrices R_l, flattened, if any
    /data/<name>                  what the data set records, e.g. feature_offset and
                                  feature_scale of its input scaling (attrs: method)
    attrs: devsim_trace_version, versions, seed, created_utc, complete, stop_reason,
           summary_json

The writer buffers rows and appends them in blocks to chunked, gzip-compressed,
resizable datasets, flushing on a time schedule. It writes to ``<path>.partial``
and renames to ``<path>`` only when the run ends: ``complete`` when it reached its
budget, else ``stop_reason`` says why it ended early (divergence). A killed or
interrupted run leaves the ``.partial`` file with every flushed row.

Nothing is written over by accident: :func:`check_output` refuses a path that holds a
trace or a partial trace (unless told to overwrite) or whose folder cannot be
written, before a run starts. Before each flush the writer checks that the file can
grow by the most the flush may add (free space on its file system, the process's
file-size limit), because an HDF5 write that fails halfway leaves the file unreadable;
when it cannot, it raises :class:`WriteError` and the file keeps every row of its
last flush.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

TRACE_VERSION = 1
_CHUNK = 4096
_METADATA_ROOM = 256 * 1024
"""Bytes kept free beyond a flush's data for HDF5's own bookkeeping (object headers,
chunk indices, attributes)."""


class TraceError(ValueError):
    """A file that is not a readable devsim trace."""


class OutputError(ValueError):
    """A trace path a run must not or cannot write: it holds a trace already, or its
    folder cannot be written."""


class WriteError(OSError):
    """Writing a trace (or its checkpoint) failed during a run; the message says what
    the file still holds."""


def partial_path(path: str | Path) -> Path:
    """Where the trace for ``path`` is written until the run ends."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def check_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse a trace path before a run starts: one that holds a trace or the partial
    trace of an interrupted run (unless ``overwrite``), a directory, or one whose
    folder cannot be created or written. Creates the folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; the trace needs a file name")
    if not overwrite:
        if path.exists():
            raise OutputError(f"{path}: a trace is already there; choose another output "
                              f"or overwrite it (--overwrite)")
        if partial_path(path).exists():
            raise OutputError(f"{partial_path(path)}: an interrupted run's trace is there; "
                              f"continue it (--resume) or start again (--overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write the trace there "
                          f"({exc.strerror or exc})") from None


def _room(path: Path) -> int:
    """Bytes the file at ``path`` may still grow by: the free space of its file system,
    and what the process's file-size limit leaves."""
    room = shutil.disk_usage(path.parent).free
    try:
        import resource
    except ImportError:  # no such limits on this platform
        return room
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        room = min(room, limit - path.stat().st_size)
    return room


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
        self.last_step = None
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
        table.last_step = int(group["step"][rows - 1]) if rows else None
        return table

    def __len__(self) -> int:
        return self.group["step"].shape[0] + len(self.rows)

    def append(self, step: int, values: dict):
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"trace has no column(s) {sorted(unknown)} in /{self.group.name}")
        self.rows.append((step, values))

    def flush_bound(self) -> int:
        """The most bytes a flush of the buffered rows adds to the file: their data,
        plus each column's last chunk, rewritten compressed with the new rows in it."""
        if not self.rows:
            return 0
        total = 0
        for name in self.columns:
            ds = self.group[name]
            row_bytes = ds.dtype.itemsize * (ds.shape[1] if ds.ndim == 2 else 1)
            total += (len(self.rows) + ds.chunks[0]) * row_bytes
        return total

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
        self.last_step = self.rows[-1][0]
        self.rows = []


class TraceWriter:
    """Writes one run's trace; use as a context manager."""

    def __init__(self, path: str | Path, config_yaml: str, seed: int, scalars: list[str],
                 evals: list[str], snapshots: dict[str, int], flush_seconds: float = 10.0):
        """``snapshots`` maps each snapshot array (``params``, ...) to its length."""
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.partial, "w")
        try:
            f = self._file
            f.attrs["devsim_trace_version"] = TRACE_VERSION
            f.attrs["seed"] = seed
            f.attrs["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["complete"] = False
            f.attrs["stop_reason"] = ""
            f.attrs["versions"] = json.dumps(_versions())
            f.create_dataset("config_yaml", data=config_yaml, dtype=h5py.string_dtype())
            self.scalars = _Table(f.create_group("scalars"), scalars)
            self.evals = _Table(f.create_group("evals"), evals)
            self.snapshots = _Table(f.create_group("snapshots"), snapshots)
            f.flush()
        except BaseException:
            self.discard()
            raise
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self._failed = False

    @classmethod
    def reopen(cls, path: str | Path, rows: dict[str, int],
               flush_seconds: float = 10.0) -> "TraceWriter":
        """Continue the ``.partial`` trace of an interrupted run, keeping exactly the
        first ``rows[group]`` rows of each group (what its checkpoint had flushed)."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.partial = partial_path(writer.path)
        writer._file = h5py.File(writer.partial, "a")
        for name in ("scalars", "evals", "snapshots"):
            setattr(writer, name, _Table.reopen(writer._file[name], rows[name]))
        writer._file.attrs["stop_reason"] = ""
        writer.flush_seconds = flush_seconds
        writer._last_flush = time.monotonic()
        writer._failed = False
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

    def record_data(self, method: str, **arrays: np.ndarray):
        """Store what the data set records (``/data/<name>``, ``method`` as an attribute)."""
        group = self._file.require_group("data")
        group.attrs["method"] = method
        for name, values in arrays.items():
            group.create_dataset(name, data=np.asarray(values, dtype=float))

    def _maybe_flush(self):
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self):
        """Write the buffered rows, if the file has room for the most they may take."""
        tables = (self.scalars, self.evals, self.snapshots)
        need = sum(t.flush_bound() for t in tables)
        if need:
            room = _room(self.partial)
            if room < need + _METADATA_ROOM:
                self._failed = True
                raise WriteError(f"{self.partial}: no room to write the trace ({room / 1e6:.2f} "
                                 f"MB free, a flush may need {(need + _METADATA_ROOM) / 1e6:.2f} "
                                 f"MB); it keeps {self._kept()}")
        try:
            for table in tables:
                table.flush()
            self._file.flush()
        except OSError as exc:
            self._failed = True
            raise WriteError(f"{self.partial}: writing the trace failed "
                             f"({str(exc).splitlines()[0]}); rows after {self._kept()} "
                             f"may be lost") from None
        self._last_flush = time.monotonic()

    def _kept(self) -> str:
        step = self.scalars.last_step
        return "no rows" if step is None else f"every row up to step {step:,} (its last flush)"

    def close(self, summary: dict | None = None, stop_reason: str = ""):
        """Flush and move the file to its final name: ``complete`` unless a
        ``stop_reason`` says why the run ended early."""
        self.flush()
        if summary is not None:
            self._file.attrs["summary_json"] = json.dumps(summary)
        self._file.attrs["stop_reason"] = stop_reason
        self._file.attrs["complete"] = not stop_reason
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self, stop_reason: str = ""):
        """Flush what there is (unless writing already failed) and leave it under the
        ``.partial`` name, with ``stop_reason`` where one is given."""
        try:
            if not self._failed:
                if stop_reason:
                    self._file.attrs["stop_reason"] = stop_reason
                self.flush()
        finally:
            self._file.close()

    def discard(self):
        """Close and remove the ``.partial`` file (a run that failed before training)."""
        if self._file.id.valid:
            self._file.close()
        self.partial.unlink(missing_ok=True)

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
    data: dict[str, np.ndarray | str] = field(default_factory=dict)
    """What the data set recorded (``feature_offset``, ``feature_scale``, ``method``)."""

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


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        reason = "no such file" if not path.exists() else f"not a readable HDF5 file ({exc})"
        raise TraceError(f"{path}: {reason}") from None


def trace_attrs(path: str | Path) -> dict:
    """The attributes of the trace at ``path`` (``complete``, ``stop_reason``, ...)."""
    with _open(Path(path)) as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}


def read_trace(path: str | Path) -> Trace:
    """Read a trace (complete, or a ``.partial`` left by a killed run)."""
    path = Path(path)
    f = _open(path)
    with f:
        if "devsim_trace_version" not in f.attrs:
            raise TraceError(f"{path}: not a devsim trace (no devsim_trace_version attribute)")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        config = f["config_yaml"][()]
        trace = Trace(path, attrs, config.decode() if isinstance(config, bytes) else config)
        for name in ("scalars", "evals", "snapshots"):
            setattr(trace, name, {k: ds[()] for k, ds in f[name].items()})
        if "data" in f:
            trace.data = {**dict(f["data"].attrs), **{k: ds[()] for k, ds in f["data"].items()}}
    return trace

"""User data files: the arrays of a ``.npz`` or ``.h5`` file, read and checked.

A data file holds ``X`` (samples x features) and ``y``: one integer class label per
row, or float regression targets (one per row, or a row of them per sample);
optionally ``X_test`` and ``y_test`` in the same layout. Every problem is found
before anything is built or trained and reported as one
:class:`~devsim.params.ParamError` at the ``path`` key, naming the file, the array,
the problem and the first offending index.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from devsim.params import ParamError

ARRAYS = ("X", "y", "X_test", "y_test")
"""The arrays a data file may hold (``X`` and ``y`` are required)."""

_KIND_NAMES = {"U": "strings", "S": "byte strings", "O": "Python objects",
               "c": "complex numbers", "b": "booleans", "V": "records", "M": "dates",
               "m": "time spans"}


class FileArrays(NamedTuple):
    """A data file's checked arrays: float inputs, and labels or float targets."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: int | None
    """Number of classes where ``y`` holds labels; None for regression targets."""


def _fail(path: Path, message: str):
    raise ParamError(("path",), f"{path}: {message}")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """``X``, ``y`` and the optional test arrays of a ``.npz`` or ``.h5`` file."""
    if not path.exists():
        _fail(path, "file not found")
    if path.is_dir():
        _fail(path, "is a directory; expected a .npz or .h5 file")
    if path.suffix == ".npz":
        arrays = _read_npz(path)
    elif path.suffix in (".h5", ".hdf5"):
        arrays = _read_h5(path)
    else:
        _fail(path, "expected a .npz or .h5 file")
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        _fail(path, f"missing array(s) {', '.join(missing)}")
    return arrays


def _read_npz(path: Path) -> dict:
    try:
        f = np.load(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        _fail(path, f"not a readable .npz file ({str(exc).splitlines()[0]})")
    if not isinstance(f, np.lib.npyio.NpzFile):
        _fail(path, "holds a single array, not named arrays; save it with np.savez(X=..., y=...)")
    with f:
        arrays = {}
        for key in (k for k in ARRAYS if k in f.files):
            try:
                arrays[key] = f[key]
            except ValueError:  # an object array, which would need unpickling
                _fail(path, f"{key} holds Python objects (a pickled array); store numbers")
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                _fail(path, f"{key} cannot be read ({str(exc).splitlines()[0]})")
        return arrays


def _read_h5(path: Path) -> dict:
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        _fail(path, f"not a readable HDF5 file ({str(exc).splitlines()[0]})")
    with f:
        arrays = {}
        for key in (k for k in ARRAYS if k in f):
            if not isinstance(f[key], h5py.Dataset):
                _fail(path, f"{key} is an HDF5 group; store the array as a dataset")
            arrays[key] = f[key][()]
        return arrays


def _where(mask: np.ndarray) -> str:
    """The first True index of ``mask``, as ``[i]`` or ``[i, j]``."""
    return "[" + ", ".join(str(int(i)) for i in np.argwhere(mask)[0]) + "]"


def _numbers(path: Path, name: str, a: np.ndarray, kinds: str) -> None:
    if a.dtype.kind not in kinds:
        what = _KIND_NAMES.get(a.dtype.kind, "values")
        hint = "; store class labels as integers" if a.dtype.kind == "b" else "; store numbers"
        _fail(path, f"{name} holds {what} (dtype {a.dtype}){hint}")


def _finite(path: Path, name: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            first = np.argwhere(bad)[0]
            _fail(path, f"{name} holds {a[tuple(first)]} at {_where(bad)}; values must be finite")


def _inputs(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    """``x`` checked as a samples x features matrix of finite numbers, as float64."""
    _numbers(path, name, x, "biuf")
    if x.ndim != 2:
        _fail(path, f"{name} must be two-dimensional (samples x features), got shape {x.shape}")
    if x.shape[0] == 0:
        _fail(path, f"{name} holds no samples (shape {x.shape})")
    if x.shape[1] == 0:
        _fail(path, f"{name} has no features (shape {x.shape})")
    _finite(path, name, x)
    return x.astype(np.float64)


def _outputs(path: Path, name: str, y: np.ndarray, rows: int, x_name: str) -> np.ndarray:
    """``y`` checked as one label or one row of targets per row of ``x_name``."""
    _numbers(path, name, y, "iuf")
    if y.ndim not in (1, 2):
        _fail(path, f"{name} must hold one label or target per row (n,) or one row of "
                    f"targets per row (n, k), got shape {y.shape}")
    if len(y) != rows:
        _fail(path, f"{x_name} has {rows} rows but {name} has {len(y)}")
    _finite(path, name, y)
    return y


def _labels(path: Path, name: str, y: np.ndarray, classes: int) -> None:
    """Class labels in [0, classes) (the bound can only fail where data.classes is set)."""
    for bad, rule in ((y < 0, "labels must be 0 or more"),
                      (y >= classes, f"data.classes is {classes}, so labels must be below it")):
        if bad.any():
            _fail(path, f"{name} holds the class label {y[bad][0]} at {_where(bad)}; {rule}")


def check_arrays(path: Path, arrays: dict, classes: int = 0) -> FileArrays:
    """The arrays of ``path`` checked: numbers only, all finite, ``X`` two-dimensional
    with at least one sample and one feature, ``y`` one label (or target row) per
    row, integer labels in [0, classes) (``classes`` 0: the largest label + 1),
    ``X_test``/``y_test`` both or neither, laid out as ``X``/``y``."""
    x = _inputs(path, "X", arrays["X"])
    y = _outputs(path, "y", arrays["y"], len(x), "X")
    is_labels = y.ndim == 1 and y.dtype.kind in "iu"
    if classes and not is_labels:
        _fail(path, f"y holds {'floats' if y.dtype.kind == 'f' else 'rows of integers'} "
                    f"(regression targets) but data.classes is {classes}; store class "
                    f"labels as one integer per row")
    given = [k for k in ("X_test", "y_test") if k in arrays]
    if len(given) == 1:
        other = ({"X_test", "y_test"} - set(given)).pop()
        _fail(path, f"{given[0]} is given without {other}; give both or neither")
    x_test = y_test = None
    if given:
        x_test = _inputs(path, "X_test", arrays["X_test"])
        if x_test.shape[1] != x.shape[1]:
            _fail(path, f"X_test has {x_test.shape[1]} features but X has {x.shape[1]}")
        y_test = _outputs(path, "y_test", arrays["y_test"], len(x_test), "X_test")
        if is_labels and not (y_test.ndim == 1 and y_test.dtype.kind in "iu"):
            _fail(path, f"y holds integer class labels but y_test holds dtype {y_test.dtype} "
                        f"with shape {y_test.shape}; store its labels the same way")
        if not is_labels and _width(y_test) != _width(y):
            _fail(path, f"y_test has {_width(y_test)} target column(s) but y has {_width(y)}")
    if not is_labels:
        targets = [t if t.ndim == 2 else t[:, None] for t in (y, y_test) if t is not None]
        return FileArrays(x, targets[0].astype(np.float64), x_test,
                          targets[1].astype(np.float64) if given else None, None)
    n = classes or int(max(y.max(), y_test.max() if given else y.max())) + 1
    _labels(path, "y", y, n)
    if given:
        _labels(path, "y_test", y_test, n)
    return FileArrays(x, y.astype(np.int64), x_test,
                      y_test.astype(np.int64) if given else None, n)


def _width(y: np.ndarray) -> int:
    return 1 if y.ndim == 1 else y.shape[1]

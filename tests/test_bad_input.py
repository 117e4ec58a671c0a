"""Hostile input as a new user gives it: bad data files, a trace already at the output,
a folder that cannot be written, resuming what cannot be resumed. Each gets exit
status 2 and one line naming the file and the problem, no traceback, and an existing
trace stays exactly as it was."""
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from devsim.cli import main
from devsim.data import ArrayFile, DataWarning
from devsim.params import ParamError
from devsim.rng import streams
from devsim.trace import read_trace

ROOT = Path(__file__).parents[1]
ARRAYS = str(ROOT / "configs/user_arrays.yaml")
SMALL = ["train.steps=2000", "train.eval_every=1000", "trace.log_every=500"]


def _args(out, *sets, config=ARRAYS, extra=()):
    args = ["run", config, "--out", str(out), "-q", *extra]
    for s in SMALL + list(sets):
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def trace_bytes(tmp_path_factory):
    """The bytes of a real, complete trace (the moons example, 2,000 steps)."""
    out = tmp_path_factory.mktemp("keep") / "keep.h5"
    assert main(_args(out)) == 0
    return out.read_bytes()


@pytest.fixture
def existing(tmp_path, trace_bytes):
    """A complete trace at the output path of the run under test."""
    out = tmp_path / "run.h5"
    out.write_bytes(trace_bytes)
    return out


def _save(path: Path, arrays: dict):
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value.astype("S") if value.dtype.kind == "U" else value


_rng = np.random.default_rng(0)
X, Y = _rng.normal(size=(40, 3)), _rng.integers(0, 2, 40)


def _with(**changes):
    return {"X": X, "y": Y, **changes}


def _nan_x():
    x = X.copy()
    x[7, 2] = np.nan
    return x


HOSTILE = [  # (name, arrays in the file, what the one line says)
    ("nan in X", _with(X=_nan_x()), "X holds nan at [7, 2]; values must be finite"),
    ("X as strings", _with(X=X.astype(str)), "X holds "),
    ("negative labels", _with(y=Y - 1),
     f"y holds the class label -1 at [{np.flatnonzero(Y == 0)[0]}]; labels must be 0 or more"),
    ("empty", _with(X=np.zeros((0, 3)), y=np.zeros(0, np.int64)), "X holds no samples (shape (0, 3))"),
    ("3-D X", _with(X=X.reshape(40, 3, 1)),
     "X must be two-dimensional (samples x features), got shape (40, 3, 1)"),
    ("inf in y", _with(y=np.where(np.arange(40) == 5, np.inf, 1.0)), "y holds inf at [5]"),
    ("y of 3 dimensions", _with(y=np.zeros((40, 1, 1))), "y must hold one label or target per row"),
    ("rows differ", _with(y=Y[:39]), "X has 40 rows but y has 39"),
    ("label past classes", _with(y=Y + 3), "data.classes is 2, so labels must be below it"),
    ("X_test features", _with(X_test=X[:5, :2], y_test=Y[:5]), "X_test has 2 features but X has 3"),
    ("X_test alone", _with(X_test=X[:5]), "X_test is given without y_test"),
    ("y_test floats", _with(X_test=X[:5], y_test=np.ones(5)), "y holds integer class labels but y_test"),
    ("complex X", _with(X=X.astype(complex)), "X holds complex numbers"),
]


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("name,arrays,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_data_file_is_one_line_and_loses_nothing(name, arrays, message, suffix,
                                                            tmp_path, existing, capsys):
    data = tmp_path / f"data{suffix}"
    _save(data, arrays)
    sets = [f"data.path={data}", "network.layers[1].units=2"]
    if name == "label past classes":
        sets.append("data.classes=2")
    before = existing.read_bytes()
    code = main(_args(existing, *sets, extra=["--overwrite"]))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"devsim: error: user_arrays.yaml: data.path: {data}: ")
    assert message in err
    assert existing.read_bytes() == before
    assert not (tmp_path / "run.h5.partial").exists()


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable .npz file"),
    (b"PK\x03\x04 not really a zip", "not a readable .npz file"),
])
def test_an_empty_or_broken_file_is_one_line(content, message, tmp_path, existing, capsys):
    data = tmp_path / "data.npz"
    data.write_bytes(content)
    before = existing.read_bytes()
    assert main(_args(existing, f"data.path={data}", extra=["--overwrite"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{data}: {message}" in err and "Traceback" not in err
    assert existing.read_bytes() == before


def test_object_arrays_and_h5_groups_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", X=np.array([[1, "a"]], dtype=object), y=np.zeros(1, int))
    with pytest.raises(ParamError, match="X holds Python objects"):
        ArrayFile(path=str(tmp_path / "o.npz")).load(np.random.default_rng(0))
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("X")
        f["y"] = Y
    with pytest.raises(ParamError, match="X is an HDF5 group"):
        ArrayFile(path=str(tmp_path / "g.h5")).load(np.random.default_rng(0))


def test_a_split_without_samples_on_one_side_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=X[:3], y=Y[:3])
    for fraction, side in ((0.1, "test"), (0.9, "training")):
        with pytest.raises(ParamError, match=f"leaves no {side} sample"):
            ArrayFile(path=str(tmp_path / "d.npz"), test_fraction=fraction).load(np.random.default_rng(0))


def test_the_exact_cases_as_a_subprocess_print_no_traceback(tmp_path, existing):
    """End to end through the interpreter: NaN data and a 3-D X (which once left a
    .partial behind), over an existing trace with --overwrite."""
    before = existing.read_bytes()
    for name in ("nan in X", "3-D X"):
        arrays = next(h[1] for h in HOSTILE if h[0] == name)
        _save(tmp_path / "d.npz", arrays)
        proc = subprocess.run([sys.executable, "-m", "devsim", *_args(
            existing, f"data.path={tmp_path / 'd.npz'}", extra=["--overwrite"])],
            cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert existing.read_bytes() == before and not (tmp_path / "run.h5.partial").exists()


# ------------------------------------------------------------------ the output path
def test_an_existing_trace_is_refused_unless_overwrite(existing, capsys):
    before = existing.read_bytes()
    assert main(_args(existing)) == 2
    err = capsys.readouterr().err
    assert err == (f"devsim: error: {existing}: a trace is already there; choose another "
                   f"output or overwrite it (--overwrite)\n")
    assert existing.read_bytes() == before
    assert main(_args(existing, extra=["--overwrite"])) == 0
    assert read_trace(existing).complete and existing.read_bytes() != before


def test_the_default_trace_path_is_protected_too(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "configs/moons.npz", tmp_path / "moons.npz")
    args = ["run", ARRAYS, "-q", "--set", "data.path=moons.npz"]
    for s in SMALL:
        args += ["--set", s]
    assert main(args) == 0
    written = (tmp_path / "runs/moons.h5").read_bytes()
    assert main(args) == 2 and "a trace is already there" in capsys.readouterr().err
    assert (tmp_path / "runs/moons.h5").read_bytes() == written


def test_an_interrupted_runs_partial_trace_is_refused_unless_overwrite(tmp_path, capsys):
    partial = tmp_path / "run.h5.partial"
    partial.write_bytes(b"rows of a killed run")
    assert main(_args(tmp_path / "run.h5")) == 2
    err = capsys.readouterr().err
    assert "an interrupted run's trace is there; continue it (--resume) or start again" in err
    assert partial.read_bytes() == b"rows of a killed run"


def test_an_unwritable_output_is_refused_before_anything_is_built(tmp_path, monkeypatch, capsys):
    def no_build(*args, **kwargs):
        raise AssertionError("the run was built before its output was checked")

    monkeypatch.setattr("devsim.runner.build", no_build)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(_args(blocker / "t.h5")) == 2
    err = capsys.readouterr().err
    assert err.startswith("devsim: error: ") and err.count("\n") == 1 and str(blocker) in err
    assert main(_args(tmp_path)) == 2  # a directory as the trace path
    assert "is a directory" in capsys.readouterr().err


def test_a_run_failing_before_training_leaves_no_partial_trace(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr("devsim.runner.evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        main(_args(tmp_path / "run.h5"))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ resume
def test_resume_says_why_there_is_nothing_to_resume(tmp_path, existing, capsys):
    before = existing.read_bytes()
    assert main(_args(existing, extra=["--resume"])) == 2
    assert existing.read_bytes() == before
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{existing}: this run has already completed; nothing to resume" in err
    assert main(_args(tmp_path / "none.h5", extra=["--resume"])) == 2
    assert "no run to resume here" in capsys.readouterr().err
    (tmp_path / "p.h5.partial").write_bytes(b"x")
    assert main(_args(tmp_path / "p.h5", extra=["--resume"])) == 2
    assert "no checkpoint to resume from; the interrupted run wrote none" in capsys.readouterr().err


# ------------------------------------------------------------------ scaling file data
def _sensor_file(path):
    """Raw sensor-like features (thousands, very different ranges, one constant)."""
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.normal(3000, 400, 200), rng.normal(-20, 3, 200), np.full(200, 7.0)])
    np.savez(path, X=x, y=(x[:, 0] > 3000).astype(np.int64))


@pytest.mark.parametrize("method", ["unit", "standard"])
def test_scale_is_fitted_on_the_training_split(method, tmp_path):
    _sensor_file(tmp_path / "s.npz")
    with pytest.warns(DataWarning, match="reaches 4.*in magnitude"):
        raw = ArrayFile(path=str(tmp_path / "s.npz")).load(np.random.default_rng(1))
    scaled = ArrayFile(path=str(tmp_path / "s.npz"), scale=method).load(np.random.default_rng(1))
    x = raw.x_train
    if method == "unit":
        lo, hi = x.min(0), x.max(0)
        expect_train = (x - lo) / np.where(hi > lo, hi - lo, 1)
        np.testing.assert_array_equal(scaled.x_train[:, :2].min(0), 0)
        np.testing.assert_array_equal(scaled.x_train[:, :2].max(0), 1)
    else:
        mean, std = x.mean(0), x.std(0)
        expect_train = (x - mean) / np.where(std > 0, std, 1)
        np.testing.assert_allclose(scaled.x_train[:, :2].mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(scaled.x_train[:, :2].std(0), 1, rtol=1e-12)
    np.testing.assert_array_equal(scaled.x_train, expect_train)
    np.testing.assert_array_equal(scaled.x_train[:, 2], 0)  # the constant feature
    np.testing.assert_array_equal(scaled.x_test, scaled.scaling(raw.x_test))
    np.testing.assert_array_equal(scaled.labels_train, raw.labels_train)


def test_scaling_is_recorded_in_the_trace_and_raw_features_get_a_hint(tmp_path, capsys):
    _sensor_file(tmp_path / "s.npz")
    out = tmp_path / "s.h5"
    assert main(_args(out, f"data.path={tmp_path / 's.npz'}", "data.scale=standard")) == 0
    trace = read_trace(out)
    seed = 0  # configs/user_arrays.yaml
    loaded = ArrayFile(path=str(tmp_path / "s.npz"), scale="standard").load(streams(seed)["data"])
    assert trace.data["method"] == "standard"
    np.testing.assert_array_equal(trace.data["feature_offset"], loaded.scaling.offset)
    np.testing.assert_array_equal(trace.data["feature_scale"], loaded.scaling.scale)
    assert trace.data["feature_scale"][2] == 1.0  # the constant feature
    assert "warning" not in capsys.readouterr().err
    assert main(_args(tmp_path / "raw.h5", f"data.path={tmp_path / 's.npz'}")) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("devsim: warning: ")
    assert "data.scale: standard" in err and read_trace(tmp_path / "raw.h5").data == {}

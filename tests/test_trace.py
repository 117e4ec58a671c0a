"""HDF5 traces: round trip, crash safety, readers."""
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from devsim.trace import TraceError, TraceWriter, read_trace


def _write(path, rows=5000, close=True):
    w = TraceWriter(path, "seed: 1\n", seed=1, scalars=["cost", "wall_time"], evals=["test_accuracy"],
                    snapshots={"params": 4}, flush_seconds=1e9)
    for i in range(rows):
        w.scalar(10 * (i + 1), cost=1.0 / (i + 1), wall_time=0.01 * i)
    w.evaluation(0, test_accuracy=0.1)
    w.evaluation(10 * rows, test_accuracy=0.9)
    w.snapshot(0, params=np.arange(4.0))
    w.snapshot(10 * rows, params=np.arange(4.0) + 1)
    if close:
        w.close({"steps": 10 * rows})
    return w


def test_round_trip(tmp_path):
    path = tmp_path / "t.h5"
    _write(path)
    assert not (tmp_path / "t.h5.partial").exists()
    t = read_trace(path)
    assert t.complete and t.attrs["seed"] == 1 and t.config_yaml == "seed: 1\n"
    np.testing.assert_array_equal(t.scalars["step"], 10 * np.arange(1, 5001))
    np.testing.assert_allclose(t.scalars["cost"], 1.0 / np.arange(1, 5001))
    np.testing.assert_array_equal(t.evals["test_accuracy"], [0.1, 0.9])
    np.testing.assert_array_equal(t.snapshots["params"], [np.arange(4.0), np.arange(4.0) + 1])
    assert t.summary == {"steps": 50000}


def test_layout_is_chunked_compressed_with_a_step_scale(tmp_path):
    path = tmp_path / "t.h5"
    _write(path)
    with h5py.File(path) as f:
        cost = f["scalars/cost"]
        assert cost.compression == "gzip" and cost.maxshape == (None,)
        assert cost.dims[0][0].name == "/scalars/step"
        assert "versions" in f.attrs and "numba" in f.attrs["versions"]


def test_a_killed_run_leaves_every_flushed_row_readable(tmp_path):
    path = tmp_path / "k.h5"
    code = textwrap.dedent(f"""
        import os
        from devsim.trace import TraceWriter
        w = TraceWriter({str(path)!r}, "x: 1\\n", seed=0, scalars=["cost"], evals=[], snapshots={{"params": 1}})
        for i in range(300):
            w.scalar(i, cost=float(i))
        w.flush()
        for i in range(300, 400):
            w.scalar(i, cost=float(i))   # buffered, never flushed
        os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert proc.returncode == 9
    assert not path.exists()
    t = read_trace(tmp_path / "k.h5.partial")
    assert not t.complete
    np.testing.assert_array_equal(t.scalars["cost"], np.arange(300.0))


def test_unknown_column_is_rejected(tmp_path):
    w = _write(tmp_path / "u.h5", rows=1, close=False)
    with pytest.raises(KeyError, match="no column"):
        w.scalar(1, accuracy=1.0)
    w.close()


def test_reader_errors(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(TraceError, match="not a readable HDF5 file"):
        read_trace(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(TraceError, match="not a devsim trace"):
        read_trace(tmp_path / "other.h5")

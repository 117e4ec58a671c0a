"""The trace writer and reader by their files: refused outputs, the attributes a trace
starts and ends with, what abort, discard and an exception leave behind, missing values,
the flush schedule and bound, reopening a partial trace, data records, the room check
(devsim/trace.py)."""
import json

import h5py
import numpy as np
import pytest

from devsim import trace
from devsim.trace import (OutputError, TraceError, TraceWriter, WriteError, check_output,
                          partial_path, read_trace, trace_attrs)


def writer(path, **kw):
    return TraceWriter(path, "a: 1\n", seed=7, scalars=["cost", "norm"], evals=["acc"],
                       snapshots={"params": 3}, **{"flush_seconds": 1e9, **kw})


def test_check_output_refuses_what_it_must(tmp_path):
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path / "dir.h5", overwrite=True)
    done = tmp_path / "done.h5"
    done.write_bytes(b"x")
    with pytest.raises(OutputError, match="a trace is already there"):
        check_output(done)
    check_output(done, overwrite=True)
    cut = tmp_path / "cut.h5"
    partial_path(cut).write_bytes(b"x")
    assert partial_path(cut).name == "cut.h5.partial"
    with pytest.raises(OutputError, match="an interrupted run's trace is there"):
        check_output(cut)
    check_output(cut, overwrite=True)
    check_output(tmp_path / "new" / "deeper" / "t.h5")
    assert (tmp_path / "new" / "deeper").is_dir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OutputError, match=r"cannot write the trace there \(\w[^()]*\)$"):
        check_output(tmp_path / "file" / "t.h5")       # the reason in words, no errno


def test_a_trace_starts_incomplete_and_close_completes_it(tmp_path):
    path = tmp_path / "t.h5"
    w = writer(path)
    w.scalar(10, cost=1.0)                     # norm missing: NaN in its column
    w.scalar(20, cost=0.5, norm=2.0)
    w.evaluation(20, acc=0.25)
    w.snapshot(20, params=[1, 2, 3])
    assert w.row_counts() == {"scalars": 2, "evals": 1, "snapshots": 1}
    w.flush()
    attrs = trace_attrs(w.partial)
    assert attrs["complete"] is False
    assert attrs["stop_reason"] == "" and attrs["seed"] == 7
    assert attrs["devsim_trace_version"] == 1 == trace.TRACE_VERSION   # the file format
    assert set(json.loads(attrs["versions"])) >= {"devsim", "numpy", "numba", "h5py"}
    w.close({"steps": 20})
    assert path.exists() and not w.partial.exists()
    t = read_trace(path)
    assert t.complete and t.attrs["stop_reason"] == "" and t.summary == {"steps": 20}
    np.testing.assert_array_equal(t.scalars["step"], [10, 20])
    np.testing.assert_array_equal(t.scalars["cost"], [1.0, 0.5])
    assert np.isnan(t.scalars["norm"][0]) and t.scalars["norm"][1] == 2.0
    assert t.scalars["step"].dtype == np.int64 and t.scalars["cost"].dtype == np.float64
    np.testing.assert_array_equal(t.snapshots["params"], [[1.0, 2.0, 3.0]])
    assert t.config_yaml == "a: 1\n"


def test_a_stop_reason_ends_incomplete_under_the_final_name(tmp_path):
    path = tmp_path / "t.h5"
    w = writer(path)
    w.scalar(1, cost=1.0)
    w.close(stop_reason="diverged")
    t = read_trace(path)
    assert not t.complete and t.attrs["stop_reason"] == "diverged" and t.summary == {}


def test_abort_keeps_the_partial_trace_with_every_row_and_the_reason(tmp_path):
    w = writer(tmp_path / "t.h5")
    w.scalar(1, cost=1.0)
    w.abort("interrupted")
    assert not (tmp_path / "t.h5").exists()
    t = read_trace(w.partial)
    assert not t.complete and t.attrs["stop_reason"] == "interrupted"
    np.testing.assert_array_equal(t.scalars["cost"], [1.0])


def test_an_exception_in_the_with_block_flushes_and_keeps_the_partial_trace(tmp_path):
    with pytest.raises(RuntimeError):
        with writer(tmp_path / "t.h5") as w:
            w.scalar(1, cost=3.0)
            raise RuntimeError("stop")
    np.testing.assert_array_equal(read_trace(w.partial).scalars["cost"], [3.0])
    with writer(tmp_path / "c.h5") as w:      # a clean exit after close: nothing more
        w.close()
    assert read_trace(tmp_path / "c.h5").complete


def test_discard_removes_the_partial_trace(tmp_path):
    w = writer(tmp_path / "t.h5")
    w.discard()
    assert not w.partial.exists() and not (tmp_path / "t.h5").exists()
    w.discard()                                # twice is fine


def test_flushes_follow_the_schedule(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(trace.time, "monotonic", lambda: clock[0])
    w = writer(tmp_path / "t.h5", flush_seconds=5.0)
    w.scalar(1, cost=1.0)
    assert w.scalars.rows and w.scalars.last_step is None      # buffered
    clock[0] = 104.9
    w.scalar(2, cost=1.0)
    assert len(w.scalars.rows) == 2
    clock[0] = 105.0                                           # 5 s since the last flush
    w.evaluation(2, acc=0.5)
    assert not w.scalars.rows and w.scalars.last_step == 2 and not w.evals.rows
    clock[0] = 109.0
    w.snapshot(3, params=np.zeros(3))
    assert w.snapshots.rows
    clock[0] = 110.0
    w.snapshot(4, params=np.ones(3))
    assert not w.snapshots.rows
    w.close()


def test_flush_bound_counts_the_rows_and_a_chunk_per_column(tmp_path):
    w = writer(tmp_path / "t.h5")
    assert w.scalars.flush_bound() == 0
    for i in range(10):
        w.scalar(i, cost=1.0)
    chunk = trace._CHUNK
    assert w.scalars.flush_bound() == 3 * 8 * (10 + chunk)     # step, cost, norm
    w.snapshot(0, params=np.zeros(3))
    rows = w.snapshots.group["params"].chunks[0]
    assert w.snapshots.flush_bound() == 8 * (1 + chunk) + 3 * 8 * (1 + rows)
    w.close()


def test_a_flush_needs_room_for_its_bound_and_the_metadata(tmp_path, monkeypatch):
    w = writer(tmp_path / "t.h5")
    w.scalar(1, cost=1.0)
    need = w.scalars.flush_bound() + trace._METADATA_ROOM
    monkeypatch.setattr(trace, "_room", lambda path: need)
    w.flush()                                                  # exactly enough
    w.scalar(2, cost=1.0)
    monkeypatch.setattr(trace, "_room", lambda path: w.scalars.flush_bound()
                        + trace._METADATA_ROOM - 1)
    with pytest.raises(WriteError, match="every row up to step 1 "):
        w.flush()
    w.abort()                                  # after a failed write: closes, no flush
    np.testing.assert_array_equal(read_trace(w.partial).scalars["step"], [1])


def test_room_is_the_free_space_or_the_file_size_limit(tmp_path, monkeypatch):
    import resource
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    free = trace.shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(resource, "getrlimit", lambda what: (resource.RLIM_INFINITY, -1))
    assert abs(trace._room(path) - free) < 10 ** 7
    monkeypatch.setattr(resource, "getrlimit", lambda what: (5000, -1))
    assert trace._room(path) == 4000


def test_reopen_cuts_each_group_back_to_its_checkpointed_rows(tmp_path):
    w = writer(tmp_path / "t.h5")
    for i in range(6):
        w.scalar(10 * i, cost=float(i))
    w.evaluation(0, acc=0.1)
    w.evaluation(50, acc=0.2)
    w.abort("stopped")
    again = TraceWriter.reopen(tmp_path / "t.h5", {"scalars": 4, "evals": 1, "snapshots": 0})
    assert again.row_counts() == {"scalars": 4, "evals": 1, "snapshots": 0}
    assert again.scalars.last_step == 30 and again.snapshots.last_step is None
    again.scalar(40, cost=9.0)
    again.close()
    t = read_trace(tmp_path / "t.h5")
    np.testing.assert_array_equal(t.scalars["cost"], [0.0, 1.0, 2.0, 3.0, 9.0])
    np.testing.assert_array_equal(t.evals["acc"], [0.1])
    assert t.complete and t.attrs["stop_reason"] == ""


def test_data_records_round_trip(tmp_path):
    w = writer(tmp_path / "t.h5")
    w.record_data("standard", feature_offset=[1.0, 2.0], feature_scale=np.array([3, 4]))
    w.close()
    t = read_trace(tmp_path / "t.h5")
    assert t.data["method"] == "standard"
    np.testing.assert_array_equal(t.data["feature_offset"], [1.0, 2.0])
    assert t.data["feature_scale"].dtype == np.float64
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["scalars/cost"].dims[0][0].name == "/scalars/step"


def test_reading_a_file_without_devsim_attributes_is_a_trace_error(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs["seed"] = 1
    with pytest.raises(TraceError, match="not a devsim trace"):
        read_trace(tmp_path / "x.h5")
    with pytest.raises(TraceError, match="no such file"):
        trace_attrs(tmp_path / "none.h5")


def test_the_writer_makes_missing_folders(tmp_path):
    w = writer(tmp_path / "a" / "b" / "t.h5")
    w.close()
    assert read_trace(tmp_path / "a" / "b" / "t.h5").complete


def test_a_writer_that_cannot_start_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):          # a snapshot array of no width
        TraceWriter(tmp_path / "t.h5", "", seed=0, scalars=["cost"], evals=[],
                    snapshots={"params": 0})
    assert not (tmp_path / "t.h5.partial").exists() and not (tmp_path / "t.h5").exists()


def test_a_reopened_trace_flushes_when_aborted(tmp_path):
    w = writer(tmp_path / "t.h5")
    w.scalar(1, cost=1.0)
    w.abort()
    again = TraceWriter.reopen(tmp_path / "t.h5", {"scalars": 1, "evals": 0, "snapshots": 0})
    again.scalar(2, cost=2.0)
    again.abort("stopped again")
    t = read_trace(again.partial)
    np.testing.assert_array_equal(t.scalars["cost"], [1.0, 2.0])
    assert t.attrs["stop_reason"] == "stopped again"


def test_a_failed_write_is_a_write_error_and_abort_then_only_closes(tmp_path, monkeypatch):
    w = writer(tmp_path / "t.h5")
    w.scalar(1, cost=1.0)
    w.flush()
    w.scalar(2, cost=2.0)

    def broken():
        raise OSError("Can't write data (file system full)\nmore detail")
    monkeypatch.setattr(w.scalars, "flush", broken)
    with pytest.raises(WriteError, match=r"writing the trace failed \(Can't write data "
                                         r"\(file system full\)\); rows after every row up "
                                         r"to step 1 \(its last flush\) may be lost$"):
        w.flush()
    w.abort("interrupted")                     # no second attempt to write
    t = read_trace(w.partial)
    np.testing.assert_array_equal(t.scalars["cost"], [1.0])
    assert t.attrs["stop_reason"] == ""

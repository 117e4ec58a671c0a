"""Runs that stop early keep what they wrote: non-finite windows skipped and counted,
divergence stopping with exit 3, SIGINT/SIGTERM flushing and checkpointing (exact
resume), a second signal exiting at once, a full disk leaving the last flush."""
import math
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from devsim.cli import main
from devsim.runner import build, load_config
from devsim.trace import TraceWriter, WriteError, read_trace

ROOT = Path(__file__).parents[1]
QUICK = ROOT / "configs/quickstart.yaml"
SMALL = ["train.steps=30000", "train.eval_every=10000", "trace.log_every=2000",
         "network.layers[0].units=8"]


def _args(config, out, sets, extra=()):
    args = ["run", str(config), "--out", str(out), "-q", *extra]
    for s in sets:
        args += ["--set", s]
    return args


def _same_trace(a, b):
    for group in ("scalars", "evals", "snapshots"):
        assert set(getattr(a, group)) == set(getattr(b, group)), group
        for key, values in getattr(a, group).items():
            if key != "wall_time":
                np.testing.assert_array_equal(values, getattr(b, group)[key], err_msg=key)


# ------------------------------------------------------------------ the loop's policy
def _nan_costs(hardware):
    """Make every cost the hardware reports NaN until the attribute is deleted."""
    real = type(hardware).run

    def run(*args, **kwargs):
        result = real(hardware, *args, **kwargs)
        result.costs[:] = np.nan
        return result

    hardware.run = run


@pytest.mark.parametrize("integrator", ["window", "lowpass"])
def test_a_window_with_nan_costs_writes_nothing_and_keeps_the_optimizer_state(integrator):
    built = build(load_config(QUICK, SMALL + ["train.optimizer.type=momentum",
                                              f"train.estimator.integrator={integrator}",
                                              "train.executor=plain"]))
    loop, hw, bench = built.loop, built.hardware, built.bench
    loop.update()
    params, velocity = bench.read_params(), loop.opt_state.velocity.copy()
    integral = loop.estimator._integral.copy()
    _nan_costs(hw)
    stats = loop.update()
    assert stats.skipped and math.isnan(stats.cost) and math.isnan(stats.estimate_norm)
    np.testing.assert_array_equal(bench.read_params(), params)
    np.testing.assert_array_equal(loop.opt_state.velocity, velocity)
    np.testing.assert_array_equal(loop.estimator._integral, integral)
    del hw.run
    after = loop.update()
    assert not after.skipped and math.isfinite(after.update_norm)
    assert not np.array_equal(bench.read_params(), params)


def test_a_step_that_overflows_is_not_written():
    built = build(load_config(QUICK, SMALL + ["train.optimizer.lr=1e308"]))
    params = built.bench.read_params()
    with np.errstate(over="ignore"):
        stats = built.loop.update()
    assert stats.skipped and math.isfinite(stats.cost) and math.isfinite(stats.estimate_norm)
    np.testing.assert_array_equal(built.bench.read_params(), params)


# ------------------------------------------------------------------ divergence
BLOW_UP = ["train.steps=20000", "trace.log_every=1000", "train.eval_every=5000",
           "train.estimator={type: backprop}", "train.optimizer.lr=20"]
"""Exact gradient descent on the linear teacher with a learning rate ten times past
stability: the parameters grow about 20-fold a window until costs overflow."""


@pytest.mark.parametrize("tolerance", [0, 10])
def test_a_learning_rate_that_blows_up_stops_the_run(tolerance, tmp_path, capsys):
    out = tmp_path / "t.h5"
    code = main(_args(ROOT / "configs/teacher.yaml", out,
                      BLOW_UP + [f"train.divergence.max_nonfinite={tolerance}"]))
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{tolerance + 1} update windows had a non-finite cost or estimate" in err
    assert f"max_nonfinite is {tolerance}" in err and str(out) in err
    t = read_trace(out)
    assert not t.complete and t.attrs["stop_reason"].startswith("diverged at step ")
    assert t.summary["stop_reason"] == t.attrs["stop_reason"]
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.ckpt").exists()
    s = t.scalars
    assert s["skipped_updates"].sum() == tolerance + 1 and s["skipped_updates"][-1] > 0
    stop = int(s["step"][-1])
    assert f"diverged at step {stop:,}" in err and stop < 20000
    # every row before the stop, on schedule, then the stopping row
    np.testing.assert_array_equal(s["step"][:-1], np.arange(1, len(s["step"])) * 1000)
    assert np.all(s["nonfinite_costs"] <= s["skipped_updates"])
    assert np.all(np.isfinite(s["cost"][:-1]))
    assert t.snapshots["step"][-1] == stop
    assert np.all(np.diff(np.log10(s["cost"][:3])) > 5)  # it did blow up


def test_a_healthy_run_counts_no_nonfinite_windows(tmp_path):
    out = tmp_path / "h.h5"
    assert main(_args(QUICK, out, SMALL)) == 0
    s = read_trace(out).scalars
    for column in ("skipped_updates", "nonfinite_costs", "nonfinite_params"):
        np.testing.assert_array_equal(s[column], 0)


# ------------------------------------------------------------------ signals
KILLER = textwrap.dedent("""
    import os, signal, sys
    from trainer.loop import TrainingLoop
    real, fired = TrainingLoop.advance, []

    def advance(self, until):
        if not fired and self.chip.steps >= {step}:
            fired.append(True)
            for _ in range({times}):
                os.kill(os.getpid(), signal.{signal})
        return real(self, until)

    TrainingLoop.advance = advance
    from devsim.cli import main
    sys.exit(main({args!r}))
""")


def _signalled(args, step, sig, times=1):
    """Run ``devsim`` in a subprocess that sends itself ``sig`` (``times`` times) as the
    first update windows from hardware step ``step`` on start (the windows up to the
    runner's next row, evaluation or checkpoint run in one call)."""
    code = KILLER.format(step=step, times=times, signal=sig, args=args)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


CONFIGS = {
    "ideal": (QUICK, SMALL),
    "crossbar": (QUICK, SMALL + ["network.device.preset=crossbar_reram",
                                 "train.estimator.epsilon=1.0"]),
    "mtj": (ROOT / "configs/mtj_pbit_mgd.yaml", SMALL),
}
RESUMABLE = ["trace.checkpoint_every=8000", "trace.snapshot_every=6000", "trace.flush_seconds=0.01"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_signalled_run_resumes_to_the_same_trace(name, sig, tmp_path, capsys):
    """SIGTERM (graceful: flush, checkpoint at the stop) and SIGKILL (the last periodic
    checkpoint) both resume to the uninterrupted run's trace, on ideal, crossbar and
    MTJ hardware. The signal arrives as the windows from step 12,000 start, so SIGTERM
    stops the run after them: at the next row (14,000) where the compiled executor runs
    the windows up to it in one call (ideal, and the MTJ p-bits), after one window of
    200 steps (crossbar) where the plain loop runs them."""
    config, sets = CONFIGS[name]
    sets = sets + RESUMABLE
    assert main(_args(config, tmp_path / "whole.h5", sets)) == 0
    out = tmp_path / "cut.h5"
    proc = _signalled(_args(config, out, sets), step=12000, sig=sig)
    partial = read_trace(f"{out}.partial")
    if sig == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "interrupted by SIGTERM at step" in proc.stderr and "--resume" in proc.stderr
        assert partial.attrs["stop_reason"] == "interrupted by SIGTERM"
        stop = int(re.search(r"at step ([\d,]+);", proc.stderr).group(1).replace(",", ""))
        assert stop == {"ideal": 14000, "crossbar": 12200, "mtj": 14000}[name]
        assert partial.scalars["step"][-1] == stop - stop % 2000  # every row, flushed
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and Path(f"{out}.ckpt").exists()
    capsys.readouterr()
    assert main(_args(config, out, sets, extra=["--resume"])) == 0
    resumed = read_trace(out)
    assert resumed.complete and resumed.attrs["stop_reason"] == "" and resumed.summary["resumed"]
    _same_trace(read_trace(tmp_path / "whole.h5"), resumed)


def test_sigterm_without_checkpoints_keeps_the_partial_trace_and_says_so(tmp_path):
    out = tmp_path / "t.h5"
    proc = _signalled(_args(QUICK, out, SMALL), step=17000, sig="SIGTERM")
    assert proc.returncode == 143 and "set trace.checkpoint_every" in proc.stderr
    t = read_trace(f"{out}.partial")  # window 100 ends at step 20,000
    np.testing.assert_array_equal(t.scalars["step"], np.arange(2000, 20001, 2000))
    np.testing.assert_array_equal(t.evals["step"], [0, 10000, 20000])
    assert not Path(f"{out}.ckpt").exists()


def test_a_second_signal_exits_at_once(tmp_path):
    out = tmp_path / "t.h5"
    proc = _signalled(_args(QUICK, out, SMALL + RESUMABLE), step=17000, sig="SIGINT", times=2)
    assert proc.returncode == 128 + signal.SIGINT
    assert proc.stderr == ("devsim: second SIGINT: exiting at once; the partial trace keeps "
                           "every flushed row\n")
    t = read_trace(f"{out}.partial")  # no graceful stop: no row of the last window
    assert t.attrs["stop_reason"] == "" and 0 < t.scalars["step"][-1] < 20000


# ------------------------------------------------------------------ a full disk
FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
    from devsim.cli import main
    sys.exit(main({args!r}))
""")


def test_a_full_disk_keeps_the_trace_up_to_its_last_flush(tmp_path):
    """A file-size limit stands in for a full disk: the trace grows by a snapshot of
    every 1,000 steps, flushed at once, until the next flush would not fit."""
    out = tmp_path / "t.h5"
    sets = SMALL + ["train.steps=200000", "trace.log_every=1000", "trace.snapshot_every=1000",
                    "trace.flush_seconds=0.000001", "network.layers[0].units=32"]
    code = FULL_DISK.format(limit=1_500_000, args=_args(QUICK, out, sets))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{out}.partial: no room to write the trace" in proc.stderr
    t = read_trace(f"{out}.partial")
    last = int(t.scalars["step"][-1])
    assert f"it keeps every row up to step {last:,} (its last flush)" in proc.stderr
    np.testing.assert_array_equal(t.scalars["step"], np.arange(1000, last + 1, 1000))
    snapshots = t.snapshots["step"]  # the one that did not fit may be the last row's
    assert snapshots[-1] in (last, last - 1000)
    np.testing.assert_array_equal(snapshots, np.arange(0, snapshots[-1] + 1, 1000))
    assert np.all(np.isfinite(t.snapshots["params"])) and 2000 <= last < 200000


def test_a_flush_that_does_not_fit_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    w = TraceWriter(path, "x: 1\n", seed=0, scalars=["cost"], evals=[], snapshots={"params": 3},
                    flush_seconds=1e9)
    for i in range(100):
        w.scalar(i, cost=float(i))
    w.flush()
    size = w.partial.stat().st_size
    monkeypatch.setattr("devsim.trace._room", lambda path: 300_000)
    for i in range(100, 200):
        w.scalar(i, cost=float(i))
    with pytest.raises(WriteError, match="no room to write the trace .* every row up to step 99"):
        w.flush()
    w.abort()
    assert w.partial.stat().st_size == size
    np.testing.assert_array_equal(read_trace(w.partial).scalars["cost"], np.arange(100.0))


def test_the_stop_exceptions_cross_process_boundaries():
    """Worker processes (devsim tune) hand them back pickled."""
    import pickle

    from devsim.stopping import Diverged, Interrupted
    d = pickle.loads(pickle.dumps(Diverged("diverged at step 5", {"steps": 5})))
    assert str(d) == d.message == "diverged at step 5" and d.summary == {"steps": 5}
    i = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM, "interrupted")))
    assert i.signum == signal.SIGTERM and str(i) == "interrupted"

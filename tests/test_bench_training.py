"""The training benchmark's quick path (bench/bench_training.py): every row gets finite
positive rates, and each NumPy baseline it checks reproduces devsim's first-window
estimate from the same draws (MGD's codes regenerated from devsim's key, NP's noise and
QZO's signs from its streams, backprop exact)."""
import math

from bench import bench_training


def test_quick_table_rows_and_numpy_estimates(capsys):
    rows = bench_training.main(["--quick", "--repeat", "1"])
    assert [r.case for r in rows] == bench_training.cases(quick=True)
    for r in rows:
        for value in (r.devsim, r.numpy, r.flops):
            assert math.isfinite(value) and value > 0, r.case.label
        assert r.finite, r.case.label
    checked = {r.case.method: r for r in rows if r.estimate_error is not None}
    assert set(checked) == {"MGD nodes", "NP", "QZO", "backprop"}
    for r in checked.values():
        assert r.estimate_error < 1e-9, (r.case.label, r.estimate_error)
        start, devsim, numpy = r.costs
        assert devsim < start and numpy < start, r.case.label
    assert checked["MGD nodes"].per_step > 0
    assert "| 64-32-10 | MGD nodes | ideal | sgd |" in capsys.readouterr().out

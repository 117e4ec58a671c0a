"""The trainer's small compiled reductions against NumPy and values by hand: the norm,
the mean and the row sums of squares, each summed in order (trainer/kernels.py)."""
import numpy as np

from trainer.kernels import mean, norm, row_squares


def test_reductions_by_hand():
    v = np.array([3.0, -4.0, 12.0])
    assert norm(v) == 13.0
    assert mean(v) == 11.0 / 3.0
    out = np.full(2, np.nan)
    row_squares(np.array([[1.0, -2.0], [0.5, 0.0]]), out)
    assert out.tolist() == [5.0, 0.25]


def test_reductions_equal_ordered_sums():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 33))
    out = np.empty(7)
    row_squares(a, out)
    for t, row in enumerate(a):
        total = 0.0
        for value in row:
            total += value * value
        assert out[t] == total
        assert norm(row) == np.sqrt(total)
    flat = a.ravel()
    assert mean(flat) == sum(flat.tolist()) / flat.size   # Python's sum is in order too

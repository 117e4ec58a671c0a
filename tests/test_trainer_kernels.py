"""The trainer's small compiled reductions against NumPy and values by hand: the norm,
the mean, the row sums of squares and the weighted sum of rows, each summed in order
(trainer/kernels.py)."""
import numpy as np

from trainer.kernels import mean, norm, row_squares, weighted_rows


def test_reductions_by_hand():
    v = np.array([3.0, -4.0, 12.0])
    assert norm(v) == 13.0
    assert mean(v) == 11.0 / 3.0
    out = np.full(2, np.nan)
    row_squares(np.array([[1.0, -2.0], [0.5, 0.0]]), out)
    assert out.tolist() == [5.0, 0.25]
    weighted_rows(np.array([[1.0, -2.0], [0.5, 0.0], [4.0, 1.0]]), np.array([2.0, 4.0, -1.0]),
                  out)
    assert out.tolist() == [0.0, -5.0]


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
    weights = rng.normal(size=7)
    out = np.full(33, np.nan)
    weighted_rows(a, weights, out)
    for k in range(33):
        total = 0.0
        for t in range(7):
            total += weights[t] * a[t, k]
        assert out[k] == total
    np.testing.assert_allclose(out, weights @ a, rtol=1e-12, atol=1e-15)

"""The counter-based generator: kernels equal their NumPy twins, and the draws have
the right statistics."""
import numpy as np
from numba import njit

from devsim import crng


@njit
def _draw(key, n):
    u, g, s = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        u[i], g[i], s[i] = crng.uniform(key, i), crng.normal(key, i), crng.sign(key, i)
    return u, g, s


N = 200_000


def test_kernels_equal_numpy_twins():
    key = crng.stream_key(42, 7)
    assert key == crng.stream_key_np(42, 7)
    u, g, s = _draw(key, N)
    idx = np.arange(N)
    assert np.array_equal(u, crng.uniform_np(key, idx))
    assert np.array_equal(s, crng.sign_np(key, idx))
    np.testing.assert_allclose(g, crng.normal_np(key, idx), rtol=0, atol=1e-12)


def test_moments_within_sampling_error():
    u, g, s = _draw(crng.stream_key(1, 0), N)
    se = 1 / np.sqrt(N)  # standard error of a mean of unit-variance draws
    assert abs(u.mean() - 0.5) < 5 * se * np.sqrt(1 / 12)
    assert abs(u.var() - 1 / 12) < 5 * se * np.sqrt(1 / 180)  # var of (u-1/2)^2 is 1/180
    assert abs(g.mean()) < 5 * se
    assert abs(g.var() - 1) < 5 * se * np.sqrt(2)
    assert abs(s.mean()) < 5 * se
    # neighbouring draws are uncorrelated
    assert abs(np.corrcoef(g[:-1], g[1:])[0, 1]) < 5 * se


def test_streams_and_seeds_differ():
    a = crng.uniform_np(crng.stream_key_np(1, 0), np.arange(1000))
    b = crng.uniform_np(crng.stream_key_np(1, 1), np.arange(1000))
    c = crng.uniform_np(crng.stream_key_np(2, 0), np.arange(1000))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)

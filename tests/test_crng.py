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


def test_bulk_float32_normals_equal_twin_and_single_draws():
    key = np.uint64(crng.stream_key(3, 1))  # (a Python int may not fit an int64)
    for first in (0, 1, 7, 10 ** 12 + 1):
        for n in (0, 1, 2, 5, 256, 257):
            out = np.empty(n, np.float32)
            crng.normals32(key, np.uint64(first), out)
            idx = np.arange(n, dtype=np.uint64) + np.uint64(first)
            twin = crng.normal32_np(key, idx)
            assert twin.dtype == np.float32
            assert np.array_equal(out, twin)
            assert all(out[j] == crng.normal32(key, idx[j]) for j in range(min(n, 3)))


def test_bulk_float32_normals_are_standard_normal():
    from math import erfc, sqrt
    n = 2_000_000
    z32 = np.empty(n, np.float32)
    crng.normals32(np.uint64(crng.stream_key(11, 2)), np.uint64(0), z32)
    z = z32.astype(np.float64)
    # standard errors of the mean, variance and fourth moment of n standard normals
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(z ** 4) - 3) < 5 * np.sqrt(96 / n)
    for cut in (0.5, 1.0, 2.0, 3.0, 4.0):
        p = erfc(cut / sqrt(2))  # P(|z| > cut); binomial SE sqrt(p (1 - p) / n)
        assert abs(np.mean(np.abs(z) > cut) - p) < 5 * np.sqrt(p * (1 - p) / n)
    # the empirical CDF against the normal CDF: Kolmogorov-Smirnov at the 1e-4 level
    grid = np.linspace(-4, 4, 801)
    cdf = np.array([0.5 * erfc(-g / sqrt(2)) for g in grid])
    ecdf = np.searchsorted(np.sort(z), grid) / n
    assert np.max(np.abs(ecdf - cdf)) < 2.0 / np.sqrt(n)  # K-S critical value ~1.95/sqrt(n)
    # the two halves of a pair are independent (Box-Muller's radius is shared)
    z0, z1 = z[0::2], z[1::2]
    m = z0.size
    assert abs(np.corrcoef(z0, z1)[0, 1]) < 5 / np.sqrt(m)
    assert abs(np.corrcoef(z0 ** 2, z1 ** 2)[0, 1]) < 5 / np.sqrt(m)
    assert np.abs(z).max() < 6.67  # u1 >= 2^-32 bounds the radius


def test_sign_bits_are_the_next_64_signs_at_any_offset():
    """Bit b of sign_bits(first) is set exactly where sign(first + b) is -1, aligned or not."""
    key = np.uint64(0xC0FFEE)
    for first in (0, 1, 63, 64, 65, 127, 12_345_678_901):
        word = int(crng.sign_bits(key, first))
        set_bits = np.array([(word >> b) & 1 for b in range(64)])
        signs = crng.sign_np(key, np.arange(first, first + 64))
        np.testing.assert_array_equal(set_bits, (signs < 0).astype(int))


def test_fill_signs_equals_counter_stream_at_any_offset():
    """Whole-word and bit-by-bit parts of fill_signs give crng.sign_np's signs exactly."""
    key = np.uint64(0xC0FFEE)
    for first, n in [(0, 0), (0, 64), (5, 3), (60, 10), (63, 130), (128 * 7 + 1, 2410)]:
        out = np.full(n, np.nan)
        crng.fill_signs(key, first, out)
        np.testing.assert_array_equal(out, crng.sign_np(key, np.arange(first, first + n)))

"""The counter-based generator against second implementations: SplitMix64 in Python
integers for keys, bits, uniforms and signs; Box-Muller in float64 from the same bits for
both normal generators; the float32 polynomials against the library functions they
approximate; the ziggurat's layers against their defining equal areas (devsim/crng.py).
The twins share these helpers with the kernels, so twin equality cannot see them."""
import math

import numpy as np
from numba import njit

from devsim import crng

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    """SplitMix64's finaliser in Python integers."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def key_of(seed, stream):
    return mix(mix(seed) ^ ((stream * GOLDEN + GOLDEN) & MASK))


def bits_of(key, counter):
    return mix((key + (counter + 1) * GOLDEN) & MASK)


@njit
def _kernel_draws(key, counters):
    n = counters.size
    b, u, g, s = np.empty(n, np.uint64), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        c = counters[i]
        b[i], u[i] = crng.bits(key, c), crng.uniform(key, c)
        g[i], s[i] = crng.normal(key, c), crng.sign(key, c)
    return b, u, g, s


def test_splitmix64_known_value_and_streams():
    assert mix(GOLDEN) == 0xE220A8397B1DCDAF          # SplitMix64's first output, seed 0
    assert int(crng.mix64(np.uint64(GOLDEN))) == 0xE220A8397B1DCDAF
    for seed, stream in ((0, 0), (42, 7), (2 ** 62 + 5, 3), (1, 2 ** 32 + 1)):
        assert int(crng.stream_key(seed, stream)) == key_of(seed, stream)
        assert int(crng.stream_key_np(seed, stream)) == key_of(seed, stream)


def test_bits_uniforms_signs_and_normals_by_a_second_implementation():
    key = key_of(9, 4)
    counters = np.array([0, 1, 2, 63, 64, 65, 1000, 2 ** 40 + 3], dtype=np.uint64)
    b, u, g, s = _kernel_draws(np.uint64(key), counters)
    for i, c in enumerate(int(c) for c in counters):
        word = bits_of(key, c)
        assert int(b[i]) == word == int(crng.bits_np(key, np.uint64(c)))
        assert u[i] == (word >> 11) * 2.0 ** -53 == crng.uniform_np(key, np.uint64(c))
        assert s[i] == 1.0 - 2.0 * ((bits_of(key, c >> 6) >> (c & 63)) & 1)
        u1 = 1.0 - (bits_of(key, 2 * c) >> 11) * 2.0 ** -53
        u2 = (bits_of(key, 2 * c + 1) >> 11) * 2.0 ** -53
        want = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        assert abs(g[i] - want) <= 1e-12 and abs(crng.normal_np(key, c) - want) <= 1e-12
    np.testing.assert_array_equal(crng.sign_np(key, counters), s)


def test_float32_normals_are_box_muller_of_their_bits():
    # Draw 2q + h uses word q = bits(key, q): u1 = float32(low | 1) 2^-32 (the float32
    # rounding included), angle = high 2 pi / 2^32; z = r cos angle (h = 0) or
    # r sin angle (h = 1), r = sqrt(-2 ln u1). float32 arithmetic and the polynomial
    # fits leave about 1e-6 relative.
    key = key_of(5, 2)
    idx = np.arange(0, 4000, dtype=np.uint64)
    idx[-8:] = [2 ** 33, 2 ** 33 + 1, 2 ** 50 + 6, 2 ** 50 + 7, 11, 12, 13, 14]
    want = np.empty(idx.size)
    for j, i in enumerate(int(i) for i in idx):
        word = bits_of(key, i >> 1)
        u1 = float(np.float32(word & 0xFFFFFFFF | 1)) * 2.0 ** -32
        angle = (word >> 32) * 2.0 * math.pi / 2.0 ** 32
        r = math.sqrt(-2.0 * math.log(u1))
        want[j] = r * (math.sin(angle) if i & 1 else math.cos(angle))
    got = crng.normal32_np(key, idx).astype(np.float64)
    assert np.all(np.abs(got - want) <= 2e-6 * (1 + np.abs(want)))
    bulk = np.empty(idx.size, np.float32)
    crng.normals32(np.uint64(key), np.uint64(0), bulk[:3992])
    np.testing.assert_array_equal(bulk[:3992], got[:3992].astype(np.float32))


def test_float32_polynomials_meet_their_error_bounds():
    p = np.linspace(0.0, np.pi / 4, 20001).astype(np.float32)
    sin_p, cos_p = crng._sin_cos(p)
    p64 = p.astype(np.float64)
    assert np.abs(sin_p - np.sin(p64)).max() < 2e-7
    assert np.abs(cos_p - np.cos(p64)).max() < 2e-7
    m = np.linspace(np.sqrt(0.5), np.sqrt(2.0), 20001).astype(np.float32)
    for e in (-32.0, -7.0, -1.0, 0.0):
        inside = m[2.0 ** e * m.astype(np.float64) <= 1.0]        # u1 = 2^e m in (0, 1]
        r = crng._radius(np.float32(e), inside).astype(np.float64)
        want = np.sqrt(-2.0 * np.log(2.0 ** e * inside.astype(np.float64)))
        np.testing.assert_allclose(r, want, rtol=2e-6, atol=2e-6)


def test_ziggurat_layers_have_equal_areas():
    # ZIGNOR: each of the 255 rectangles below the density's top, and the base strip
    # (r f(r) plus the tail beyond r), has area v.
    x, ratio, f = crng._ZIG_X, crng._ZIG_RATIO, crng._ZIG_F
    r, v = 3.6541528853610088, 4.92867323399e-3
    assert x[1] == r and x[256] == 0.0 and np.all(np.diff(x[1:]) < 0)
    tail = math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    assert abs(r * math.exp(-r * r / 2) + tail - v) < 1e-11
    assert abs(x[0] * math.exp(-r * r / 2) - v) < 1e-15
    areas = x[1:256] * (np.exp(-x[2:257] ** 2 / 2) - np.exp(-x[1:256] ** 2 / 2))
    np.testing.assert_allclose(areas[:-1], v, rtol=1e-9)
    np.testing.assert_allclose(f, np.exp(-x ** 2 / 2), rtol=1e-15)
    np.testing.assert_allclose(ratio, x[1:] / x[:-1], rtol=1e-15)

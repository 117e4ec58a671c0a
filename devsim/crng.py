"""Counter-based random numbers: draw i of stream s under seed k is a pure function of (k, s, i).

Numba's in-kernel generator is not reproducible across threads, and drawing every
noise sample in NumPy first costs memory bandwidth. Kernels instead hash a 64-bit
key (derived from the run seed and a stream number) together with the draw's index,
with the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014), so any thread can
produce any draw and results do not depend on how work is split. Besides single
draws (uniform, float64 normal, sign), :func:`normals32` fills whole rows of float32
normals in a loop LLVM vectorises, for noise drawn once per output of every read.

Each jitted function has a vectorised NumPy twin (``*_np``) used as the test
reference and for code outside kernels.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0 ** -53


@njit(cache=True)
def mix64(z):
    """SplitMix64 finaliser: a bijective avalanche hash of a uint64."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def stream_key(seed, stream):
    """The 64-bit key of stream ``stream`` under run seed ``seed``."""
    return mix64(mix64(np.uint64(seed)) ^ (np.uint64(stream) * _GOLDEN + _GOLDEN))


@njit(cache=True)
def bits(key, counter):
    """64 random bits: draw ``counter`` of the stream with this key."""
    return mix64(np.uint64(key) + (np.uint64(counter) + np.uint64(1)) * _GOLDEN)


@njit(cache=True)
def uniform(key, counter):
    """A float64 in [0, 1) with 53 random bits."""
    return float(bits(key, counter) >> _S11) * _TO_UNIT


@njit(cache=True)
def normal(key, counter):
    """A standard normal draw (Box-Muller on draws 2c and 2c+1)."""
    c = np.uint64(counter) * np.uint64(2)
    u1 = 1.0 - uniform(key, c)  # in (0, 1]: log is finite
    u2 = uniform(key, c + np.uint64(1))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def sign(key, index):
    """A Rademacher draw (+1.0 or -1.0); 64 consecutive indices share one hash."""
    word = bits(key, np.uint64(index) >> np.uint64(6))
    return 1.0 - 2.0 * float((word >> (np.uint64(index) & np.uint64(63))) & np.uint64(1))


@njit(cache=True)
def sign_bits(key, first):
    """The signs of indices first .. first+63 as one word: bit b is set where
    ``sign(key, first + b)`` is -1 (two hashes where ``first`` is not a multiple of 64),
    so loops over many signs take one hash call per 64."""
    word = np.uint64(first) >> np.uint64(6)
    shift = np.uint64(first) & np.uint64(63)
    low = bits(key, word)
    if shift == 0:
        return low
    return (low >> shift) | (bits(key, word + np.uint64(1)) << (np.uint64(64) - shift))


@njit(cache=True)
def fill_signs(key, first, out):
    """out[k] = sign(key, first + k) for a float64 ``out``: the signs in bulk (64 per hash).

    Whole words go through a fixed 64-step loop of selects, which LLVM vectorises (3x
    the speed of extracting each bit on its own); partial words at either end bit by bit.
    """
    n = out.shape[0]
    k = 0
    while k < n and (first + k) & 63:
        out[k] = sign(key, first + k)
        k += 1
    while k + 64 <= n:
        word = bits(key, np.uint64((first + k) >> 6))
        block = out[k:k + 64]
        for b in range(64):
            block[b] = -1.0 if (word >> np.uint64(b)) & np.uint64(1) else 1.0
        k += 64
    while k < n:
        out[k] = sign(key, first + k)
        k += 1


# ---------------------------------------------------------------- float32 normals in bulk
# Box-Muller on one 64-bit word per pair of draws, in float32 arithmetic with polynomial
# log, sin and cos (fitted on Chebyshev nodes, errors below 7e-8 absolute) and selects
# instead of branches, so that loops over many draws vectorise (about 1 ns a draw against
# 2 ns for a ziggurat, whose rare rejections and table lookups do not vectorise).
_F = np.float32
_U32 = _F(2.0 ** -32)                    # low word half -> u1 in (0, 1]
_PSI = _F(0.5 * np.pi * 2.0 ** -30)      # 30-bit angle fraction -> radians in [0, pi/2)
_LN2, _SQRT2 = _F(np.log(2.0)), _F(np.sqrt(2.0))
_ONE, _TWO, _HALF, _MTWO = _F(1.0), _F(2.0), _F(0.5), _F(-2.0)
# ln m = s (2 + s^2 P(s^2)), s = (m - 1) / (m + 1), m in [sqrt(1/2), sqrt(2))
_L1, _L2, _L3 = _F(0.66666771), _F(0.39978135), _F(0.29857708)
# sin p = p + p^3 S(p^2), cos p = 1 + p^2 C(p^2), p in [0, pi/4]
_S1, _S2, _S3 = _F(-0.16666655), _F(0.00833219), _F(-0.00019518)
_C1, _C2, _C3, _C4 = _F(-0.499999997), _F(0.041666625), _F(-0.00138868087), _F(2.43941044e-05)


def _radius(e, m):
    """Box-Muller's sqrt(-2 ln u1) for u1 = 2^e m, m in [sqrt(1/2), sqrt(2)), in float32;
    plain arithmetic, so the kernels (jitted below) and the NumPy twin share it."""
    s = (m - _ONE) / (m + _ONE)
    s2 = s * s
    return np.sqrt(_MTWO * (e * _LN2 + s * (_TWO + s2 * (_L1 + s2 * (_L2 + s2 * _L3)))))


def _sin_cos(p):
    """(sin p, cos p) for p in [0, pi/4], in float32 (shared like :func:`_radius`)."""
    p2 = p * p
    return (p + p * p2 * (_S1 + p2 * (_S2 + p2 * _S3)),
            _ONE + p2 * (_C1 + p2 * (_C2 + p2 * (_C3 + p2 * _C4))))


_radius_jit = njit(cache=True, error_model="numpy")(_radius)
_sin_cos_jit = njit(cache=True, error_model="numpy")(_sin_cos)


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE bits of a float32, as an int32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, i):
    """The float32 whose IEEE bits are the int32 ``i``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_I = np.int32


@njit(cache=True, error_model="numpy")
def normal_pair32(lo, hi):
    """Two independent float32 standard normals from 64 random bits, given as their
    low and high 32-bit halves (Box-Muller).

    ``lo`` gives u1 in (0, 1] (so |z| < 6.67), ``hi`` the angle: two bits for the
    quadrant, 30 for the place in it. Every integer step is held to 32 bits (Numba
    widens integer arithmetic to 64), so that loops vectorise over 16 lanes, not 8.
    """
    f = _F(lo | np.uint32(1)) * _U32
    b = _float_bits(f)
    e = _F(_I(_I(b >> _I(23)) - _I(127)))
    m = _bits_float(_I(_I(b & _I(0x7FFFFF)) | _I(0x3F800000)))
    big = m > _SQRT2
    radius = _radius_jit(e + _ONE if big else e, m * _HALF if big else m)
    h = _I(hi)
    quadrant = _I(_I(h >> _I(30)) & _I(3))
    k = _I(h & _I(0x3FFFFFFF))
    upper = k >= _I(0x20000000)  # the upper half of the quadrant: sin and cos of pi/2 - p
    sin_p, cos_p = _sin_cos_jit(_F(_I(_I(0x40000000) - k) if upper else k) * _PSI)
    c, s = (sin_p, cos_p) if upper else (cos_p, sin_p)
    odd = _I(quadrant & _I(1)) == _I(1)  # rotate by quadrant * pi / 2
    z0 = radius * (s if odd else c) * (_ONE if _I(_I(quadrant + _I(1)) & _I(2)) == 0 else -_ONE)
    z1 = radius * (c if odd else s) * (_ONE if _I(quadrant & _I(2)) == 0 else -_ONE)
    return z0, z1


@njit(cache=True)
def _halves(word):
    """The low and high 32-bit halves of a uint64."""
    return np.uint32(word & np.uint64(0xFFFFFFFF)), np.uint32(word >> np.uint64(32))


@njit(cache=True)
def normal32(key, index):
    """Draw ``index`` of the float32 normal stream with this key: half ``index & 1`` of
    the pair made from ``bits(key, index >> 1)``."""
    lo, hi = _halves(bits(key, np.uint64(index) >> np.uint64(1)))
    z0, z1 = normal_pair32(lo, hi)
    return z1 if np.uint64(index) & np.uint64(1) else z0


@njit(cache=True, error_model="numpy")
def normals32(key, first, out):
    """``out[j] = normal32(key, first + j)`` for a float32 ``out``, vectorised.

    Two passes over ``out``: the 64-bit hashes first, their halves parked in ``out``
    as float bits, then the 32-bit Box-Muller over them; one fused loop would run the
    float work at the 8 lanes of the 64-bit hashes (0.85 against 0.60 ns a draw).
    """
    n = out.shape[0]
    first = np.uint64(first)
    j0 = 1 if n > 0 and first & np.uint64(1) else 0  # an odd start: its pair's second half
    if j0:
        out[0] = normal32(key, first)
    p0 = (first + np.uint64(j0)) >> np.uint64(1)
    for q in range((n - j0) >> 1):
        lo, hi = _halves(bits(key, p0 + np.uint64(q)))
        out[j0 + 2 * q] = _bits_float(_I(lo))
        out[j0 + 2 * q + 1] = _bits_float(_I(hi))
    for q in range((n - j0) >> 1):
        z0, z1 = normal_pair32(np.uint32(_float_bits(out[j0 + 2 * q])),
                               np.uint32(_float_bits(out[j0 + 2 * q + 1])))
        out[j0 + 2 * q] = z0
        out[j0 + 2 * q + 1] = z1
    if (n - j0) & 1:
        out[n - 1] = normal32(key, first + np.uint64(n - 1))


# ---------------------------------------------------------------- NumPy twins
def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stream_key_np(seed: int, stream: int) -> np.uint64:
    """Twin of :func:`stream_key` (a NumPy scalar)."""
    with np.errstate(over="ignore"):
        inner = np.uint64(stream) * _GOLDEN + _GOLDEN
    return _mix64_np(_mix64_np(np.uint64(seed)) ^ inner)[()]


def bits_np(key, counters) -> np.ndarray:
    """Twin of :func:`bits` over an array of counters."""
    c = np.asarray(counters, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64_np(np.uint64(key) + (c + np.uint64(1)) * _GOLDEN)


def uniform_np(key, counters) -> np.ndarray:
    """Twin of :func:`uniform`."""
    return (bits_np(key, counters) >> _S11).astype(np.float64) * _TO_UNIT


def normal_np(key, counters) -> np.ndarray:
    """Twin of :func:`normal`."""
    c = np.asarray(counters, dtype=np.uint64) * np.uint64(2)
    u1 = 1.0 - uniform_np(key, c)
    u2 = uniform_np(key, c + np.uint64(1))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def sign_np(key, indices) -> np.ndarray:
    """Twin of :func:`sign`."""
    idx = np.asarray(indices, dtype=np.uint64)
    word = bits_np(key, idx >> np.uint64(6))
    return 1.0 - 2.0 * ((word >> (idx & np.uint64(63))) & np.uint64(1)).astype(np.float64)


def normal32_np(key, indices) -> np.ndarray:
    """Twin of :func:`normal32` over an array of indices (float32, the same bits)."""
    idx = np.asarray(indices, dtype=np.uint64)
    w = bits_np(key, idx >> np.uint64(1)).view(np.int64)
    f = ((w & 0xFFFFFFFF) | 1).astype(_F) * _U32
    b = f.view(np.int32)
    e = ((b >> 23) - 127).astype(_F)
    m = ((b & 0x7FFFFF) | 0x3F800000).view(_F)
    big = m > _SQRT2
    radius = _radius(np.where(big, e + _ONE, e), np.where(big, m * _HALF, m))
    k = (w >> 32) & 0xFFFFFFFF
    quadrant = k >> 30
    k = k & 0x3FFFFFFF
    upper = k >= 0x20000000
    sin_p, cos_p = _sin_cos(np.where(upper, 0x40000000 - k, k).astype(_F) * _PSI)
    c, s = np.where(upper, sin_p, cos_p), np.where(upper, cos_p, sin_p)
    odd = (quadrant & 1) == 1
    second = (idx & np.uint64(1)) == 1
    sign = np.where(second, 1 - 2 * ((quadrant >> 1) & 1), 1 - 2 * (((quadrant + 1) >> 1) & 1))
    return radius * np.where(second != odd, s, c) * sign.astype(_F)


# ---------------------------------------------------------------- ziggurat normals
# One draw at a time with rare rejections (pulse noise of writes); each kernel below has
# its twin, and the twins above are what the rejection steps use.
def _ziggurat_tables(layers=256, r=3.6541528853610088, v=4.92867323399e-3):
    """Layer edges x_i, ratios x_{i+1} / x_i and densities exp(-x_i^2 / 2) of a
    ZIGNOR-style ziggurat with 256 layers (98.5 % of draws end at the first compare)."""
    x = np.zeros(layers + 1)
    f = np.exp(-0.5 * r * r)
    x[0], x[1] = v / f, r
    for i in range(2, layers):
        x[i] = np.sqrt(-2.0 * np.log(v / x[i - 1] + f))
        f = np.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1], np.exp(-0.5 * x * x)


_ZIG_X, _ZIG_RATIO, _ZIG_F = _ziggurat_tables()  # read-only, frozen into the kernels
_ZIG_R = 3.6541528853610088  # start of the tail
_ZIG_MASK = np.uint64(255)   # low word bits that pick the layer
_PAIR_WORDS = 32   # 64-bit words reserved per pair of normal draws (16 per draw)
_ZIG_LOW = np.uint64(0xFFFFFFFF)  # the twin's half-word mask (kernels use signed words)


@njit(cache=True)
def ziggurat_normal(key, index):
    """Standard normal draw ``index`` of the stream with this key (ziggurat, J. A. Doornik,
    "An improved ziggurat method to generate normal random samples", 2005).

    Draws 2p and 2p + 1 share word ``32 p``: draw 2p + h reads its half h (32 bits),
    whose low 8 bits pick one of 256 layers and whose top 24 bits give a uniform in
    [-1, 1) (first attempts land on a grid of 2^-23 of the layer width: invisible
    next to float32 rounding); 98.5 % of draws end at that first compare, so a pair
    mostly costs one hash. A rejected draw continues in its own 16 words from
    ``32 p + 16 h``: the wedge test (one exponential, against tabulated densities)
    reads the next word, further attempts (52-bit uniforms) every second word, the
    tail from the next word on. An attempt is rejected with probability below 1.5 %,
    so reading past the 16 words has probability below 1e-15. Used for pulse noise
    (one draw at a time); reads draw in bulk from :func:`normals32`.
    """
    p = np.uint64(index) >> np.uint64(1)
    h = np.int64(np.uint64(index) & np.uint64(1))
    word = np.int64(bits(key, p * np.uint64(_PAIR_WORDS)))
    return _normal_half(key, p, h, (word >> (32 * h)) & 0xFFFFFFFF)


@njit(cache=True)
def _normal_half(key, p, h, half):
    """Draw 2p + h of :func:`ziggurat_normal` from its 32-bit half word (as an int64: signed
    integers convert to float in one instruction, unsigned 64-bit ones do not)."""
    i = half & 255
    u = float(half >> 8) * 2.0 ** -23 - 1.0
    if abs(u) < _ZIG_RATIO[i]:
        return u * _ZIG_X[i]
    return _normal_rejected(key, p * np.uint64(_PAIR_WORDS) + np.uint64(16 * h), i, u)


@njit(cache=True)
def _normal_rejected(key, c, i, u):
    """The rest of :func:`ziggurat_normal` after a first attempt at word ``c`` fell outside its layer."""
    while True:
        if i == 0:
            t = c + np.uint64(1)
            while True:
                x = np.log(1.0 - uniform(key, t)) / _ZIG_R
                y = np.log(1.0 - uniform(key, t + np.uint64(1)))
                t += np.uint64(2)
                if -2.0 * y >= x * x:
                    return x - _ZIG_R if u < 0.0 else _ZIG_R - x
        x = u * _ZIG_X[i]
        f0, f1 = _ZIG_F[i], _ZIG_F[i + 1]
        if f1 + uniform(key, c + np.uint64(1)) * (f0 - f1) < np.exp(-0.5 * x * x):
            return x
        c += np.uint64(2)
        word = bits(key, c)
        i = np.int64(word & _ZIG_MASK)
        u = float(np.int64(word >> np.uint64(12))) * 2.0 ** -51 - 1.0
        if abs(u) < _ZIG_RATIO[i]:
            return u * _ZIG_X[i]


def _normal_tail_np(key, t, negative):
    while True:
        x = np.log(1.0 - uniform_np(key, t)) / _ZIG_R
        y = np.log(1.0 - uniform_np(key, t + np.uint64(1)))
        t += np.uint64(2)
        if -2.0 * y >= x * x:
            return x - _ZIG_R if negative else _ZIG_R - x


def ziggurat_normal_np(key, indices):
    """NumPy twin of :func:`ziggurat_normal` over an array of indices."""
    idx = np.asarray(indices, dtype=np.uint64)
    p, h = idx >> np.uint64(1), idx & np.uint64(1)
    half = (bits_np(key, p * np.uint64(_PAIR_WORDS)) >> (h * np.uint64(32))) & _ZIG_LOW
    i = (half & _ZIG_MASK).astype(np.int64)
    u = (half >> np.uint64(8)).astype(np.float64) * 2.0 ** -23 - 1.0
    out = u * _ZIG_X[i]
    # rejected first attempts continue at word c = 32 p + 16 h, attempt a at c + 2a
    c = p * np.uint64(_PAIR_WORDS) + h * np.uint64(16)
    todo = ~(np.abs(u) < _ZIG_RATIO[i])
    while todo.any():
        where = np.flatnonzero(todo)
        ii, uu, cc = i.flat[where], u.flat[where], c.flat[where]
        x = uu * _ZIG_X[ii]
        done = np.zeros(where.size, dtype=bool)
        wedge = ii > 0
        f0, f1 = _ZIG_F[ii], _ZIG_F[ii + 1]
        done |= wedge & (f1 + uniform_np(key, cc + np.uint64(1)) * (f0 - f1)
                         < np.exp(-0.5 * x * x))
        for k in np.flatnonzero(~wedge):  # the tail: rare, one at a time
            x[k] = _normal_tail_np(key, cc[k] + np.uint64(1), uu[k] < 0.0)
            done[k] = True
        out.flat[where[done]] = x[done]
        # the next attempt: a fresh 64-bit word, as in the kernel
        nxt = where[~done]
        cn = cc[~done] + np.uint64(2)
        word = bits_np(key, cn)
        i.flat[nxt] = (word & _ZIG_MASK).astype(np.int64)
        u.flat[nxt] = (word >> np.uint64(12)).astype(np.float64) * 2.0 ** -51 - 1.0
        c.flat[nxt] = cn
        accept = np.abs(u.flat[nxt]) < _ZIG_RATIO[i.flat[nxt]]
        out.flat[nxt[accept]] = u.flat[nxt[accept]] * _ZIG_X[i.flat[nxt[accept]]]
        todo[...] = False
        todo.flat[nxt[~accept]] = True
    return out

"""Counter-based random numbers: draw i of stream s under seed k is a pure function of (k, s, i).

Numba's in-kernel generator is not reproducible across threads, and drawing every
noise sample in NumPy first costs memory bandwidth. Kernels instead hash a 64-bit
key (derived from the run seed and a stream number) together with the draw's index,
with the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014), so any thread can
produce any draw and results do not depend on how work is split.

Each jitted function has a vectorised NumPy twin (``*_np``) used as the test
reference and for code outside kernels.
"""
from __future__ import annotations

import numpy as np
from numba import njit

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

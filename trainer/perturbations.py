"""Perturbation sequences for MGD, regenerated from the seed instead of stored.

A sequence gives each of K channels (parameters or nodes) a value for every code
index c; a hardware step t uses code ``t // tau_p``. Every type is scaled so the
RMS per channel is eps/sqrt(K), so eps is the RMS L2 norm of the whole perturbation
vector and E[theta~_i theta~_j] = (eps^2/K) delta_ij; an estimate integrated over T
steps is then about (T/K) grad C for any type (McCaughan et al. 2023, cpu/perturb.jl).

- ``code``: i.i.d. random signs +-eps/sqrt(K) (code multiplexing, CDMA). Sign k of
  code c is bit (c*K + k) of the counter-based stream.
- ``ternary``: each value is 0 with probability ``sparsity``, else a random sign with
  amplitude eps/sqrt(K (1 - sparsity)).
- ``walsh``: channel k follows Walsh-Hadamard row r_k (rows 1..N-1 of the Sylvester
  matrix of order N, the smallest power of two above K, assigned in a seeded shuffled
  order); the whole pattern flips sign after each cycle of N codes. Distinct channels
  are exactly orthogonal over every whole cycle.
- ``frequency``: channel k is sqrt(2) eps/sqrt(K) sin(2 pi m_k c / M + phi_k) with the
  integers m_k = 1..K in shuffled order, M = 2(K+1) codes per period and random
  phases: exactly orthogonal over every whole period (frequency multiplexing, FDMA).
- ``time``: one channel at a time, in a seeded shuffled order, with amplitude eps;
  the sign flips after each sweep of K codes (time multiplexing, TDMA: one sweep with
  tau_p = 1 is a coordinate-wise finite difference).

Random signs and levels are counter-based hashes of (seed, c, k); the orders and
phases of the periodic types are K numbers drawn once from the seed. So any step's
perturbation can be rebuilt from the seed alone, in any order and chunking.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import crng

KINDS = ("code", "ternary", "walsh", "frequency", "time")


@njit(cache=True)
def rademacher_codes(key, first_step, tau_p, amplitude, out):
    """Fill ``out`` (steps, K) with +-amplitude codes for steps first_step, first_step+1, ..."""
    steps, channels = out.shape
    for t in range(steps):
        code = (first_step + t) // tau_p
        if t > 0 and code == (first_step + t - 1) // tau_p:
            out[t, :] = out[t - 1, :]
            continue
        crng.fill_signs(key, code * channels, out[t])
        for k in range(channels):
            out[t, k] *= amplitude


@njit(cache=True, nogil=True)
def correlate_codes(key, counters, amplitudes, out):
    """out[k] = sum over t, in order from 0.0, of amplitudes[t] * sign(key, counters[t] + k):
    the column sums of the rows ``amplitudes[t] * codes[t]`` with the sign codes made on
    the fly, in the same bits, without a (rows x K) array (the parameters are taken in
    tiles that stay in cache while every row adds to them)."""
    K = out.shape[0]
    one = np.uint64(1)
    out[:] = 0.0
    for k0 in range(0, K, _TILE):
        k1 = min(K, k0 + _TILE)
        for t in range(counters.shape[0]):
            a = amplitudes[t]
            c0 = k0
            while c0 + 64 <= k1:  # whole words: a fixed loop of selects, vectorised
                word = crng.sign_bits(key, counters[t] + c0)
                block = out[c0:c0 + 64]
                for b in range(64):
                    block[b] += -a if (word >> np.uint64(b)) & one else a
                c0 += 64
            if c0 < k1:
                word = crng.sign_bits(key, counters[t] + c0)
                for k in range(c0, k1):
                    out[k] += -a if (word >> np.uint64(k - c0)) & one else a


_TILE = 2048
"""Parameters per tile of :func:`correlate_codes` (16 KiB of float64: an L1 cache)."""


def rademacher_codes_np(key, first_step, steps, tau_p, channels, amplitude):
    """NumPy twin of :func:`rademacher_codes`."""
    code_ids = (first_step + np.arange(steps)) // tau_p
    counters = code_ids[:, None] * channels + np.arange(channels)
    return amplitude * crng.sign_np(key, counters)


def _parity(v: np.ndarray) -> np.ndarray:
    """Parity (0 or 1) of the number of set bits of each non-negative integer (XOR
    folding, so it needs no NumPy 2 ``bitwise_count``)."""
    v = v.astype(np.uint64)
    for shift in (32, 16, 8, 4, 2, 1):
        v = v ^ (v >> np.uint64(shift))
    return (v & np.uint64(1)).astype(np.int64)


class Perturbation:
    """The perturbation sequence of one kind for K channels, from one seed."""

    def __init__(self, kind: str, channels: int, epsilon: float, seed: int,
                 sparsity: float = 0.0):
        if kind not in KINDS:
            raise ValueError(f"unknown perturbation {kind!r}; one of {KINDS}")
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.kind, self.channels, self.epsilon = kind, channels, epsilon
        self.sparsity = sparsity if kind == "ternary" else 0.0
        self.rms = epsilon / np.sqrt(channels)
        self.key = crng.stream_key_np(seed, 0)
        order = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self.cycle = 0
        """Codes per cycle over which distinct channels are exactly orthogonal (0: random)."""
        if kind == "walsh":
            self.cycle = 1 << int(channels).bit_length()  # smallest power of two > K
            self._rows = 1 + order.permutation(self.cycle - 1)[:channels]
        elif kind == "frequency":
            self.cycle = 2 * (channels + 1)
            self._harmonics = 1 + order.permutation(channels)
            self._phases = order.uniform(0.0, 2.0 * np.pi, channels)
        elif kind == "time":
            self.cycle = channels
            self._slot_channel = order.permutation(channels)

    def codes(self, code_ids: np.ndarray) -> np.ndarray:
        """Perturbation vectors (len(code_ids), K) for the given code indices."""
        c = np.asarray(code_ids, dtype=np.int64)
        K = self.channels
        if self.kind == "code":
            return self.rms * crng.sign_np(self.key, c[:, None] * K + np.arange(K))
        if self.kind == "ternary":
            word = crng.bits_np(self.key, c[:, None] * K + np.arange(K))
            level = (word >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
            sign = 1.0 - 2.0 * (word & np.uint64(1)).astype(np.float64)
            amplitude = self.rms / np.sqrt(1.0 - self.sparsity)
            return np.where(level >= self.sparsity, amplitude * sign, 0.0)
        cycle_sign = 1.0 - 2.0 * ((c // self.cycle) % 2)
        if self.kind == "walsh":
            col = c % self.cycle
            h = 1.0 - 2.0 * _parity(col[:, None] & self._rows[None, :])
            return self.rms * cycle_sign[:, None] * h
        if self.kind == "frequency":
            angle = 2.0 * np.pi * np.outer(c % self.cycle, self._harmonics) / self.cycle
            return np.sqrt(2.0) * self.rms * np.sin(angle + self._phases)
        out = np.zeros((len(c), K))
        out[np.arange(len(c)), self._slot_channel[c % K]] = self.epsilon * cycle_sign
        return out

    def at_steps(self, first_step: int, steps: int, tau_p: int) -> np.ndarray:
        """Perturbations (steps, K) of hardware steps first_step.., each code held tau_p."""
        if self.kind == "code":
            out = np.empty((steps, self.channels))
            rademacher_codes(self.key, first_step, tau_p, self.rms, out)
            return out
        ids = (first_step + np.arange(steps)) // tau_p
        first = ids[0]
        return self.codes(np.arange(first, ids[-1] + 1))[ids - first]

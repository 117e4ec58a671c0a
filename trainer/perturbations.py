"""Perturbation codes, regenerated from (seed, code index) instead of stored.

Code multiplexing: every ``tau_p`` steps each of the K channels gets an independent
random sign, scaled to amplitude eps/sqrt(K) so that eps is the L2 norm of the whole
perturbation vector. Sign k of code c is bit (c*K + k) of the counter-based stream,
so any step's code can be rebuilt from the seed alone, in any order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import crng


@njit(cache=True)
def rademacher_codes(key, first_step, tau_p, amplitude, out):
    """Fill ``out`` (steps, K) with +-amplitude codes for steps first_step, first_step+1, ..."""
    steps, channels = out.shape
    for t in range(steps):
        code = (first_step + t) // tau_p
        if t > 0 and code == (first_step + t - 1) // tau_p:
            out[t, :] = out[t - 1, :]
            continue
        base = np.uint64(code) * np.uint64(channels)
        for k in range(channels):
            index = base + np.uint64(k)
            if k == 0 or (index & np.uint64(63)) == 0:
                word = crng.bits(key, index >> np.uint64(6))
            bit = (word >> (index & np.uint64(63))) & np.uint64(1)
            out[t, k] = amplitude * (1.0 - 2.0 * float(bit))


def rademacher_codes_np(key, first_step, steps, tau_p, channels, amplitude):
    """NumPy twin of :func:`rademacher_codes`."""
    code_ids = (first_step + np.arange(steps)) // tau_p
    counters = code_ids[:, None] * channels + np.arange(channels)
    return amplitude * crng.sign_np(key, counters)

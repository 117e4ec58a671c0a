"""Pulsed writes of a crossbar layer, as a kernel over plain arrays: requested changes
become trains of programming pulses with cycle-to-cycle step noise, up/down asymmetry
and soft or hard bounds; a differential pair keeps the weight on one device with its
partner near the floor, so weights cross zero.

The kernel has a NumPy twin used as its test reference; the noise is drawn from
:mod:`devsim.crng` (ziggurat normals, one per pulse, indexed by cell and pulse).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import crng


@njit(cache=True)
def _pulse_step(u, lo, hi, up, step_up, step_down, noise, soft):
    """Conductance (range units) of one device after one pulse."""
    step = (step_up if up else step_down) * (1.0 + noise)
    if soft and hi > lo:
        step *= ((hi - u) if up else (u - lo)) / (hi - lo)
    u = u + step if up else u - step
    return min(max(u, lo), hi)


@njit(cache=True)
def pulse_kernel(request, u_pos, u_neg, lo_pos, hi_pos, lo_neg, hi_neg, stuck_pos,
                 stuck_neg, up_pos, down_pos, up_neg, down_neg, differential, dw_std,
                 soft, stochastic, max_pulses, key, key_round, base, counts):
    """Apply pulse trains; ``request`` is the wanted change of each cell in pulses.

    Cell k gets ``n = round(|request[k]|)`` pulses (stochastically rounded if asked,
    at most ``max_pulses``), recorded in ``counts[k]``. A differential pair keeps the
    weight on one device with its partner near the floor: an up pulse depresses G-
    while G- is above its floor by more than half a step, else potentiates G+ (and
    symmetrically for down pulses). A reference-mapped cell pulses its one device.
    Stuck devices take pulses without moving. Pulse p of cell k uses normal draw
    ``base + k * max_pulses + p`` for its cycle-to-cycle step noise.
    """
    n_cells = request.shape[0]
    for k in range(n_cells):
        r = request[k]
        up = r > 0.0
        mag = abs(r)
        n = np.floor(mag)
        frac = mag - n
        if stochastic:
            if crng.uniform(key_round, base + np.uint64(k)) < frac:
                n += 1.0
        elif frac >= 0.5:
            n += 1.0
        n_pulses = min(int(n), max_pulses)
        counts[k] = n_pulses
        for p in range(n_pulses):
            noise = 0.0
            if dw_std > 0.0:
                noise = dw_std * crng.ziggurat_normal(
                    key, base + np.uint64(k) * np.uint64(max_pulses) + np.uint64(p))
            if differential:
                # the partner to move away from its floor, else the carrier toward it
                if up:
                    use_neg = u_neg[k] - lo_neg[k] > 0.5 * down_neg[k]
                else:
                    use_neg = not (u_pos[k] - lo_pos[k] > 0.5 * down_pos[k])
                if use_neg:
                    if stuck_neg[k] == 0:
                        u_neg[k] = _pulse_step(u_neg[k], lo_neg[k], hi_neg[k], not up,
                                               up_neg[k], down_neg[k], noise, soft)
                    continue
            if stuck_pos[k] == 0:
                u_pos[k] = _pulse_step(u_pos[k], lo_pos[k], hi_pos[k], up,
                                       up_pos[k], down_pos[k], noise, soft)


def _pulse_step_np(u, lo, hi, up, step_up, step_down, noise, soft):
    """NumPy twin of :func:`_pulse_step` over arrays."""
    step = np.where(up, step_up, step_down) * (1.0 + noise)
    if soft:
        span = hi - lo
        factor = np.where(up, hi - u, u - lo) / np.where(span > 0, span, 1.0)
        step = np.where(span > 0, step * factor, step)
    u = np.where(up, u + step, u - step)
    return np.minimum(np.maximum(u, lo), hi)


def pulse_np(request, u_pos, u_neg, lo_pos, hi_pos, lo_neg, hi_neg, stuck_pos, stuck_neg,
             up_pos, down_pos, up_neg, down_neg, differential, dw_std, soft, stochastic,
             max_pulses, key, key_round, base, counts):
    """NumPy twin of :func:`pulse_kernel`: all cells at once, one pulse index at a time."""
    k = np.arange(request.size, dtype=np.uint64)
    up = request > 0.0
    mag = np.abs(request)
    n = np.floor(mag)
    frac = mag - n
    if stochastic:
        n += crng.uniform_np(key_round, np.uint64(base) + k) < frac
    else:
        n += frac >= 0.5
    n = np.minimum(n.astype(np.int64), max_pulses)
    counts[:] = n
    for p in range(int(n.max(initial=0))):
        active = n > p
        noise = np.zeros(request.size)
        if dw_std > 0:
            noise = dw_std * crng.ziggurat_normal_np(key, np.uint64(base) + k * np.uint64(max_pulses)
                                       + np.uint64(p))
        use_neg = np.zeros(request.size, dtype=bool)
        if differential:
            use_neg = np.where(up, u_neg - lo_neg > 0.5 * down_neg,
                               ~(u_pos - lo_pos > 0.5 * down_pos))
        move = active & use_neg & (stuck_neg == 0)
        u_neg[move] = _pulse_step_np(u_neg, lo_neg, hi_neg, ~up, up_neg, down_neg, noise,
                                     soft)[move]
        move = active & ~use_neg & (stuck_pos == 0)
        u_pos[move] = _pulse_step_np(u_pos, lo_pos, hi_pos, up, up_pos, down_pos, noise,
                                     soft)[move]

"""The periphery of a crossbar layer, as kernels over plain arrays: the DAC at its rows,
the per-probe conductance offsets of weight perturbations, and the column readout
(white read noise drawn exactly at the column, a reference column's common-mode noise,
output noise, ADC clipping and rounding).

Every kernel has a NumPy twin used as its test reference. Noise comes from
:mod:`devsim.crng`, keyed on the array's streams and the probe's place in the array's
life, so that results do not depend on the thread count or on how probes are grouped.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devsim import crng


def quant_step(full_scale: float, bits: int) -> float:
    """Step of a symmetric ``bits``-bit converter over [-full_scale, full_scale] (0: none)."""
    return 2.0 * full_scale / (2 ** bits - 2) if bits else 0.0


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def dac_kernel(x, bound, step, out, tile_starts, row_sq):
    """out = DAC(x): clipped to +-``bound`` (if > 0), rounded to multiples of ``step`` (if
    > 0), in the precision of ``out`` (float32 converters run over twice the lanes:
    64 x 256 inputs 3.6 -> 1.6 us).

    On the way, for each of the ``len(row_sq)`` row tiles (inputs ``tile_starts[r] <= i
    < tile_starts[r + 1]``), ``row_sq[r, t]`` = the float64 sum of out[t, i]^2, plus 1 in
    the last tile for its bias row: the read-noise variance of each probe. Reassociation
    (allowed in this kernel for that sum: it has no other chain of adds or products)
    lets LLVM vectorise the sum, 5x faster; it changes the rounding of a variance by
    ~1e-16 relative.
    """
    n_probe, n_in = x.shape
    real = out.dtype.type
    b, s = real(bound), real(step)
    inv_step = real(1.0 / step if step > 0.0 else 0.0)
    n_tiles = row_sq.shape[0]
    for t in range(n_probe):
        xt, o = x[t], out[t]
        if bound > 0.0 and step > 0.0:
            for i in range(n_in):
                o[i] = np.rint(min(max(real(xt[i]), -b), b) * inv_step) * s
        elif bound > 0.0:
            for i in range(n_in):
                o[i] = min(max(real(xt[i]), -b), b)
        elif step > 0.0:
            for i in range(n_in):
                o[i] = np.rint(real(xt[i]) * inv_step) * s
        else:
            for i in range(n_in):
                o[i] = xt[i]
        for r in range(n_tiles):
            part = o[tile_starts[r]:tile_starts[r + 1]]  # (from 0: no index wrap-around)
            sq = 0.0
            for i in range(part.shape[0]):
                v = np.float64(part[i])
                sq += v * v
            row_sq[r, t] = sq + (1.0 if r == n_tiles - 1 else 0.0)


def dac_np(x, bound, step, dtype, tile_starts=None):
    """NumPy twin of :func:`dac_kernel`: the converted inputs, and, given ``tile_starts``,
    their row sums of squares per tile (equal up to summation order)."""
    real = np.dtype(dtype).type
    v = x.astype(dtype)
    if bound > 0:
        v = np.clip(v, -real(bound), real(bound))
    if step > 0:
        v = np.rint(v * real(1.0 / step)) * real(step)
    if tile_starts is None:
        return v
    v64 = v.astype(np.float64)
    sums = np.array([(v64[:, i0:i1] ** 2).sum(axis=1)
                     for i0, i1 in zip(tile_starts[:-1], tile_starts[1:])])
    sums[-1] += 1.0
    return v, sums


@njit(cache=True, nogil=True)
def add_tile_perturbation(x, perturbation, n_out, i0, i1, with_bias, out):
    """out[t, j] += sum_{i0 <= i < i1} dW_t[j, i] x[t, i] (+ db_t[j] if ``with_bias``).

    The per-probe conductance offsets of one row tile; ``perturbation`` is in the flat
    ``[W.ravel(), b]`` layout. Same accumulation order as :mod:`devices.ideal`.
    """
    n_probe, n_in = x.shape
    bias0 = n_out * n_in
    for t in range(n_probe):
        for j in range(n_out):
            acc = perturbation[t, bias0 + j] if with_bias else 0.0
            row = j * n_in
            for i in range(i0, i1):
                acc += perturbation[t, row + i] * x[t, i]
            out[t, j] += acc


def add_tile_perturbation_np(x, perturbation, n_out, i0, i1, with_bias, out):
    """NumPy twin of :func:`add_tile_perturbation`."""
    n_probe, n_in = x.shape
    dw = perturbation[:, : n_out * n_in].reshape(n_probe, n_out, n_in)[:, :, i0:i1]
    out += np.einsum("tji,ti->tj", dw, x[:, i0:i1])
    if with_bias:
        out += perturbation[:, n_out * n_in:]


_DRAWS_PER_BLOCK = 4096
"""Normal draws a readout makes per call of :func:`devsim.crng.normals32`: whole
blocks of rows at once, so that narrow layers (10 outputs) do not pay a call and a
loop start per row (64 x 10 readout 6.4 -> 3.9 us), in a work array that stays in L1."""


@njit(cache=True)
def draw_block(n_out, n_groups):
    """Normal draws reserved per probe and row tile: one per output and per reference
    column, rounded up to even so that every probe's draws start a fresh pair
    (:func:`devsim.crng.normals32` then needs no odd-start step)."""
    return (n_out + n_groups + 1) & ~1


@njit(cache=True, nogil=True, error_model="numpy")
def readout_rows(acc, bias, out, accumulate, row_sq, var_scale, var_tj, out_var, shared_var,
                 group, n_groups, key, key_round, base, first, adc_step, adc_bound,
                 stochastic, t0, t1):
    """Column noise and ADC of one row tile for probes t0 <= t < t1, into ``out``.

    For probe t and output j: ``y = acc[t, j] + bias[j] + N(0, v) - s[t, group[j]]`` with
    ``v = row_sq[t] * var_scale + var_tj[t, j] + out_var`` (terms with empty arrays
    are left out) and ``s`` the common-mode noise of a shared reference column
    (variance ``shared_var[t, g]``); then ADC clipping to +-adc_bound and rounding to
    ``adc_step`` (if > 0); ``y`` is added to ``out`` or written there. Probe p uses
    normal draws ``base + p * draw_block(n, n_groups) + j`` of
    :func:`devsim.crng.normal32` (j = n + g for group g's reference) and, for
    stochastic rounding, uniform draws ``base + p * draw_block(n, n_groups) + j`` of
    ``key_round``.

    Arithmetic is in the precision of ``out`` (and ``bias``, which must match it):
    float32 arrays add, scale and round in float32, over twice the SIMD lanes of
    float64 (22 -> 14 us for 64 x 256 outputs); variances, square roots and
    stochastic rounding are float64 in both. Each probe's row goes through short
    single-purpose loops (draws, noise, ADC, store) so that LLVM vectorises them.
    Row t is probe ``first + t`` of its call (a call split across threads passes each
    part's first probe).
    """
    n = acc.shape[1]
    real = out.dtype.type
    base = np.uint64(base)
    stride = np.uint64(draw_block(n, n_groups))
    has_bias = bias.shape[0] > 0
    has_sq = row_sq.shape[0] > 0
    has_tj = var_tj.shape[0] > 0
    has_shared = shared_var.shape[0] > 0
    noisy = out_var > 0.0 or has_sq or has_tj
    common = np.zeros(n_groups, dtype=out.dtype)
    y = np.empty(n, dtype=out.dtype)
    z = np.empty(n)
    step, bound = real(adc_step), real(adc_bound)
    inv_step = real(1.0 / adc_step if adc_step > 0.0 else 0.0)
    # the draws of consecutive probes are consecutive: made for a block of rows at once
    per_row = draw_block(n, n_groups)
    block = max(1, _DRAWS_PER_BLOCK // per_row)
    draws = np.empty(min(block, max(t1 - t0, 0)) * per_row, dtype=np.float32)
    for t in range(t0, t1):
        p = np.uint64(first + t)
        k = (t - t0) % block
        if k == 0 and (noisy or has_shared):
            rows = min(block, t1 - t)
            crng.normals32(key, base + p * stride, draws[:rows * per_row])
        zn = draws[k * per_row:(k + 1) * per_row]
        rbase = base + p * stride
        a = acc[t]
        if has_bias:
            for j in range(n):
                y[j] = real(a[j]) + bias[j]
        else:
            for j in range(n):
                y[j] = a[j]
        if noisy:
            var = out_var + (row_sq[t] * var_scale if has_sq else 0.0)
            if has_tj:
                v = var_tj[t]
                for j in range(n):
                    y[j] += real(np.sqrt(var + v[j])) * real(zn[j])
            else:
                sd = real(np.sqrt(var))
                for j in range(n):
                    y[j] += sd * real(zn[j])
        if has_shared:
            for g in range(n_groups):
                common[g] = real(np.sqrt(shared_var[t, g])) * real(zn[n + g])
            for j in range(n):
                y[j] -= common[group[j]]
        if adc_step > 0.0:
            if stochastic:
                for j in range(n):
                    z[j] = crng.uniform(key_round, rbase + np.uint64(j))
                for j in range(n):
                    v = np.float64(min(max(y[j], -bound), bound))
                    y[j] = np.floor(v * (1.0 / adc_step) + z[j]) * adc_step
            else:
                for j in range(n):
                    v = min(max(y[j], -bound), bound)
                    y[j] = np.rint(v * inv_step) * step
        o = out[t]
        if accumulate:
            for j in range(n):
                o[j] += y[j]
        else:
            for j in range(n):
                o[j] = y[j]


def readout_np(acc, bias, out, accumulate, row_sq, var_scale, var_tj, out_var, shared_var,
               group, n_groups, key, key_round, base, first, adc_step, adc_bound, stochastic):
    """NumPy twin of :func:`readout_rows` over all probes (same draws, same precision,
    vectorised)."""
    n_probe, n = acc.shape
    real = out.dtype.type
    t = np.uint64(first) + np.arange(n_probe, dtype=np.uint64)[:, None]
    first = np.uint64(base) + t * np.uint64(draw_block(n, n_groups))
    v = np.full((n_probe, n), float(out_var))
    if row_sq.shape[0]:
        v += row_sq[:, None] * var_scale
    if var_tj.shape[0]:
        v += var_tj
    y = acc.astype(out.dtype)
    if bias.shape[0]:
        y += bias
    if out_var > 0 or row_sq.shape[0] or var_tj.shape[0]:
        z = crng.normal32_np(key, first + np.arange(n, dtype=np.uint64)[None, :])
        y = y + np.sqrt(v).astype(out.dtype) * z.astype(out.dtype)
    if shared_var.shape[0]:
        z = crng.normal32_np(key, first + np.uint64(n)
                             + np.arange(n_groups, dtype=np.uint64)[None, :])
        y = y - (np.sqrt(shared_var).astype(out.dtype) * z.astype(out.dtype))[:, group]
    if adc_step > 0:
        y = np.clip(y, -real(adc_bound), real(adc_bound))
        if stochastic:
            u = crng.uniform_np(key_round, first + np.arange(n, dtype=np.uint64)[None, :])
            y = (np.floor(y.astype(np.float64) * (1.0 / adc_step) + u) * adc_step
                 ).astype(out.dtype)
        else:
            y = np.rint(y * real(1.0 / adc_step)) * real(adc_step)
    if accumulate:
        out += y
    else:
        out[...] = y

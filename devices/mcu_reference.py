"""The NumPy reference of TFLM's int8 FULLY_CONNECTED arithmetic, written out literally.

One function per gemmlowp / TFLite routine (``SaturatingRoundingDoublingHighMul``,
``RoundingDivideByPOT``, ``MultiplyByQuantizedMultiplier``), in int64 NumPy with C's
int32 wrap-around and truncating division made explicit, and the FULLY_CONNECTED kernel
(per tensor or per channel) built from them. It is the independent implementation the
Numba kernels of :mod:`devices.mcu` are tested against, and is itself tested against the
``tflite-micro`` interpreter.
"""
from __future__ import annotations

import numpy as np

from devices.mcu_quant import INT32_MAX, INT32_MIN, WEIGHT_MAX


def _wrap32(x):
    """Two's-complement wrap of int64 values to int32 (what the C int32 code does)."""
    return np.asarray(x, dtype=np.int64).astype(np.int32).astype(np.int64)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: the high 32 bits of 2ab, rounded.

    Written as in gemmlowp: a 64-bit product, a nudge of 2**30 (or 1 - 2**30 for a
    negative product), C division truncating toward zero; INT32_MIN * INT32_MIN
    saturates to INT32_MAX.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # truncating division
    return np.where(overflow, INT32_MAX, _wrap32(high))


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: x / 2**exponent, ties away from zero."""
    x, exponent = np.asarray(x, dtype=np.int64), np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(acc, multiplier, shift):
    """TFLite ``MultiplyByQuantizedMultiplier`` (double rounding, the default build).

    ``acc * (1 << left)`` is an int32 product in C; it wraps here as it does there.
    """
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    scaled = _wrap32(np.asarray(acc, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier), right)


def fully_connected_reference(x_q, w_q, bias_q, multiplier, shift, in_zero_point,
                              out_zero_point, act_min, act_max):
    """TFLM int8 ``FullyConnected(PerChannel)`` in NumPy: (T, n_in) int8 -> (T, n_out) int8.

    The int32 accumulator wraps on overflow as the C int32 sum does.
    """
    x = x_q.astype(np.int64) - in_zero_point
    acc = _wrap32(x @ w_q.astype(np.int64).T + bias_q.astype(np.int64))
    y = multiply_by_quantized_multiplier(acc, multiplier[None, :], shift[None, :])
    return np.clip(y + out_zero_point, act_min, act_max).astype(np.int8)


def fully_connected_perturbed_reference(x_q, w_q, bias_q, dw_q, db_q, multiplier, shift,
                                        in_zero_point, out_zero_point, act_min, act_max):
    """Reference for probe t run with weights clamp(w + dw[t]) and bias sat(b + db[t])."""
    out = np.empty((x_q.shape[0], w_q.shape[0]), dtype=np.int8)
    for t in range(x_q.shape[0]):
        w = np.clip(w_q.astype(np.int64) + dw_q[t], -WEIGHT_MAX, WEIGHT_MAX)
        b = np.clip(bias_q.astype(np.int64) + db_q[t], INT32_MIN, INT32_MAX)
        out[t] = fully_connected_reference(x_q[t:t + 1], w, b, multiplier, shift,
                                           in_zero_point, out_zero_point, act_min, act_max)[0]
    return out

"""int8 quantization as TensorFlow Lite defines it: scales, zero points, multipliers, clamps.

What the converter and the TFLM kernels compute outside the integer products
(``tensorflow/lite/kernels/internal/quantization_util.cc``, ``kernel_util.cc``, the
converter's calibration): activation (scale, zero point) from a real range
(``ChooseQuantizationParams``), symmetric int8 weights per tensor or per output channel,
int32 biases at scale s_in * s_w, the Q31 multiplier and shift of a real rescale
(``QuantizeMultiplier``), the fused activation's clamp
(``CalculateActivationRangeQuantized``), QUANTIZE and DEQUANTIZE, all rounding half away
from zero as ``TfLiteRound`` does. :mod:`devices.mcu` and :mod:`devices.mcu_conv` run
int8 layers with them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_MAX = 127
"""Weights are symmetric int8: [-127, 127] (TFLite quantization spec)."""
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
FUSED_ACTIVATIONS = ("none", "relu", "relu6")


def round_half_away(x):
    """``TfLiteRound`` (``std::round``): to nearest, ties away from zero, in x's precision.

    Via the exact fractional part x - trunc(x), so values just below a half (such as
    0.49999997 in float32) do not round up as floor(x + 0.5) would.
    """
    x = np.asarray(x)
    whole = np.trunc(x)
    return whole + np.sign(x) * (np.abs(x - whole) >= 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real ~= m * 2**(shift - 31)``, m a Q31 int32.

    Uses frexp and rounds the mantissa half away from zero; a mantissa that rounds
    up to 2**31 is halved (shift + 1); multipliers below about 2**-31 flush to (0, 0).
    """
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"multiplier must be finite and >= 0, got {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * 2.0 ** 31))
    if q_fixed == 2 ** 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        q_fixed, shift = 0, 0
    if q_fixed > INT32_MAX or shift > 30:
        raise ValueError(f"multiplier {real!r} too large for int32 requantization")
    return q_fixed, shift


def requant_params(in_scale, weight_scales, out_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) int32 arrays for M[c] = s_in * s_w[c] / s_out.

    The scales are the float32 values a .tflite file stores; the product and the
    quotient are taken in double, as TFLM's ``PopulateConvolutionQuantizationParams``.
    """
    mult, shift = [], []
    for sw in np.asarray(weight_scales, dtype=np.float32):
        m, s = quantize_multiplier(float(np.float32(in_scale)) * float(sw)
                                   / float(np.float32(out_scale)))
        mult.append(m)
        shift.append(s)
    return np.array(mult, dtype=np.int32), np.array(shift, dtype=np.int32)


def activation_bounds(fused: str, out_scale: float, out_zero_point: int) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int8 output.

    RELU's lower bound is the quantized 0.0; RELU6's upper bound z + round(6 / s),
    with the division in float32 and ties away from zero, as the C++ does.
    """
    if fused not in FUSED_ACTIVATIONS:
        raise ValueError(f"fused activation must be one of {FUSED_ACTIVATIONS}, got {fused!r}")

    def quantize(f):
        return out_zero_point + int(round_half_away(np.float32(f) / np.float32(out_scale)))

    if fused == "none":
        return INT8_MIN, INT8_MAX
    low = max(INT8_MIN, quantize(0.0))
    high = INT8_MAX if fused == "relu" else min(INT8_MAX, quantize(6.0))
    return low, high


def choose_quant_params(rmin: float, rmax: float) -> tuple[np.float32, int]:
    """int8 (scale, zero point) covering [rmin, rmax] with 0.0 exactly representable.

    TFLite's ``ChooseQuantizationParams``: the range is widened to include 0, the
    zero point is taken from whichever end gives the smaller rounding error and
    nudged to an integer in [-128, 127]. The scale is returned as float32, as stored.
    The point range [0, 0] gets scale 1 and zero point 0: any scale represents it, and 1
    keeps divisions by the scale finite.
    """
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax == rmin:
        return np.float32(1.0), 0
    scale = (rmax - rmin) / (INT8_MAX - INT8_MIN)
    from_min, from_max = INT8_MIN - rmin / scale, INT8_MAX - rmax / scale
    err_min = abs(INT8_MIN) + abs(rmin / scale)
    err_max = abs(INT8_MAX) + abs(rmax / scale)
    zp = from_min if err_min < err_max else from_max
    zp = int(min(max(round_half_away(zp), INT8_MIN), INT8_MAX))
    return np.float32(scale), zp


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLM QUANTIZE (float32 -> int8): round(x / s) + z, ties away from zero, clamped.

    As ``reference_ops::AffineQuantize``: the input is a float32 tensor and the
    division is done in float32.
    """
    x = np.asarray(x, dtype=np.float32) / np.float32(scale)
    q = round_half_away(x).astype(np.int64) + zero_point
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """s * (q - z) in float64 (exact: at most 9 bits times a float32 scale)."""
    return (q.astype(np.float64) - zero_point) * float(np.float32(scale))


def symmetric_scales(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """Weight scales max|w| / 127, per output channel (row) or one for the tensor.

    An all-zero channel gets scale 1/127 (as if its range were [-1, 1]) so that
    it can still be written to.
    """
    amax = np.abs(w).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    amax = np.where(amax > 0, amax, 1.0)
    return (amax / WEIGHT_MAX).astype(np.float32)


def quantize_weights(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Symmetric int8 weights: round(w / s_w[c]) clamped to [-127, 127]."""
    q = round_half_away(w / scales.astype(np.float64)[:, None])
    return np.clip(q, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)


def bias_scales(in_scale, weight_scales) -> np.ndarray:
    """float32 bias scales s_in * s_w[c] (the converter's product, stored as float32)."""
    return (np.float64(np.float32(in_scale))
            * np.asarray(weight_scales, dtype=np.float32).astype(np.float64)).astype(np.float32)


def quantize_bias(b: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int32 biases round(b / (s_in s_w[c])), saturated."""
    q = round_half_away(b / scales.astype(np.float64))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


class QuantParams(NamedTuple):
    """int8 quantization of an activation tensor: real = scale * (q - zero_point)."""

    scale: np.float32
    zero_point: int

    @classmethod
    def from_range(cls, rmin: float, rmax: float) -> "QuantParams":
        return cls(*choose_quant_params(rmin, rmax))

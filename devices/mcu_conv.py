"""int8 convolution and pooling on a microcontroller, bit-exact with TensorFlow Lite Micro.

The arithmetic is that of TFLM's reference kernels (``tensorflow/lite/kernels/internal/
reference/integer_ops/{conv,depthwise_conv,pooling}.h``), which the tflite-micro
interpreter runs and CMSIS-NN's default build reproduces:

- CONV_2D (``ConvPerChannel``): for every output position and channel,
  acc = sum over the taps inside the map of w[o, dy, dx, c] * (x[y, x, c] - z_in), an
  int32 sum; taps on padding are skipped, which is padding with the input zero point;
  then bias, the per-channel requantization of :mod:`devices.mcu`
  (``MultiplyByQuantizedMultiplier``, double rounding), + z_out, the fused clamp;
- DEPTHWISE_CONV_2D (``DepthwiseConvPerChannel``): output channel o = c * dm + m sees
  input channel c only (dm the depth multiplier), filter (1, kh, kw, c_in * dm)
  quantized along its last axis;
- AVERAGE_POOL_2D: the sum of the int8 values inside the window (padding excluded)
  divided by their count, rounded half away from zero by C's truncating division
  ``(acc +- count / 2) / count`` on q itself (not q - z), clamped to the fused range;
  MAX_POOL_2D: the largest value inside the window, clamped. Pools keep their input's
  quantization (TFLM requires it).

Output sizes and padding are TFLite's (:mod:`devsim.conv_geometry`). Each ``*_reference``
writes the C loops out in NumPy (vectorised over the probe and channel axes only); the
Numba kernels are the fast path, tested against them; the references are tested
against the tflite-micro interpreter. Maps are NHWC, passed flat (T, H*W*C).

:class:`MCUConv2D` and :class:`MCUDepthwise` are :class:`devices.mcu.MCUDense` layers
whose weight matrix is the unrolled kernel: (c_out, kh*kw*c_in), a CONV_2D filter (OHWI)
reshaped, and (c_out, kh*kw), a DEPTHWISE_CONV_2D filter transposed; the flat parameter
layout, quantization, LSBs, writes and perturbation ports are MCUDense's, with outputs
and node perturbations (T, out_h*out_w*c_out). Time and energy count every MAC; the
synapses' local product (:meth:`~devsim.device.DeviceArray.local_gradient`) sums over
the positions a weight serves. :class:`MCUPool` is a pooling layer of a network on the
MCU (no parameters, no nodes). :meth:`devices.mcu.MCUParams.build_conv` and its kin
build these for a network's layers.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from devices.conv import conv2d, depthwise_conv2d
from devices.mcu import MCUDense, MCUParams, rademacher_lsb, requantize
from devices.mcu_quant import (INT32_MAX, INT32_MIN, WEIGHT_MAX, QuantParams, bias_scales,
                               dequantize, quantize, quantize_bias, quantize_weights,
                               symmetric_scales)
from devices.mcu_reference import multiply_by_quantized_multiplier
from devsim.array_layers import ParameterlessLayer, pool2d
from devsim.conv_geometry import ConvGeometry, window_row
from devsim.device import IntegerArray, Meter

_NO_DW, _NO_DB = np.zeros((0, 0, 0), np.int16), np.zeros((0, 0), np.int64)


# ------------------------------------------------------------------ NumPy references
def _finish(acc, bias_q, multiplier, shift, out_zero_point, act_min, act_max):
    """int32 acc + bias (wrapping, as the C sum does), requantized, offset, clamped."""
    acc = (acc + bias_q.astype(np.int64)).astype(np.int32).astype(np.int64)
    y = multiply_by_quantized_multiplier(acc, multiplier, shift) + out_zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)


def conv_per_channel_reference(x_q, w_q, bias_q, multiplier, shift, geometry: ConvGeometry,
                               in_zero_point, out_zero_point, act_min, act_max):
    """TFLM ``reference_integer_ops::ConvPerChannel``: x_q (T, H, W, C) int8, w_q OHWI
    (c_out, kh, kw, C) int8 -> (T, out_h, out_w, c_out) int8."""
    g = geometry
    x, w = x_q.astype(np.int64), w_q.astype(np.int64)
    out = np.empty((x.shape[0], g.out_h, g.out_w, w.shape[0]), dtype=np.int8)
    for out_y in range(g.out_h):
        in_y_origin = out_y * g.stride_h - g.pad_top
        for out_x in range(g.out_w):
            in_x_origin = out_x * g.stride_w - g.pad_left
            acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
            for filter_y in range(g.kernel_h):
                in_y = in_y_origin + filter_y
                for filter_x in range(g.kernel_w):
                    in_x = in_x_origin + filter_x
                    if not (0 <= in_x < g.in_w and 0 <= in_y < g.in_h):
                        continue  # zero padding by omitting the taps outside the image
                    acc += (x[:, in_y, in_x, :] - in_zero_point) @ w[:, filter_y, filter_x, :].T
            out[:, out_y, out_x, :] = _finish(acc, bias_q, multiplier, shift, out_zero_point,
                                              act_min, act_max)
    return out


def depthwise_conv_per_channel_reference(x_q, w_q, bias_q, multiplier, shift,
                                         geometry: ConvGeometry, depth_multiplier,
                                         in_zero_point, out_zero_point, act_min, act_max):
    """TFLM ``reference_integer_ops::DepthwiseConvPerChannel``: x_q (T, H, W, C), w_q
    (1, kh, kw, C * dm) -> (T, out_h, out_w, C * dm); output channel m + c * dm."""
    g, dm = geometry, depth_multiplier
    x, w = x_q.astype(np.int64), w_q.astype(np.int64)
    n_probe, n_out = x.shape[0], w.shape[3]
    out = np.empty((n_probe, g.out_h, g.out_w, n_out), dtype=np.int8)
    for out_y in range(g.out_h):
        for out_x in range(g.out_w):
            in_x_origin = out_x * g.stride_w - g.pad_left
            in_y_origin = out_y * g.stride_h - g.pad_top
            acc = np.zeros((n_probe, g.in_c, dm), dtype=np.int64)
            for filter_y in range(g.kernel_h):
                for filter_x in range(g.kernel_w):
                    in_x, in_y = in_x_origin + filter_x, in_y_origin + filter_y
                    if 0 <= in_x < g.in_w and 0 <= in_y < g.in_h:
                        acc += ((x[:, in_y, in_x, :, None] - in_zero_point)
                                * w[0, filter_y, filter_x, :].reshape(g.in_c, dm))
            out[:, out_y, out_x, :] = _finish(acc.reshape(n_probe, n_out), bias_q, multiplier,
                                              shift, out_zero_point, act_min, act_max)
    return out


def _pool_windows(x_q, g: ConvGeometry):
    """(out_y, out_x, the window's int64 values (T, rows, cols, C)) of every output
    position, the filter clamped to the map as TFLM's pooling kernels clamp it."""
    x = x_q.astype(np.int64)
    for out_y in range(g.out_h):
        for out_x in range(g.out_w):
            in_x_origin = out_x * g.stride_w - g.pad_left
            in_y_origin = out_y * g.stride_h - g.pad_top
            filter_x_start, filter_x_end = max(0, -in_x_origin), min(g.kernel_w,
                                                                    g.in_w - in_x_origin)
            filter_y_start, filter_y_end = max(0, -in_y_origin), min(g.kernel_h,
                                                                    g.in_h - in_y_origin)
            yield out_y, out_x, x[:, in_y_origin + filter_y_start:in_y_origin + filter_y_end,
                                  in_x_origin + filter_x_start:in_x_origin + filter_x_end, :]


def average_pool_reference(x_q, geometry: ConvGeometry, act_min, act_max):
    """TFLM ``reference_integer_ops::AveragePool`` (int8): x_q (T, H, W, C) -> (T, out_h,
    out_w, C); each mean rounded half away from zero by truncating C division."""
    g = geometry
    out = np.empty((x_q.shape[0], g.out_h, g.out_w, g.in_c), dtype=np.int8)
    for out_y, out_x, window in _pool_windows(x_q, g):
        count = window.shape[1] * window.shape[2]
        acc = window.sum(axis=(1, 2))
        num = np.where(acc > 0, acc + count // 2, acc - count // 2)
        acc = np.sign(num) * (np.abs(num) // count)     # C division truncates toward zero
        out[:, out_y, out_x, :] = np.clip(acc, act_min, act_max)
    return out


def max_pool_reference(x_q, geometry: ConvGeometry, act_min, act_max):
    """TFLM ``reference_integer_ops::MaxPool`` (int8): the window maximum, clamped."""
    g = geometry
    out = np.empty((x_q.shape[0], g.out_h, g.out_w, g.in_c), dtype=np.int8)
    for out_y, out_x, window in _pool_windows(x_q, g):
        out[:, out_y, out_x, :] = np.clip(window.max(axis=(1, 2)), act_min, act_max)
    return out


def perturbed_reference(reference, x_q, w_q, bias_q, dw_q, db_q, *args):
    """``reference`` run for probe t with weights clamp(w + dw[t], +-127) and biases
    saturate32(b + db[t]); ``w_q`` and ``dw_q[t]`` in the same layout."""
    outs = []
    for t in range(x_q.shape[0]):
        w = np.clip(w_q.astype(np.int64) + dw_q[t], -WEIGHT_MAX, WEIGHT_MAX)
        b = np.clip(bias_q.astype(np.int64) + db_q[t], INT32_MIN, INT32_MAX)
        outs.append(reference(x_q[t:t + 1], w, b, *args))
    return np.concatenate(outs)


# ------------------------------------------------------------------ Numba kernels
@njit(cache=True)
def _probe_weights(w_q, bias_q, dw_q, db_q, t, w, b):
    """w = clamp(w_q + dw_q[t], +-127) (int16), b = saturate32(bias_q + db_q[t]); the
    plain weights where ``dw_q`` has no rows."""
    perturbed = dw_q.shape[0] > 0
    lo, hi = np.int16(-WEIGHT_MAX), np.int16(WEIGHT_MAX)
    for j in range(w_q.shape[0]):
        for k in range(w_q.shape[1]):
            v = np.int16(w_q[j, k])
            if perturbed:
                v = min(max(np.int16(v + dw_q[t, j, k]), lo), hi)
            w[j, k] = v
        bj = np.int64(bias_q[j])
        if perturbed:
            bj = min(max(bj + db_q[t, j], np.int64(INT32_MIN)), np.int64(INT32_MAX))
        b[j] = np.int32(bj)


@njit(cache=True)
def _gather_patch(x_q, t, oy, ox, in_h, in_w, in_c, kernel_h, kernel_w, stride_h, stride_w,
                  pad_top, pad_left, in_zero_point, xc):
    """xc = the window of output (oy, ox) of map t minus the input zero point, (dy, dx, c)
    order, 0 on padding taps (padding with the zero point)."""
    run = kernel_w * in_c
    x0 = ox * stride_w - pad_left
    for dy in range(kernel_h):
        y = oy * stride_h - pad_top + dy
        dx0, dx1 = window_row(y, x0, in_h, in_w, kernel_w)
        base = dy * run
        for k in range(dx0 * in_c):
            xc[base + k] = 0
        src = (y * in_w + x0 + dx0) * in_c
        for k in range((dx1 - dx0) * in_c):
            xc[base + dx0 * in_c + k] = np.int16(np.int16(x_q[t, src + k])
                                                 - np.int16(in_zero_point))
        for k in range(dx1 * in_c, run):
            xc[base + k] = 0


@njit(cache=True)
def _store(acc, multiplier, shift, out_zero_point, act_min, act_max, out, t, first):
    """Requantize, offset and clamp ``acc`` into out[t, first:first + len(acc)]."""
    for j in range(acc.shape[0]):
        y = requantize(acc[j], multiplier[j], shift[j]) + out_zero_point
        out[t, first + j] = min(max(y, act_min), act_max)


@njit(cache=True)
def conv_per_channel(x_q, w_q, bias_q, dw_q, db_q, multiplier, shift, in_h, in_w, in_c,
                     kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w,
                     in_zero_point, out_zero_point, act_min, act_max, out):
    """CONV_2D int8 of flat NHWC maps x_q (T, H*W*C) with the unrolled kernel w_q
    (c_out, kh*kw*C) into out (T, out_h*out_w*c_out); probe t perturbed by dw_q[t]
    (int16 LSBs in [-254, 254]) and db_q[t] (int64 LSBs) where those have T rows."""
    n_probe = x_q.shape[0]
    n_out, n_k = w_q.shape
    xc = np.empty(n_k, dtype=np.int16)
    w = np.empty((n_out, n_k), dtype=np.int16)
    b = np.empty(n_out, dtype=np.int32)
    acc = np.empty(n_out, dtype=np.int32)
    for t in range(n_probe):
        if t == 0 or dw_q.shape[0] > 0:
            _probe_weights(w_q, bias_q, dw_q, db_q, t, w, b)
        for oy in range(out_h):
            for ox in range(out_w):
                _gather_patch(x_q, t, oy, ox, in_h, in_w, in_c, kernel_h, kernel_w, stride_h,
                              stride_w, pad_top, pad_left, in_zero_point, xc)
                for j in range(n_out):
                    a = np.int32(0)
                    for k in range(n_k):
                        a = np.int32(a + np.int32(w[j, k]) * np.int32(xc[k]))
                    acc[j] = np.int32(a + b[j])
                _store(acc, multiplier, shift, out_zero_point, act_min, act_max, out, t,
                       (oy * out_w + ox) * n_out)


@njit(cache=True)
def depthwise_conv_per_channel(x_q, w_q, bias_q, dw_q, db_q, multiplier, shift,
                               depth_multiplier, in_h, in_w, in_c, kernel_h, kernel_w,
                               stride_h, stride_w, pad_top, pad_left, out_h, out_w,
                               in_zero_point, out_zero_point, act_min, act_max, out):
    """DEPTHWISE_CONV_2D int8 with the kernel w_q (C * dm, kh*kw) (row o = c * dm + m):
    flat maps (T, H*W*C) -> (T, out_h*out_w*C*dm); perturbations as in
    :func:`conv_per_channel`."""
    n_probe = x_q.shape[0]
    n_out, taps = w_q.shape
    xc = np.empty(taps * in_c, dtype=np.int16)
    w = np.empty((n_out, taps), dtype=np.int16)
    b = np.empty(n_out, dtype=np.int32)
    acc = np.empty(n_out, dtype=np.int32)
    for t in range(n_probe):
        if t == 0 or dw_q.shape[0] > 0:
            _probe_weights(w_q, bias_q, dw_q, db_q, t, w, b)
        for oy in range(out_h):
            for ox in range(out_w):
                _gather_patch(x_q, t, oy, ox, in_h, in_w, in_c, kernel_h, kernel_w, stride_h,
                              stride_w, pad_top, pad_left, in_zero_point, xc)
                for c in range(in_c):
                    for m in range(depth_multiplier):
                        o = c * depth_multiplier + m
                        a = np.int32(0)
                        for k in range(taps):
                            a = np.int32(a + np.int32(w[o, k]) * np.int32(xc[k * in_c + c]))
                        acc[o] = np.int32(a + b[o])
                _store(acc, multiplier, shift, out_zero_point, act_min, act_max, out, t,
                       (oy * out_w + ox) * n_out)


@njit(cache=True)
def pool(x_q, average, in_h, in_w, in_c, kernel_h, kernel_w, stride_h, stride_w, pad_top,
         pad_left, out_h, out_w, act_min, act_max, out):
    """AVERAGE_POOL_2D (``average``) or MAX_POOL_2D int8 of flat maps (T, H*W*C) into
    (T, out_h*out_w*C), with TFLM's rounding of the mean."""
    acc = np.empty(in_c, dtype=np.int32)
    for t in range(x_q.shape[0]):
        for oy in range(out_h):
            y0 = oy * stride_h - pad_top
            fy0, fy1 = max(0, -y0), min(kernel_h, in_h - y0)
            for ox in range(out_w):
                x0 = ox * stride_w - pad_left
                fx0, fx1 = max(0, -x0), min(kernel_w, in_w - x0)
                for c in range(in_c):
                    acc[c] = 0 if average else -128
                for fy in range(fy0, fy1):
                    for fx in range(fx0, fx1):
                        src = ((y0 + fy) * in_w + x0 + fx) * in_c
                        for c in range(in_c):
                            v = np.int32(x_q[t, src + c])
                            acc[c] = acc[c] + v if average else max(acc[c], v)
                count = np.int32((fy1 - fy0) * (fx1 - fx0))
                dst = (oy * out_w + ox) * in_c
                for c in range(in_c):
                    a = acc[c]
                    if average:  # C's truncating division of (a +- count / 2) by count
                        num = a + count // 2 if a > 0 else a - count // 2
                        a = num // count if num >= 0 else -((-num) // count)
                    out[t, dst + c] = min(max(a, act_min), act_max)


# ------------------------------------------------------------------ devices
class MCUConv2D(MCUDense):
    """An int8 CONV_2D layer (fulfils ``DenseDevice`` on flat NHWC maps): an
    :class:`~devices.mcu.MCUDense` whose (c_out, kh*kw*c_in) matrix is the OHWI filter."""

    def __init__(self, geometry: ConvGeometry, w_q, b_q, weight_scales, input_q: QuantParams,
                 output_q: QuantParams, params: MCUParams):
        if w_q.shape[1] != self._columns(geometry):
            raise ValueError(f"weights have {w_q.shape[1]} columns, the kernel needs "
                             f"{self._columns(geometry)}")
        self.geometry = geometry
        super().__init__(w_q, b_q, weight_scales, input_q, output_q, params)

    @staticmethod
    def _columns(geometry: ConvGeometry) -> int:
        return geometry.patch_size

    @classmethod
    def from_float(cls, geometry, weights, bias, input_q, output_q, params):
        """Quantize float weights (per output channel or per tensor) and bias, as
        :meth:`MCUDense.from_float` does."""
        weights = np.asarray(weights, dtype=np.float64)
        scales = symmetric_scales(weights, params.per_channel)
        b_q = quantize_bias(np.asarray(bias, dtype=np.float64), bias_scales(input_q.scale, scales))
        return cls(geometry, quantize_weights(weights, scales), b_q, scales, input_q, output_q,
                   params)

    @property
    def n_nodes(self) -> int:
        """Outputs of one probe, out_h * out_w * c_out (the node layout, NHWC)."""
        return self.geometry.n_positions * self.shape[0]

    @property
    def macs_per_probe(self) -> int:
        return self.geometry.n_positions * self.shape[0] * self.shape[1]

    @property
    def tflite_filter(self) -> np.ndarray:
        """The int8 filter as a .tflite file holds it: OHWI (c_out, kh, kw, c_in)."""
        g = self.geometry
        return self.w_q.reshape(self.shape[0], g.kernel_h, g.kernel_w, g.in_c)

    def forward_q(self, x_q, node_lsb=None, weight_lsb=None):
        """int8 output maps (T, out_h*out_w*c_out) for int8 maps (T, H*W*C); weight
        perturbations (T, n_params) and node perturbations (T, n_nodes) in LSBs, as
        :meth:`MCUDense.forward_q`."""
        x_q = np.ascontiguousarray(x_q, dtype=np.int8).reshape(-1, self.geometry.in_size)
        dw, db = (_NO_DW, _NO_DB) if weight_lsb is None else self._split_lsb(weight_lsb)
        out = np.empty((x_q.shape[0], self.n_nodes), dtype=np.int8)
        self._kernel(x_q, dw, db, out)
        if node_lsb is not None:
            y = out.astype(np.int64) + np.asarray(node_lsb, dtype=np.int64)
            out = np.clip(y, self.act_min, self.act_max).astype(np.int8)
        self._count(x_q.shape[0])
        return out

    def forward_q_rademacher(self, x_q, key, first_probe, mu_weight, mu_bias):
        """:meth:`forward_q` with the :func:`~devices.mcu.rademacher_lsb` directions of
        probes first_probe, first_probe + 1, ... (drawn in NumPy, passed in)."""
        if not 0 <= mu_weight <= 2 * WEIGHT_MAX:
            raise ValueError(f"mu_weight must be in [0, {2 * WEIGHT_MAX}], got {mu_weight}")
        lsb = rademacher_lsb(key, first_probe, len(x_q), self.shape, mu_weight, mu_bias)
        return self.forward_q(x_q, weight_lsb=lsb)

    def _float_layer(self, w, b, x):
        return conv2d(self.geometry, w, b, x)

    def local_gradient(self, node_signal, x):
        return self.geometry.kernel_gradient(node_signal, x, self.shape[0])

    def _kernel(self, x_q, dw, db, out):
        conv_per_channel(x_q, self.w_q, self.b_q, dw, db, self.multiplier, self.shift,
                         *self.geometry.args, *self._int_args, out)

    @property
    def _int_args(self):
        return (np.int32(self.input_q.zero_point), np.int32(self.output_q.zero_point),
                np.int32(self.act_min), np.int32(self.act_max))


class MCUDepthwise(MCUConv2D):
    """An int8 DEPTHWISE_CONV_2D layer: kernel (c_in * dm, kh*kw), row o = c * dm + m
    the taps of output channel o (the .tflite filter (1, kh, kw, c_in * dm) transposed)."""

    def __init__(self, geometry, w_q, b_q, weight_scales, input_q, output_q, params):
        if w_q.shape[0] % geometry.in_c:
            raise ValueError(f"{w_q.shape[0]} output channels are no multiple of the "
                             f"{geometry.in_c} input channels")
        super().__init__(geometry, w_q, b_q, weight_scales, input_q, output_q, params)
        self.depth_multiplier = self.shape[0] // geometry.in_c

    @staticmethod
    def _columns(geometry):
        return geometry.taps

    @property
    def tflite_filter(self) -> np.ndarray:
        g = self.geometry
        return np.ascontiguousarray(self.w_q.T).reshape(1, g.kernel_h, g.kernel_w, self.shape[0])

    def _float_layer(self, w, b, x):
        return depthwise_conv2d(self.geometry, w, b, x)

    def local_gradient(self, node_signal, x):
        return self.geometry.depthwise_kernel_gradient(node_signal, x, self.depth_multiplier)

    def _kernel(self, x_q, dw, db, out):
        depthwise_conv_per_channel(x_q, self.w_q, self.b_q, dw, db, self.multiplier,
                                   self.shift, self.depth_multiplier, *self.geometry.args,
                                   *self._int_args, out)


def pool_q(kind: str, x_q, geometry: ConvGeometry, act_min: int = -128, act_max: int = 127):
    """int8 ``avg_pool`` (AVERAGE_POOL_2D) or ``max_pool`` (MAX_POOL_2D) of flat maps
    (T, H*W*C) -> (T, out_h*out_w*C); the output keeps the input's quantization, the
    fused clamp [act_min, act_max] from :func:`~devices.mcu_quant.activation_bounds`."""
    if kind not in ("avg_pool", "max_pool"):
        raise ValueError(f"pool kind must be 'avg_pool' or 'max_pool', got {kind!r}")
    x_q = np.ascontiguousarray(x_q, dtype=np.int8).reshape(-1, geometry.in_size)
    out = np.empty((x_q.shape[0], geometry.n_positions * geometry.in_c), dtype=np.int8)
    pool(x_q, kind == "avg_pool", *geometry.args, np.int32(act_min), np.int32(act_max), out)
    return out


class MCUPool(ParameterlessLayer, IntegerArray):
    """An int8 AVERAGE_POOL_2D or MAX_POOL_2D layer (:func:`pool_q`) whose input and
    output have the quantization ``quant`` (TFLM keeps the input's): float-facing, it
    quantizes its input as the layer before it dequantized it, so a network of MCU layers
    passes the same int8 maps as the TFLM graph. Time counts every value read from a
    window as one multiply-accumulate."""

    def __init__(self, kind: str, geometry: ConvGeometry, quant: QuantParams,
                 params: MCUParams):
        if kind not in ("avg_pool", "max_pool"):
            raise ValueError(f"pool kind must be 'avg_pool' or 'max_pool', got {kind!r}")
        self.kind, self.geometry, self.quant = kind, geometry, QuantParams(*quant)
        self._timing = params.timing
        self.meter = Meter()

    @property
    def param_lsb(self):
        return np.zeros(0)

    @property
    def output_lsb(self):
        return float(self.quant.scale)

    def quantize_input(self, x):
        return quantize(x, *self.quant)

    def dequantize_output(self, y_q):
        return dequantize(y_q, *self.quant)

    def forward_q(self, x_q):
        """int8 pooled maps of int8 maps (T, H*W*C)."""
        out = pool_q(self.kind, x_q, self.geometry)
        cycles = len(out) * self.geometry.n_positions * self.geometry.taps * self.geometry.in_c \
            * self._timing.cycles_per_mac
        self.meter.reads += len(out)
        self.meter.time_s += cycles / self._timing.clock_hz
        if self._timing.energy_per_cycle_j is not None:
            self.meter.energy_j += cycles * self._timing.energy_per_cycle_j
        return out

    def forward_q_rademacher(self, x_q, key, first_probe, mu_weight, mu_bias):
        """:meth:`forward_q`: a layer without parameters has no direction to move along."""
        return self.forward_q(x_q)

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        return self.dequantize_output(self.forward_q(self.quantize_input(x)))

    def ideal_error_bound(self, x):
        """Against float pooling of ``x``: the largest input quantization error in the
        window (a mean or a maximum moves no further; quantization is monotone, so the
        int8 maximum is the quantized float maximum) and, for the mean, half an LSB for
        its rounding to the nearest integer."""
        x = np.asarray(x, dtype=np.float64)
        x_err = np.abs(x - self.dequantize_output(self.quantize_input(x)))
        rounding = 0.5 * self.output_lsb * (1.0 + 1e-6) if self.kind == "avg_pool" else 0.0
        return pool2d("max_pool", self.geometry, x_err) + rounding

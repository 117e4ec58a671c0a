"""A microcontroller running int8 layers, bit-exact with TensorFlow Lite Micro.

The arithmetic is that of TFLM's reference ``FULLY_CONNECTED`` int8 kernel (and of
CMSIS-NN's default build, which rounds the same way):

- activations are int8 with a per-tensor (scale, zero point): real = s * (q - z);
- weights are int8 in [-127, 127], symmetric (zero point 0), per tensor or per
  output channel; biases are int32 with scale s_in * s_w[c] and zero point 0;
- acc[c] = sum_k w[c, k] * (x[k] - z_in) + bias[c] in int32;
- the real multiplier M[c] = s_in * s_w[c] / s_out (in double) becomes a Q31
  multiplier and a shift with ``QuantizeMultiplier`` (frexp, round half away from
  zero); the output is ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
  acc << left, m), right) + z_out`` (gemmlowp's "double rounding"), clamped to the
  fused activation's range (NONE, RELU, RELU6, computed as
  ``CalculateActivationRangeQuantized`` does, in float32).

:func:`devices.mcu_reference.fully_connected_reference` writes these formulas out
literally in NumPy, one gemmlowp function at a time; the Numba kernels here are the fast
path and are tested against it, and the reference is tested against the ``tflite-micro``
interpreter.

How a devsim network of :class:`MCUDense` layers is the TFLM int8 graph, bit for
bit. devsim passes float arrays between layers; this device makes them carry int8
tensors exactly. ``forward`` quantizes its input with the layer's input
(scale, zero point) as TFLM's QUANTIZE op does (float32 input and division, round half
away from zero, clamp), runs the integer kernel, and returns the *dequantized* int8
output ``s_out * (q - z_out)`` in float64. When layer l+1's input quantization is
layer l's output quantization (post-training quantization and :class:`MCUParams`
both ensure it), re-quantizing that float recovers q exactly: (q - z) has at most
9 bits, so the product and the quotient are off by far less than half an LSB. The
network's activation between the layers must map int8 grid points onto grid
points: ``identity`` does; ``relu`` of a dequantized value is the dequantized value
of the RELU clamp [max(-128, z_out), 127], so an unfused layer followed by a float
ReLU, or a RELU/RELU6-fused layer followed by anything idempotent on non-negative
values (identity, relu), reproduces the fused TFLM kernel exactly. Other
non-linearities (sigmoid, tanh) would be TFLM's LUT-based int8 ops and are not
modelled. The network's first input goes through QUANTIZE and its output through
DEQUANTIZE (in float64 here, float32 in TFLM), so costs see dequantized outputs.

Perturbations and writes are integer, in least significant bits (LSBs): a float
perturbation or update is divided by the LSB of the tensor it lands on (the
weight scale s_w[c], the bias scale s_in * s_w[c], the output scale s_out) and
rounded, so that a perturbed or updated model is again a valid int8 model (weights
clamped to [-127, 127], biases saturated to int32, activations clamped to the
fused range). Multiples of :attr:`MCUDense.weight_lsb` etc. land exactly; the
integer methods (:meth:`MCUDense.forward_q`, :meth:`MCUDense.write_q`) take LSBs
directly.

The quantization arithmetic itself (scales, zero points, multipliers, rounding, clamps)
is :mod:`devices.mcu_quant`.

Time and energy: every multiply-accumulate costs ``cycles_per_mac`` core cycles at
``clock_hz`` and ``energy_per_cycle_j`` joules per cycle; see :data:`CORES` for the
named cores and where their figures come from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from devices.mcu_memory import network_memory_report
from devices.mcu_quant import (FUSED_ACTIVATIONS, INT32_MAX, INT32_MIN, WEIGHT_MAX,
                               QuantParams, activation_bounds, bias_scales, dequantize,
                               quantize, quantize_bias, quantize_weights, requant_params,
                               round_half_away, symmetric_scales)
from devsim import crng
from devsim.device import DeviceParams, IntegerArray, Meter, layer_size, split_flat
from devsim.params import ParamError, param


# ------------------------------------------------------------------ cores
class Core(NamedTuple):
    """Timing and energy figures of one microcontroller core."""

    clock_hz: float
    cycles_per_mac: float
    energy_per_cycle_j: float | None
    source: str


_CMSIS_LOOP = ("CMSIS-NN's int8 vector x matrix loop (arm_nn_vec_mat_mult_t_s8, DSP path) "
               "spends per 2 rows x 4 inputs 3 LDR, 2 SXTAB16, 4 SXTB16 and 4 SMLAD: 13 "
               "instructions per 8 MACs")
CORES = {
    "cortex-m4": Core(
        clock_hz=100e6, cycles_per_mac=2.0, energy_per_cycle_j=3.3e-10,
        source=("STM32F411 (ST DS10314): Cortex-M4F at up to 100 MHz, run-mode current "
                "about 100 uA/MHz, at 3.3 V about 0.33 nJ per cycle. " + _CMSIS_LOOP +
                "; with the Cortex-M4 TRM (ARM DDI 0439) timings, LDR 2 cycles and the "
                "others 1, 16 cycles: 2 cycles/MAC, an estimate, not a measurement.")),
    "cortex-m7": Core(
        clock_hz=216e6, cycles_per_mac=1.0, energy_per_cycle_j=None,
        source=("STM32F746 (ST DS10916): Cortex-M7 at up to 216 MHz. " + _CMSIS_LOOP +
                "; the M7 dual-issues loads beside DSP ops (Cortex-M7 TRM, ARM DDI 0489): "
                "about 8 cycles, 1 cycle/MAC, an estimate. No energy figure: set "
                "energy_per_cycle_j from a measurement of your board.")),
}
"""Named cores. Clock frequencies are vendor figures; cycles per MAC are estimates
from instruction timings, not measurements; see each ``source``."""


def rademacher_lsb(key, first_probe: int, n_probe: int, shape: tuple[int, int],
                   mu_weight: int, mu_bias: int) -> np.ndarray:
    """(T, n_params) integer perturbations mu * u, u the counter-based Rademacher draw.

    Probe p (= first_probe + t) perturbs flat parameter i by ``mu * sign(key, p * d + i)``
    with d the layer's parameter count (``mu_weight`` on weights, ``mu_bias`` on
    biases): any party holding the key regenerates the same directions with
    :func:`devsim.crng.sign_np`, so they never need storing. NumPy twin of the
    directions :func:`fully_connected_rademacher` draws.
    """
    d = layer_size(shape)
    index = (first_probe + np.arange(n_probe, dtype=np.uint64))[:, None] * np.uint64(d) \
        + np.arange(d, dtype=np.uint64)
    u = crng.sign_np(key, index).astype(np.int64)
    mu = np.where(np.arange(d) < shape[0] * shape[1], mu_weight, mu_bias)
    return u * mu


# ------------------------------------------------------------------ Numba kernels
@njit(cache=True)
def requantize(acc, multiplier, shift):
    """Kernel form of :func:`devices.mcu_reference.multiply_by_quantized_multiplier` on
    one int32 accumulator.

    SaturatingRoundingDoublingHighMul as ``(a*b + 2**30) >> 31`` (equal to gemmlowp's
    nudge-and-truncate form for every input; the saturating case needs a == b ==
    INT32_MIN and cannot occur with a multiplier >= 0).
    """
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    a = np.int64(np.int32(np.int64(acc) << np.int64(left)))
    high = (a * np.int64(multiplier) + np.int64(1 << 30)) >> np.int64(31)
    mask = (np.int64(1) << np.int64(right)) - np.int64(1)
    threshold = (mask >> np.int64(1)) + (np.int64(1) if high < 0 else np.int64(0))
    return (high >> np.int64(right)) + (np.int64(1) if (high & mask) > threshold else np.int64(0))


@njit(cache=True)
def fully_connected(x_q, w_q, bias_q, multiplier, shift, in_zero_point, out_zero_point,
                    act_min, act_max, out):
    """out[t] = int8 FC of x_q[t] with weights ``w_q`` (n_out, n_in); int32 wrap as in C.

    The centred input x - z_in (in [-255, 255]) is held as int16 so that each output's
    dot product is an int8 x int16 -> int32 reduction, which LLVM vectorises
    (pmaddwd-style); integer sums are exact, so no fastmath is involved.
    """
    n_probe, n_in = x_q.shape
    n_out = w_q.shape[0]
    xc = np.empty(n_in, dtype=np.int16)
    acc = np.empty(n_out, dtype=np.int32)
    for t in range(n_probe):
        for k in range(n_in):
            xc[k] = np.int16(np.int32(x_q[t, k]) - np.int32(in_zero_point))
        for j in range(n_out):
            a = np.int32(0)
            for k in range(n_in):
                a = np.int32(a + np.int32(w_q[j, k]) * np.int32(xc[k]))
            acc[j] = np.int32(a + bias_q[j])
        for j in range(n_out):  # requantize apart: keeps the dot-product loop tight
            y = requantize(acc[j], multiplier[j], shift[j]) + out_zero_point
            out[t, j] = min(max(y, act_min), act_max)


@njit(cache=True)
def fully_connected_perturbed(x_q, w_q, bias_q, dw_q, db_q, multiplier, shift,
                              in_zero_point, out_zero_point, act_min, act_max, out):
    """Probe t runs weights clamp(w + dw[t], +-127) and bias saturate32(b + db[t]).

    ``dw_q`` is (T, n_out, n_in) int16 with entries in [-254, 254] (a larger step
    clamps alike; :class:`MCUDense` clips to that), so w + dw is exact in int16;
    ``db_q`` is (T, n_out) int64. Both in LSBs.
    """
    n_probe, n_in = x_q.shape
    n_out = w_q.shape[0]
    xc = np.empty(n_in, dtype=np.int16)
    acc = np.empty(n_out, dtype=np.int32)
    w_lo, w_hi = np.int16(-WEIGHT_MAX), np.int16(WEIGHT_MAX)
    for t in range(n_probe):
        for k in range(n_in):
            xc[k] = np.int16(np.int32(x_q[t, k]) - np.int32(in_zero_point))
        for j in range(n_out):
            a = np.int32(0)
            for k in range(n_in):
                w = min(max(np.int16(np.int16(w_q[j, k]) + dw_q[t, j, k]), w_lo), w_hi)
                a = np.int32(a + np.int32(w) * np.int32(xc[k]))
            b = min(max(np.int64(bias_q[j]) + db_q[t, j], np.int64(INT32_MIN)), np.int64(INT32_MAX))
            acc[j] = np.int32(a + np.int32(b))
        for j in range(n_out):
            y = requantize(acc[j], multiplier[j], shift[j]) + out_zero_point
            out[t, j] = min(max(y, act_min), act_max)


@njit(cache=True)
def fully_connected_rademacher(x_q, w_q, bias_q, key, first_probe, mu_weight, mu_bias,
                               multiplier, shift, in_zero_point, out_zero_point,
                               act_min, act_max, out):
    """Probe t runs the layer perturbed by :func:`rademacher_lsb` directions, drawn here.

    The signs come from the counter-based generator keyed on (key, probe, parameter
    index), 64 per hash, so no perturbation array is stored or passed: what an MCU
    trainer does by replaying its PRNG. ``mu_weight`` must lie in [0, 254].
    """
    n_probe, n_in = x_q.shape
    n_out = w_q.shape[0]
    d = n_out * n_in + n_out
    xc = np.empty(n_in, dtype=np.int16)
    sgn = np.empty(n_in, dtype=np.int16)
    acc = np.empty(n_out, dtype=np.int32)
    w_lo, w_hi = np.int16(-WEIGHT_MAX), np.int16(WEIGHT_MAX)
    mu_w = np.int16(mu_weight)
    for t in range(n_probe):
        base = np.uint64(first_probe + t) * np.uint64(d)
        for k in range(n_in):
            xc[k] = np.int16(np.int32(x_q[t, k]) - np.int32(in_zero_point))
        for j in range(n_out):
            k = 0
            while k < n_in:  # one hash per 64 signs: the bits of one word at a time
                index = base + np.uint64(j * n_in + k)
                word = crng.bits(key, index >> np.uint64(6))
                first = np.int64(index & np.uint64(63))
                count = min(64 - first, n_in - k)
                bits = np.int64(word >> np.uint64(first))  # (bits >> q) & 1 is bit q, q < 64
                for q in range(count):
                    sgn[k + q] = mu_w - np.int16(2) * mu_w * np.int16((bits >> q) & 1)
                k += count
            a = np.int32(0)
            for k in range(n_in):
                w = min(max(np.int16(np.int16(w_q[j, k]) + sgn[k]), w_lo), w_hi)
                a = np.int32(a + np.int32(w) * np.int32(xc[k]))
            u = crng.sign(key, base + np.uint64(n_out * n_in + j))
            b = np.int64(bias_q[j]) + np.int64(u) * np.int64(mu_bias)
            b = min(max(b, np.int64(INT32_MIN)), np.int64(INT32_MAX))
            acc[j] = np.int32(a + np.int32(b))
        for j in range(n_out):
            y = requantize(acc[j], multiplier[j], shift[j]) + out_zero_point
            out[t, j] = min(max(y, act_min), act_max)


# ------------------------------------------------------------------ the device
@dataclass(frozen=True)
class MCUParams(DeviceParams, kind="mcu"):
    """A microcontroller running int8 TFLM layers (FULLY_CONNECTED, CONV_2D,
    DEPTHWISE_CONV_2D, pooling: :mod:`devices.mcu_conv`), bit-exact.

    ``build`` quantizes a layer's float weights (symmetric int8) and bias (int32)
    with static activation ranges (``activation_range`` for every tensor, so layers
    chain exactly); :func:`devices.mcu_quantize.post_training_quantize` calibrates
    ranges on data instead.
    """

    integer_io = True

    core: str = param("cortex-m4", choices=tuple(CORES))
    """Named core whose figures fill the timing and energy fields left unset."""
    clock_hz: float | None = param(None, gt=0.0, unit="Hz")
    """Core clock; unset: the named core's."""
    cycles_per_mac: float | None = param(None, gt=0.0, unit="cycles")
    """Core cycles per int8 multiply-accumulate; unset: the named core's."""
    energy_per_cycle_j: float | None = param(None, ge=0.0, unit="J")
    """Energy of one core cycle; unset: the named core's (energy is not counted when
    neither gives one)."""
    per_channel: bool = param(True, choices=(True, False))
    """Weight scales per output channel (True) or one per layer (False)."""
    fused_activation: str = param("none", choices=FUSED_ACTIVATIONS)
    """Activation clamp fused into the kernel (TFLM ``fused_activation_function``)."""
    activation_range: tuple[float, float] = param((-4.0, 4.0), unit="activation")
    """Static real range [min, max] of every activation tensor (before calibration)."""
    sram_kib: float | None = param(None, gt=0.0, unit="KiB")
    """SRAM budget a configuration must fit (unset: no limit)."""
    flash_kib: float | None = param(None, gt=0.0, unit="KiB")
    """Flash budget for the model (unset: no limit)."""

    def validate(self):
        if len(self.activation_range) != 2:
            raise ParamError(("activation_range",), "must be [min, max]")
        lo, hi = self.activation_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ParamError(("activation_range",),
                             f"must be finite with min < max, got {[lo, hi]}")
        if lo > 0 or hi < 0:
            raise ParamError(("activation_range",), f"must contain 0.0, got {[lo, hi]}")

    @property
    def timing(self) -> Core:
        """The core figures with this configuration's overrides applied."""
        base = CORES[self.core]
        return Core(self.clock_hz if self.clock_hz is not None else base.clock_hz,
                    self.cycles_per_mac if self.cycles_per_mac is not None else base.cycles_per_mac,
                    self.energy_per_cycle_j if self.energy_per_cycle_j is not None
                    else base.energy_per_cycle_j, base.source)

    @property
    def activation_quant(self) -> "QuantParams":
        """The static quantization of every activation tensor (``activation_range``)."""
        return QuantParams.from_range(*self.activation_range)

    def build(self, weights, bias, rng):
        act = self.activation_quant
        return MCUDense.from_float(weights, bias, act, act, self)

    # Convolution and pooling are in devices.mcu_conv, which builds on this module.
    def build_conv(self, geometry, weights, bias, rng):
        from devices.mcu_conv import MCUConv2D
        return MCUConv2D.from_float(geometry, weights, bias, self.activation_quant,
                                    self.activation_quant, self)

    def build_depthwise(self, geometry, weights, bias, rng):
        from devices.mcu_conv import MCUDepthwise
        return MCUDepthwise.from_float(geometry, weights, bias, self.activation_quant,
                                       self.activation_quant, self)

    def build_pool(self, kind, geometry):
        from devices.mcu_conv import MCUPool
        return MCUPool(kind, geometry, self.activation_quant, self)

    def memory(self, layers, methods, queries):
        """SRAM and flash (:func:`devices.mcu_memory.network_memory_report`), checked
        against ``sram_kib`` and ``flash_kib``."""
        report = network_memory_report(layers, methods, per_channel=self.per_channel,
                                       n_queries=queries)
        report.check(self.sram_kib, self.flash_kib)
        return report


class MCUDense(IntegerArray):
    """An int8 fully-connected layer on a microcontroller.

    Holds int8 weights ``w_q`` (n_out, n_in), int32 biases ``b_q``, float32 weight
    scales, the input and output activation quantization, and the derived
    requantization multipliers and clamp bounds.
    """

    def __init__(self, w_q: np.ndarray, b_q: np.ndarray, weight_scales: np.ndarray,
                 input_q: QuantParams, output_q: QuantParams, params: MCUParams):
        self.shape = w_q.shape
        self.input_q, self.output_q = QuantParams(*input_q), QuantParams(*output_q)
        self.params = params
        self.fused_activation = params.fused_activation
        self.w_q = np.ascontiguousarray(w_q, dtype=np.int8)
        self.b_q = np.ascontiguousarray(b_q, dtype=np.int32)
        self.weight_scales = np.asarray(weight_scales, dtype=np.float32)
        self.bias_scales = bias_scales(self.input_q.scale, self.weight_scales)
        self.multiplier, self.shift = requant_params(self.input_q.scale, self.weight_scales,
                                                     self.output_q.scale)
        self.act_min, self.act_max = activation_bounds(
            params.fused_activation, self.output_q.scale, self.output_q.zero_point)
        self._timing = params.timing
        self.meter = Meter()

    @classmethod
    def from_float(cls, weights, bias, input_q: QuantParams, output_q: QuantParams,
                   params: MCUParams) -> "MCUDense":
        """Quantize float weights (symmetric int8) and bias (int32, scale s_in s_w)."""
        weights = np.asarray(weights, dtype=np.float64)
        scales = symmetric_scales(weights, params.per_channel)
        b_q = quantize_bias(np.asarray(bias, dtype=np.float64), bias_scales(input_q.scale, scales))
        return cls(quantize_weights(weights, scales), b_q, scales, input_q, output_q, params)

    # ---- LSBs of the tensors, for exact float-facing perturbations
    @property
    def weight_lsb(self) -> np.ndarray:
        """(n_out, n_in) real value of one weight LSB (the channel's weight scale)."""
        return np.broadcast_to(self.weight_scales.astype(np.float64)[:, None], self.shape)

    @property
    def bias_lsb(self) -> np.ndarray:
        """(n_out,) real value of one bias LSB, s_in * s_w[c]."""
        return self.bias_scales.astype(np.float64)

    @property
    def param_lsb(self) -> np.ndarray:
        """LSBs in the flat layout ``[W.ravel(), b]``."""
        return np.concatenate([self.weight_lsb.ravel(), self.bias_lsb])

    @property
    def output_lsb(self) -> float:
        """Real value of one output LSB (the output scale)."""
        return float(self.output_q.scale)

    # ---- integer interface
    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """TFLM QUANTIZE of float inputs with this layer's input quantization."""
        return quantize(x, *self.input_q)

    def dequantize_output(self, y_q: np.ndarray) -> np.ndarray:
        """Real values s_out * (q - z_out) of int8 outputs (TFLM DEQUANTIZE, in float64)."""
        return dequantize(y_q, *self.output_q)

    def forward_q(self, x_q: np.ndarray, node_lsb: np.ndarray | None = None,
                  weight_lsb: np.ndarray | None = None) -> np.ndarray:
        """int8 outputs (T, n_out) for int8 inputs (T, n_in), perturbations in LSBs.

        ``weight_lsb`` (T, n_out*n_in + n_out) integers are added to the int8
        weights (clamped to +-127) and int32 biases (saturated); ``node_lsb``
        (T, n_out) integers are added to the int8 outputs, clamped to the fused range.
        """
        x_q = np.ascontiguousarray(x_q, dtype=np.int8)
        n_probe = x_q.shape[0]
        out = np.empty((n_probe, self.shape[0]), dtype=np.int8)
        args = (self.multiplier, self.shift, np.int32(self.input_q.zero_point),
                np.int32(self.output_q.zero_point), np.int32(self.act_min),
                np.int32(self.act_max), out)
        if weight_lsb is None:
            fully_connected(x_q, self.w_q, self.b_q, *args)
        else:
            dw, db = self._split_lsb(weight_lsb)
            fully_connected_perturbed(x_q, self.w_q, self.b_q, dw, db, *args)
        if node_lsb is not None:
            y = out.astype(np.int64) + np.asarray(node_lsb, dtype=np.int64)
            out = np.clip(y, self.act_min, self.act_max).astype(np.int8)
        self._count(n_probe)
        return out

    def forward_q_rademacher(self, x_q: np.ndarray, key, first_probe: int, mu_weight: int,
                             mu_bias: int) -> np.ndarray:
        """Like ``forward_q(x_q, weight_lsb=rademacher_lsb(...))``, the directions drawn
        in the kernel from ``key`` instead of passed in (see :func:`rademacher_lsb`)."""
        if not 0 <= mu_weight <= 2 * WEIGHT_MAX:
            raise ValueError(f"mu_weight must be in [0, {2 * WEIGHT_MAX}], got {mu_weight}")
        x_q = np.ascontiguousarray(x_q, dtype=np.int8)
        out = np.empty((x_q.shape[0], self.shape[0]), dtype=np.int8)
        fully_connected_rademacher(
            x_q, self.w_q, self.b_q, np.uint64(key), np.int64(first_probe), np.int64(mu_weight),
            np.int64(mu_bias), self.multiplier, self.shift, np.int32(self.input_q.zero_point),
            np.int32(self.output_q.zero_point), np.int32(self.act_min), np.int32(self.act_max), out)
        self._count(x_q.shape[0])
        return out

    def write_q(self, delta_lsb: np.ndarray) -> None:
        """Add integer LSBs (flat layout) to the weights and biases, clamped to range."""
        delta = np.asarray(delta_lsb, dtype=np.int64)
        dw, db = split_flat(delta, self.shape)
        w = np.clip(self.w_q.astype(np.int64) + dw, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
        b = np.clip(self.b_q.astype(np.int64) + db, INT32_MIN, INT32_MAX).astype(np.int32)
        self.meter.pulses += int(np.count_nonzero(w != self.w_q) + np.count_nonzero(b != self.b_q))
        self.w_q[...] = w
        self.b_q[...] = b

    # ---- the DenseDevice contract (float-facing)
    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        """Dequantized int8 outputs for float inputs; perturbations rounded to LSBs."""
        node = wgt = None
        if node_perturbation is not None:
            node = self._to_lsb(node_perturbation, self.output_lsb)
        if weight_perturbation is not None:
            wgt = self._to_lsb(weight_perturbation, self.param_lsb)
        return self.dequantize_output(self.forward_q(self.quantize_input(x), node, wgt))

    def write(self, delta):
        """Apply a float update as whole LSBs (round half to even, as torch.round)."""
        self.write_q(np.rint(np.asarray(delta, dtype=np.float64) / self.param_lsb))

    def read(self):
        """The dequantized parameters, flat: [w_q * s_w[c], b_q * s_in s_w[c]]."""
        return np.concatenate([(self.w_q * self.weight_lsb).ravel(), self.b_q * self.bias_lsb])

    def write_tolerance(self):
        """Half an LSB of each parameter: writes round to whole LSBs."""
        return 0.5 * self.param_lsb

    def ideal_error_bound(self, x):
        """Against the ideal layer holding :meth:`read`'s parameters: the input's
        quantization error through the weights, one output LSB for the requantization
        (gemmlowp's double rounding), and the distance of the ideal output from the
        range the int8 output can take (the clamp)."""
        w, b = split_flat(self.read(), self.shape)
        x = np.asarray(x, dtype=np.float64)
        x_err = np.abs(x - dequantize(self.quantize_input(x), *self.input_q))
        ideal = self._float_layer(w, b, x)
        s_out, z_out = float(np.float32(self.output_q.scale)), self.output_q.zero_point
        lo, hi = s_out * (self.act_min - z_out), s_out * (self.act_max - z_out)
        clamp = np.maximum(lo - ideal, 0.0) + np.maximum(ideal - hi, 0.0)
        return (self._float_layer(np.abs(w), np.zeros_like(b), x_err) + s_out * (1.0 + 1e-6)
                + clamp)

    @staticmethod
    def _float_layer(w, b, x):
        """The layer in float64 with parameters (w, b): the ideal device's output."""
        return x @ w.T + b


    def _split_lsb(self, weight_lsb):
        n_probe = weight_lsb.shape[0]
        flat = np.asarray(weight_lsb, dtype=np.int64)
        n_w = self.shape[0] * self.shape[1]
        # Within [-127, 127] a weight moves at most 254 LSBs: larger steps clamp alike.
        dw = np.clip(flat[:, :n_w], -2 * WEIGHT_MAX, 2 * WEIGHT_MAX).astype(np.int16)
        db = np.clip(flat[:, n_w:], -2 ** 32, 2 ** 32)  # any larger step saturates alike
        return dw.reshape(n_probe, *self.shape), db

    @staticmethod
    def _to_lsb(perturbation, lsb):
        q = round_half_away(np.asarray(perturbation, dtype=np.float64) / lsb)
        return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int64)

    @property
    def macs_per_probe(self) -> int:
        """Multiply-accumulates of one inference of this layer."""
        return self.shape[0] * self.shape[1]

    def _count(self, n_probe: int) -> None:
        cycles = n_probe * self.macs_per_probe * self._timing.cycles_per_mac
        self.meter.reads += n_probe
        self.meter.time_s += cycles / self._timing.clock_hz
        if self._timing.energy_per_cycle_j is not None:
            self.meter.energy_j += cycles * self._timing.energy_per_cycle_j

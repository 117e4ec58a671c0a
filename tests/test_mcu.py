"""The int8 MCU device: formulas against hand-computed values, the Numba kernels
against the NumPy reference, both against the TFLite Micro interpreter (the
oracle), and the device's float-facing contract."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from devices.mcu import (CORES, MCUParams, fully_connected, fully_connected_perturbed,
                         fully_connected_rademacher, rademacher_lsb, requantize)
from devices.mcu_quant import (INT32_MAX, INT32_MIN, QuantParams, activation_bounds,
                               choose_quant_params, dequantize, quantize, quantize_multiplier,
                               requant_params, round_half_away)
from devices.mcu_quantize import post_training_quantize
from devices.mcu_reference import (fully_connected_perturbed_reference,
                                   fully_connected_reference, multiply_by_quantized_multiplier,
                                   rounding_divide_by_pot, saturating_rounding_doubling_high_mul)
from devsim import crng
from devsim.activations import Identity, ReLU
from devsim.bench import Bench
from devsim.config import ConfigError, from_data
from devsim.device import DeviceParams
from devsim.losses import mse
from devsim.network import LayerParams, Network, NetworkParams
from devsim.params import ParamError

PRESET = Path(__file__).resolve().parents[1] / "devices" / "presets" / "mcu_cortex_m4.yaml"


def run_kernel(x, w, b, m, s, z_in, z_out, lo, hi):
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.int8)
    fully_connected(x, w, b, m, s, np.int32(z_in), np.int32(z_out),
                    np.int32(lo), np.int32(hi), out)
    return out


# ------------------------------------------------------------------ hand-computed values
@pytest.mark.parametrize("real, expected", [
    (0.5, (2 ** 30, 0)),                    # frexp(0.5) = (0.5, 0)
    (1.0, (2 ** 30, 1)),                    # frexp(1.0) = (0.5, 1)
    (0.75, (3 * 2 ** 29, 0)),               # 0.75 * 2^31 exactly
    (0.25, (2 ** 30, -1)),
    (1 - 2.0 ** -40, (2 ** 30, 1)),         # mantissa rounds up to 2^31: halved, shift + 1
    (2.0 ** -32, (2 ** 30, -31)),           # smallest kept shift
    (2.0 ** -33, (0, 0)),                   # shift -32 < -31 flushes to zero
    (0.0, (0, 0)),
    (1.0 / 3.0, (round(2 ** 31 * 2 / 3), -1)),  # 2/3 * 2^31 = 1431655765.33 -> ...765
])
def test_quantize_multiplier_hand_values(real, expected):
    assert quantize_multiplier(real) == expected


def test_quantize_multiplier_rejects_negative_and_huge():
    with pytest.raises(ValueError):
        quantize_multiplier(-0.1)
    with pytest.raises(ValueError):
        quantize_multiplier(2.0 ** 31)


@pytest.mark.parametrize("a, b, expected", [
    (2 ** 30, 2 ** 30, 2 ** 29),        # 2ab / 2^32 = 2^29 exactly
    (1, 2 ** 30, 1),                    # 0.5 rounds up
    (-1, 2 ** 30, 0),                   # -0.5 rounds up (toward +inf) to 0
    (3, 2 ** 30, 2),                    # 1.5 -> 2
    (-3, 2 ** 30, -1),                  # -1.5 -> -1
    (-5, 2 ** 30, -2),                  # -2.5 -> -2
    (INT32_MIN, INT32_MIN, INT32_MAX),  # the one saturating case
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),  # (2^31-1)^2 * 2 / 2^32 = 2^31 - 2 + 2^-31
])
def test_saturating_rounding_doubling_high_mul_hand_values(a, b, expected):
    assert int(saturating_rounding_doubling_high_mul(a, b)) == expected


@pytest.mark.parametrize("x, exponent, expected", [
    (5, 1, 3), (-5, 1, -3),        # +-2.5: ties away from zero
    (6, 2, 2), (-6, 2, -2),        # +-1.5
    (-7, 2, -2), (-5, 2, -1),      # -1.75, -1.25
    (7, 0, 7), (-7, 0, -7),
    (INT32_MIN, 31, -1), (INT32_MAX, 31, 1),
])
def test_rounding_divide_by_pot_hand_values(x, exponent, expected):
    assert int(rounding_divide_by_pot(x, exponent)) == expected


def test_double_rounding_differs_from_single_rounding_by_hand():
    # x = [3, -2], z_in = 1, w = [2, -1], b = 10: acc = 2*2 + (-1)*(-3) + 10 = 17.
    # M = 0.5 * 0.5 / 1.0 = 0.25 -> (2^30, -1); SRDHM(17, 2^30) = 8.5 -> 9; 9 / 2 = 4.5 -> 5.
    # Single rounding of 17 * 0.25 = 4.25 would give 4; with z_out = -3 the output is 2.
    m, s = requant_params(0.5, np.array([0.5], np.float32), 1.0)
    assert (int(m[0]), int(s[0])) == (2 ** 30, -1)
    args = (np.array([[3, -2]], np.int8), np.array([[2, -1]], np.int8), np.array([10], np.int32),
            m, s, 1, -3, -128, 127)
    assert fully_connected_reference(*args).tolist() == [[2]]
    assert run_kernel(*args).tolist() == [[2]]


def test_saturation_and_extreme_zero_points_by_hand():
    # z_in = -128, x = 127: x - z = 255; w = 127 over 4 inputs: acc = 4 * 127 * 255 = 129540.
    # M = 1/64 -> 129540 / 64 = 2024.06 -> saturates at 127 (z_out = 0).
    m, s = requant_params(1.0, np.array([1.0 / 64], np.float32), 1.0)
    x = np.full((1, 4), 127, np.int8)
    w = np.full((1, 4), 127, np.int8)
    b = np.zeros(1, np.int32)
    assert fully_connected_reference(x, w, b, m, s, -128, 0, -128, 127).tolist() == [[127]]
    # negated weights: -2024 -> -128 even with z_out = 127; z_in = 127 and x = -128 give
    # x - z = -255, with weights -127: +2024 -> 127 even with z_out = -128.
    assert fully_connected_reference(x, -w, b, m, s, -128, 127, -128, 127).tolist() == [[-128]]
    x2 = np.full((1, 4), -128, np.int8)
    assert fully_connected_reference(x2, -w, b, m, s, 127, -128, -128, 127).tolist() == [[127]]
    # x = z_in: acc = 0 and the output is z_out = -128 exactly
    assert fully_connected_reference(x2, w, b, m, s, -128, -128, -128, 127).tolist() == [[-128]]
    # unsaturated at extreme zero points: x - z = -128 - 127 = -255 on one weight of 1,
    # M = 1/64 -> (2^30, -5): SRDHM(-255, 2^30) = -127.5 -> -127; RDBPOT(-127, 5) = -3.97
    # -> -4; plus z_out = 127: 123
    w1 = np.array([[1, 0, 0, 0]], np.int8)
    assert fully_connected_reference(x2, w1, b, m, s, 127, 127, -128, 127).tolist() == [[123]]


def test_per_channel_by_hand():
    # Two channels, x = [2, 4] (z_in = 0); w0 = [1, 1] with s_w 0.5, w1 = [3, -1] with
    # s_w 0.25; s_in = s_out = 1. acc = [6, 2]; M = [0.5, 0.25] -> (2^30, 0), (2^30, -1).
    # channel 0: SRDHM(6, 2^30) = 3 exactly.
    ws = np.array([0.5, 0.25], np.float32)
    m, s = requant_params(1.0, ws, 1.0)
    assert m.tolist() == [2 ** 30, 2 ** 30] and s.tolist() == [0, -1]
    x = np.array([[2, 4]], np.int8)
    w = np.array([[1, 1], [3, -1]], np.int8)
    # channel 1: SRDHM(2, 2^30) = (2^31 + 2^30) >> 31 = 1; RDBPOT(1, 1) = 0.5 -> 1.
    out = fully_connected_reference(x, w, np.zeros(2, np.int32), m, s, 0, 0, -128, 127)
    assert out.tolist() == [[3, 1]]


@pytest.mark.parametrize("fused, scale, zp, expected", [
    ("none", 0.1, 5, (-128, 127)),
    ("relu", 0.1, -128, (-128, 127)),
    ("relu", 0.1, 10, (10, 127)),
    ("relu6", 0.05, -100, (-100, 20)),   # 6 / 0.05 = 120
    ("relu6", 4.0, 0, (0, 2)),           # 6 / 4 = 1.5: tie away from zero -> 2
    ("relu6", 12.0, -3, (-3, -2)),       # 6 / 12 = 0.5 -> 1
    ("relu6", 0.01, 0, (0, 127)),        # 600 LSBs: capped at 127
])
def test_activation_bounds_hand_values(fused, scale, zp, expected):
    assert activation_bounds(fused, scale, zp) == expected


def test_choose_quant_params_hand_values():
    scale, zp = choose_quant_params(0.0, 2.55)    # 2.55 / 255 = 0.01; 0.0 -> -128
    assert scale == np.float32(0.01) and zp == -128
    # scale 2/255; both ends give zero point -0.5 (1 / scale = 127.5 exactly in double),
    # the max end has the smaller error; -0.5 rounds away from zero to -1
    assert choose_quant_params(-1.0, 1.0) == (np.float32(2 / 255), -1)
    assert choose_quant_params(0.5, 3.0)[1] == -128   # range widened to include 0


def test_quantize_rounds_half_away_and_clamps():
    q = quantize(np.array([0.25, -0.25, 0.75, 100.0, -100.0]), 0.5, 3)
    assert q.tolist() == [4, 2, 5, 127, -128]     # 0.5 -> 1, -0.5 -> -1, 1.5 -> 2
    x = dequantize(np.arange(-128, 128, dtype=np.int8), np.float32(0.0137), -7)
    assert np.array_equal(quantize(x, np.float32(0.0137), -7), np.arange(-128, 128))


# ------------------------------------------------------------------ kernels against the reference
def random_layer(rng, n_in, n_out, big_multiplier=False):
    w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    b = rng.integers(INT32_MIN, INT32_MAX, n_out, endpoint=True).astype(np.int32) \
        if big_multiplier else rng.integers(-50_000, 50_000, n_out).astype(np.int32)
    hi = 2.0 if big_multiplier else -2.0
    ws = np.exp(rng.uniform(-8.0, hi, n_out)).astype(np.float32)
    s_in, s_out = np.float32(np.exp(rng.uniform(-6, 0))), np.float32(np.exp(rng.uniform(-6, 0)))
    m, s = requant_params(s_in, ws, s_out)
    z_in, z_out = (int(z) for z in rng.integers(-128, 128, 2))
    lo, hi = activation_bounds(str(rng.choice(["none", "relu", "relu6"])), s_out, z_out)
    return w, b, m, s, z_in, z_out, lo, hi


@pytest.mark.parametrize("big_multiplier", [False, True])
def test_kernel_matches_reference(big_multiplier):
    # big_multiplier: M up to ~e^8, left shifts, int32-extreme biases (wrapping accumulators).
    rng = np.random.default_rng(7)
    for _ in range(60):
        n_in, n_out, n_probe = (int(n) for n in rng.integers(1, 70, 3))
        w, b, m, s, z_in, z_out, lo, hi = random_layer(rng, n_in, n_out, big_multiplier)
        x = rng.integers(-128, 128, (n_probe, n_in)).astype(np.int8)
        ref = fully_connected_reference(x, w, b, m, s, z_in, z_out, lo, hi)
        assert np.array_equal(run_kernel(x, w, b, m, s, z_in, z_out, lo, hi), ref)


def test_requantize_kernel_matches_reference_on_ties_and_extremes():
    rng = np.random.default_rng(3)
    acc = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 20_000, endpoint=True),
                          np.arange(-4096, 4096), [INT32_MIN, INT32_MAX, 0, -1, 1]])
    for mult, shift in [(2 ** 30, -1), (2 ** 30, -12), (2 ** 30, 3), (1_518_500_250, -7),
                        (INT32_MAX, -31), (2 ** 30, 0), (0, 0)]:
        ref = multiply_by_quantized_multiplier(acc, mult, shift)
        got = np.array([requantize(int(a), mult, shift) for a in acc])
        assert np.array_equal(got, ref), (mult, shift)


def test_perturbed_kernel_matches_reference_and_zero_perturbation():
    rng = np.random.default_rng(11)
    n_in, n_out, n_probe = 13, 7, 9
    w, b, m, s, z_in, z_out, lo, hi = random_layer(rng, n_in, n_out)
    w[0, :3] = [127, -127, 120]                         # perturbations that must clamp
    b[1] = INT32_MAX - 5
    x = rng.integers(-128, 128, (n_probe, n_in)).astype(np.int8)
    dw = rng.integers(-254, 255, (n_probe, n_out, n_in)).astype(np.int16)
    db = rng.integers(-100, 101, (n_probe, n_out)).astype(np.int64)
    args = (m, s, np.int32(z_in), np.int32(z_out), np.int32(lo), np.int32(hi))
    out = np.empty((n_probe, n_out), np.int8)
    fully_connected_perturbed(x, w, b, dw, db, *args, out)
    ref = fully_connected_perturbed_reference(x, w, b, dw, db, m, s, z_in, z_out, lo, hi)
    assert np.array_equal(out, ref)
    fully_connected_perturbed(x, w, b, np.zeros_like(dw), np.zeros_like(db), *args, out)
    assert np.array_equal(out, fully_connected_reference(x, w, b, m, s, z_in, z_out, lo, hi))


def test_seeded_rademacher_kernel_matches_its_twin():
    # Directions drawn in the kernel from (key, probe, index) equal the NumPy twin's,
    # which equal devsim.crng.sign_np at index probe * d + i: a trainer regenerates them.
    rng = np.random.default_rng(12)
    n_out, n_in, n_probe, first = 5, 150, 6, 1_000_003   # rows straddle 64-bit words
    w, b, m, s, z_in, z_out, lo, hi = random_layer(rng, n_in, n_out)
    w[0, :4] = [127, -127, 126, -126]                      # clamping at mu_w = 3
    b[0] = INT32_MAX - 50                                  # saturating at mu_b = 100
    x = rng.integers(-128, 128, (n_probe, n_in)).astype(np.int8)
    key = crng.stream_key_np(31, 4)
    lsb = rademacher_lsb(key, first, n_probe, (n_out, n_in), 3, 100)
    d = n_out * n_in + n_out
    assert lsb[2, 7] == 3 * crng.sign_np(key, [(first + 2) * d + 7])[0]
    assert lsb[4, d - 1] == 100 * crng.sign_np(key, [(first + 4) * d + d - 1])[0]
    out = np.empty((n_probe, n_out), np.int8)
    fully_connected_rademacher(x, w, b, key, np.int64(first), np.int64(3), np.int64(100), m, s,
                               np.int32(z_in), np.int32(z_out), np.int32(lo), np.int32(hi), out)
    dw = lsb[:, :-n_out].reshape(n_probe, n_out, n_in)
    ref = fully_connected_perturbed_reference(x, w, b, dw, lsb[:, -n_out:], m, s,
                                              z_in, z_out, lo, hi)
    assert np.array_equal(out, ref)


# ------------------------------------------------------------------ the oracle: tflite-micro
def oracle_case(rng, kind):
    """One random or adversarial single-layer case: (x, w, b, w_scales, q_in, q_out, fused)."""
    n_in, n_out = int(rng.integers(1, 49)), int(rng.integers(1, 17))
    per_channel = bool(rng.integers(2))
    w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    b = rng.integers(-30_000, 30_000, n_out).astype(np.int32)
    x = rng.integers(-128, 128, (16, n_in)).astype(np.int8)

    def scales(lo, hi, n):
        return np.exp(rng.uniform(lo, hi, n)).astype(np.float32)

    ws = scales(-9, -3, n_out if per_channel else 1)
    s_in, s_out = scales(-6, 0, 1)[0], scales(-4, 1, 1)[0]
    z_in, z_out = (int(z) for z in rng.integers(-128, 128, 2))
    if kind == "ties":        # power-of-two scales: M = 2^-k, so exact .5 ties are common
        ws = np.float32(2.0) ** rng.integers(-10, -4, len(ws)).astype(np.float32)
        s_in, s_out = np.float32(2.0) ** rng.integers(-6, 0, 2).astype(np.float32)
        b = rng.integers(-64, 64, n_out).astype(np.int32)
    elif kind == "saturation":   # outputs far beyond int8, biases at the int32 limits
        s_out = scales(-14, -10, 1)[0]
        b = rng.choice(np.array([INT32_MIN, INT32_MIN + 1, INT32_MAX - 1, INT32_MAX, 0],
                                np.int64), n_out).astype(np.int32)
        w = rng.choice(np.array([-127, 127], np.int8), (n_out, n_in))
        x = rng.choice(np.array([-128, 127], np.int8), x.shape)
    elif kind == "zero_points":  # extreme zero points
        z_in, z_out = (int(z) for z in rng.choice([-128, 127], 2))
    elif kind == "big_multiplier":  # M > 1: left shifts of the accumulator
        ws = scales(-2, 2, len(ws))
        s_in, s_out = scales(-1, 1, 1)[0], scales(-8, -5, 1)[0]
    elif kind == "relu6":     # 6 / s_out at or next to a tie (1.5, 0.5, 24.5, 120.5 LSBs)
        s_out = np.float32(rng.choice([4.0, 12.0, 6 / 24.5, 6 / 120.5, 0.05]))
        s_in = np.float32(s_out * 2.0 ** -int(rng.integers(3, 7)))
        ws = scales(-4, -1, len(ws))
    if not per_channel:
        ws = np.full(n_out, ws[0], np.float32)
    fused = "relu6" if kind == "relu6" else str(rng.choice(["none", "relu", "relu6"]))
    return x, w, b, ws, (s_in, z_in), (s_out, z_out), fused


ORACLE_CASES = {"random": 1000, "ties": 500, "saturation": 300, "zero_points": 300,
                "big_multiplier": 300, "relu6": 100}
"""2,500 single-layer models, each run on 16 input rows: 334,880 outputs with the seed used."""


def single_rounding(x, w, b, m, s, z_in, z_out, lo, hi):
    """The ``TFLITE_SINGLE_ROUNDING`` requantization (acc * m + 2^(30-e)) >> (31-e), for
    multipliers below 1: a plausible wrong model the oracle must tell apart."""
    acc = _acc32(x, w, b, z_in)
    right = 31 - s.astype(np.int64)
    y = (acc * m + (np.int64(1) << (right - 1))) >> right
    return np.clip(y + z_out, lo, hi)


def _acc32(x, w, b, z_in):
    acc = (x.astype(np.int64) - z_in) @ w.astype(np.int64).T + b
    return acc.astype(np.int32).astype(np.int64)


def test_reference_and_kernel_match_tflite_micro(tflm):
    rng = np.random.default_rng(2024)
    outputs = single_rounding_misses = 0
    for kind, n_cases in ORACLE_CASES.items():
        for case in range(n_cases):
            x, w, b, ws, q_in, q_out, fused = oracle_case(rng, kind)
            expected = tflm.run(tflm.model(x.shape[0], [(w, b, ws, q_in, q_out, fused)]), x)
            m, s = requant_params(q_in[0], ws, q_out[0])
            lo, hi = activation_bounds(fused, *q_out)
            ref = fully_connected_reference(x, w, b, m, s, q_in[1], q_out[1], lo, hi)
            assert np.array_equal(ref, expected), (kind, case)
            assert np.array_equal(run_kernel(x, w, b, m, s, q_in[1], q_out[1], lo, hi),
                                  expected), (kind, case)
            outputs += expected.size
            if kind == "ties":
                single = single_rounding(x, w, b, m, s, q_in[1], q_out[1], lo, hi)
                single_rounding_misses += np.count_nonzero(single != expected)
    assert outputs > 300_000  # 334,880 with this seed
    # The oracle distinguishes rounding modes: single rounding is off by one LSB at
    # about 0.16% of tie-heavy outputs (109 of 68,416 with this seed).
    assert single_rounding_misses > 20


def near_halves(rng, scale, n):
    """float32 inputs within one ulp of (k + 0.5) * scale: ties and near-ties of x / s."""
    halves = ((rng.integers(-200, 200, n) + 0.5) * np.float64(scale)).astype(np.float32)
    return np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                           np.nextafter(halves, np.float32(-np.inf))])


def test_quantize_matches_tflite_micro(tflm):
    # 60 models x 256 inputs: exact halves under power-of-two scales and their float32
    # neighbours; inputs whose quotient x / s rounds differently in float32 and in
    # double (TFLM divides in float32); random floats, some beyond the int8 range.
    rng = np.random.default_rng(17)
    differ = 0
    for case in range(60):
        zp = int(rng.integers(-128, 128))
        if case % 3 == 0:
            scale = np.float32(2.0 ** -int(rng.integers(1, 8)))
            x = near_halves(rng, scale, 86)[:256]
        elif case % 3 == 1:
            scale = np.float32(np.exp(rng.uniform(-6, 1)))
            x = near_halves(rng, scale, 100_000)
            in_double = round_half_away(x.astype(np.float64) / np.float64(scale))
            x = x[round_half_away(x / scale) != in_double][:256]
            differ += x.size
        else:
            scale = np.float32(np.exp(rng.uniform(-6, 1)))
            x = (rng.normal(0, 100, 256) * scale).astype(np.float32)
        x = x.reshape(1, -1)
        model = tflm.model(1, [], float_io=True, n_in=x.shape[1], q_in=(scale, zp))
        assert np.array_equal(quantize(x, scale, zp), tflm.run(model, x)), case
    assert differ > 1000   # float32-versus-double cases exercised (5,120 with this seed)


def test_quantized_network_is_the_tflm_graph(tflm):
    # float digits-like data -> QUANTIZE -> FC(relu) -> FC(relu) -> FC -> DEQUANTIZE in TFLM,
    # against a devsim Network whose layers are the post-training-quantized MCU devices.
    rng = np.random.default_rng(5)
    widths = [20, 16, 12, 5]
    ws = [rng.normal(0, 1 / np.sqrt(n), (m, n)) for n, m in zip(widths[:-1], widths[1:])]
    bs = [rng.normal(0, 0.1, m) for m in widths[1:]]
    acts = ["relu", "relu", "identity"]
    x = rng.uniform(0.0, 1.0, (64, widths[0]))
    layers = post_training_quantize(ws, bs, acts, x[:32], MCUParams(per_channel=True))
    net = Network(NetworkParams(layers=tuple(
        LayerParams(units=m, activation=ReLU() if a == "relu" else Identity())
        for m, a in zip(widths[1:], acts))), widths[0],
        np.random.default_rng(0), np.random.default_rng(1))
    net.devices = layers
    ours = net.run(x).outputs
    model = tflm.model(x.shape[0], [(d.w_q, d.b_q, d.weight_scales, d.input_q, d.output_q,
                                     d.fused_activation) for d in layers], float_io=True)
    theirs = tflm.run(model, x.astype(np.float32))
    q_out = layers[-1].output_q
    assert np.array_equal(quantize(ours, *q_out), quantize(theirs, *q_out))
    assert np.allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(ours).max())
    # and it is a faithful int8 model: close to the float network it came from
    h = x
    for w, b, a in zip(ws, bs, acts):
        h = h @ w.T + b
        h = np.maximum(h, 0) if a == "relu" else h
    assert np.abs(ours - h).max() < 0.1 * np.abs(h).max()


def test_configured_mcu_network_with_float_relu_is_the_fused_tflm_graph(tflm):
    # A Network built from config (device: mcu, per-tensor weights, no fused clamp,
    # static activation range) with float ReLUs between layers, after a write through
    # the Hardware interface, against TFLM running the same int8 tensors with RELU fused.
    params = NetworkParams(
        layers=(LayerParams(units=24, activation=ReLU()), LayerParams(units=24, activation=ReLU()),
                LayerParams(units=4, activation=Identity())),
        device=MCUParams(per_channel=False, activation_range=(-3.0, 5.0)))
    net = Network(params, 10, np.random.default_rng(2), np.random.default_rng(3))
    hw = Bench(net, "mse").chip
    rng = np.random.default_rng(4)
    hw.write(rng.normal(0, 0.05, hw.n_params))
    x = rng.uniform(-3, 3, (128, 10))
    ours = net.run(x).outputs
    fused = ["relu", "relu", "none"]
    model = tflm.model(x.shape[0], [(d.w_q, d.b_q, d.weight_scales, d.input_q, d.output_q, f)
                                    for d, f in zip(net.devices, fused)], float_io=True)
    theirs = tflm.run(model, x.astype(np.float32))
    q_out = net.devices[-1].output_q
    assert np.array_equal(quantize(ours, *q_out), quantize(theirs, *q_out))
    assert len(np.unique(quantize(ours, *q_out))) > 20      # not a saturated, trivial output


def test_hardware_costs_are_losses_of_dequantized_outputs():
    rng = np.random.default_rng(8)
    ws, bs = [rng.normal(0, 0.5, (6, 4)), rng.normal(0, 0.5, (3, 6))], [np.zeros(6), np.zeros(3)]
    x, y = rng.uniform(0, 1, (10, 4)), rng.uniform(0, 1, (10, 3))
    layers = post_training_quantize(ws, bs, ["relu", "identity"], x)
    net = Network(NetworkParams(layers=(LayerParams(units=6, activation=ReLU()),
                                        LayerParams(units=3, activation=Identity()))),
                  4, np.random.default_rng(0), np.random.default_rng(1))
    net.devices = layers
    bench = Bench(net, "mse")
    hw = bench.chip
    y_q = layers[1].forward_q(layers[0].forward_q(layers[0].quantize_input(x)))
    out = layers[1].dequantize_output(y_q)
    assert np.array_equal(hw.cost(x, y), mse(out, y))
    assert bench.meter()["time_s"] > 0 and hw.steps == 10


# ------------------------------------------------------------------ the device contract
@pytest.fixture
def layer():
    rng = np.random.default_rng(9)
    return MCUParams(activation_range=(-2.0, 2.0)).build(
        rng.normal(0, 0.3, (6, 10)), rng.normal(0, 0.1, 6), rng)


def test_forward_is_dequantized_kernel_output(layer):
    x = np.random.default_rng(1).uniform(-2, 2, (17, 10))
    y = layer.forward(x)
    y_q = fully_connected_reference(layer.quantize_input(x), layer.w_q, layer.b_q,
                                    layer.multiplier, layer.shift, layer.input_q.zero_point,
                                    layer.output_q.zero_point, layer.act_min, layer.act_max)
    assert y.shape == (17, 6) and np.array_equal(y, layer.dequantize_output(y_q))
    assert np.array_equal(layer.forward(x), y)           # deterministic


def test_float_perturbations_land_as_whole_lsbs(layer):
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, (5, 10))
    k = rng.integers(-3, 4, (5, layer.n_params))
    via_float = layer.forward(x, weight_perturbation=k * layer.param_lsb)
    assert np.array_equal(via_float, layer.dequantize_output(
        layer.forward_q(layer.quantize_input(x), weight_lsb=k)))
    # zero perturbation is the plain forward
    assert np.array_equal(layer.forward(x, weight_perturbation=np.zeros((5, layer.n_params))),
                          layer.forward(x))
    # node perturbation: k LSBs added to the int8 output, clamped to the fused range
    kn = rng.integers(-300, 300, (5, 6))
    y_q = layer.forward_q(layer.quantize_input(x))
    expected = np.clip(y_q.astype(int) + kn, layer.act_min, layer.act_max)
    got = layer.forward(x, node_perturbation=kn * layer.output_lsb)
    assert np.array_equal(quantize(got, *layer.output_q), expected)


def test_perturbed_forward_equals_writing_then_forward(layer):
    rng = np.random.default_rng(4)
    x_q = rng.integers(-128, 128, (1, 10)).astype(np.int8)
    k = rng.integers(-200, 200, (1, layer.n_params))
    perturbed = layer.forward_q(x_q, weight_lsb=k)
    layer.write_q(k[0])
    assert np.array_equal(layer.forward_q(x_q), perturbed)


def test_seeded_perturbation_equals_passed_perturbation(layer):
    x_q = np.random.default_rng(6).integers(-128, 128, (4, 10)).astype(np.int8)
    key = crng.stream_key_np(5, 1)
    passed = rademacher_lsb(key, 17, 4, (6, 10), 2, 50)
    assert np.array_equal(layer.forward_q_rademacher(x_q, key, 17, 2, 50),
                          layer.forward_q(x_q, weight_lsb=passed))
    assert layer.meter.reads == 8
    with pytest.raises(ValueError, match="mu_weight"):
        layer.forward_q_rademacher(x_q, key, 0, 255, 1)


def test_write_rounds_to_lsbs_and_clamps(layer):
    w0, b0 = layer.w_q.copy(), layer.b_q.copy()
    k = np.zeros(layer.n_params)
    k[0], k[1], k[60] = 2.4, -300.0, 7.5     # 7.5 rounds half to even -> 8
    layer.write(k * layer.param_lsb)
    assert layer.w_q[0, 0] == w0[0, 0] + 2
    assert layer.w_q[0, 1] == -127
    assert layer.b_q[0] == b0[0] + 8
    assert layer.meter.pulses == 3 - int(w0[0, 1] == -127)
    flat = layer.read()
    assert np.array_equal(flat[:60].reshape(6, 10),
                          layer.w_q * layer.weight_scales.astype(np.float64)[:, None])
    assert np.array_equal(flat[60:], layer.b_q * layer.bias_lsb)


def test_meter_counts_macs_as_core_cycles(layer):
    core = CORES["cortex-m4"]
    layer.forward(np.zeros((7, 10)))
    macs = 7 * 10 * 6
    assert layer.meter.reads == 7
    assert layer.meter.time_s == pytest.approx(macs * core.cycles_per_mac / core.clock_hz)
    assert layer.meter.energy_j == pytest.approx(macs * core.cycles_per_mac
                                                 * core.energy_per_cycle_j, rel=1e-12, abs=0)


def test_params_overrides_and_rejections():
    p = MCUParams(core="cortex-m7", clock_hz=400e6)
    assert p.timing.clock_hz == 400e6
    assert p.timing.cycles_per_mac == CORES["cortex-m7"].cycles_per_mac
    layer = p.build(np.ones((2, 3)), np.zeros(2), np.random.default_rng(0))
    layer.forward(np.zeros((5, 3)))
    assert layer.meter.time_s == 5 * 6 * 1.0 / 400e6
    assert layer.meter.energy_j == 0.0          # the M7 entry gives no energy figure
    for bad in [dict(core="cortex-m0"), dict(clock_hz=0.0), dict(cycles_per_mac=-1.0),
                dict(fused_activation="sigmoid"), dict(activation_range=(1.0, 2.0)),
                dict(activation_range=(2.0, -2.0)), dict(sram_kib=0),
                dict(activation_range=(-math.inf, 1.0))]:
        with pytest.raises(ParamError):
            MCUParams(**bad)


def test_preset_loads_and_round_trips():
    params = from_data(DeviceParams, yaml.safe_load(PRESET.read_text()), str(PRESET))
    assert isinstance(params, MCUParams) and params.timing.clock_hz == 100e6
    assert params.sram_kib == 128 and params.activation_range == (-4.0, 4.0)
    assert from_data(DeviceParams, params.to_dict()) == params


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="fused_activation"):
        from_data(DeviceParams, {"type": "mcu", "fused_activation": "tanh"})
    with pytest.raises(ConfigError, match="did you mean 'clock_hz'"):
        from_data(DeviceParams, {"type": "mcu", "clock_hz_": 1e6})


def test_post_training_quantize_chains_and_rejects_sigmoid():
    rng = np.random.default_rng(0)
    ws, bs = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [np.zeros(4), np.zeros(2)]
    layers = post_training_quantize(ws, bs, ["relu", "identity"], rng.uniform(size=(10, 3)))
    assert layers[0].output_q == layers[1].input_q
    assert layers[0].fused_activation == "relu" and layers[1].fused_activation == "none"
    with pytest.raises(ValueError, match="sigmoid"):
        post_training_quantize(ws, bs, ["sigmoid", "identity"], rng.uniform(size=(10, 3)))


def test_calibration_ranges_are_the_float_networks():
    # Each layer's output range is that of the float network on the calibration rows,
    # after the layer's ReLU, and feeds the next layer; the hidden values stay below 1.
    rng = np.random.default_rng(4)
    ws = [rng.uniform(-0.3, 0.3, (4, 3)), rng.uniform(-1, 1, (2, 4))]
    bs = [np.array([0.1, -0.1, 0.0, 0.05]), np.array([0.2, -0.3])]
    x = rng.uniform(size=(20, 3))
    hidden = np.maximum(x @ ws[0].T + bs[0], 0.0)
    out = hidden @ ws[1].T + bs[1]
    assert 0 < hidden.max() < 1 and (hidden == 0).any()
    layers = post_training_quantize(ws, bs, ["relu", "identity"], x)
    assert [layer.output_q for layer in layers] == [
        QuantParams.from_range(hidden.min(), hidden.max()),
        QuantParams.from_range(out.min(), out.max())]


def test_calibration_range_of_a_depthwise_layer_by_hand():
    # 4x4 maps of 2 channels, 3x3 'valid' kernels: out[i, j, c] = b[c] +
    # sum_ab x[i + a, j + b, c] w[c, 3 a + b] (maps flat in HWC order)
    from devsim.layers import DepthwiseConv2DParams
    shape = DepthwiseConv2DParams(kernel=(3, 3), padding="valid",
                                  activation="identity").shape((4, 4, 2))
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(2, 9)), np.array([0.5, -0.5])
    x = rng.uniform(size=(6, 32))
    maps = x.reshape(6, 4, 4, 2)
    out = np.array([[[[b[c] + sum(maps[t, i + a, j + k, c] * w[c, 3 * a + k]
                                  for a in range(3) for k in range(3))
                       for c in range(2)] for j in range(2)] for i in range(2)]
                    for t in range(6)])
    (layer,) = post_training_quantize([w], [b], ["identity"], x, layers=[shape])
    assert layer.output_q == QuantParams.from_range(out.min(), out.max())

def test_quant_params_from_range_represent_zero():
    q = QuantParams.from_range(-0.3, 1.7)
    assert dequantize(np.array([q.zero_point], np.int8), *q)[0] == 0.0

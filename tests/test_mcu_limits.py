"""int8 MCU arithmetic at its limits: the largest requantization multiplier, ranges that
must be widened to hold 0, and the ideal-error bound, sound and tight where outputs clamp
(devices/mcu.py, devices/mcu_quant.py)."""
import numpy as np
import pytest

from devices.mcu import MCUParams
from devices.mcu_quant import (INT32_MAX, activation_bounds, choose_quant_params, dequantize,
                               quantize_multiplier, symmetric_scales)
from devsim.device import split_flat


def test_multipliers_up_to_shift_30_are_accepted_and_larger_refused():
    assert quantize_multiplier(0.75 * 2.0 ** 30) == (round(0.75 * 2 ** 31), 30)
    for real in (2.0 ** 30, 0.99999999999 * 2.0 ** 31):   # shift 31 (the second rounds up)
        with pytest.raises(ValueError, match="too large"):
            quantize_multiplier(real)


@pytest.mark.parametrize("rmin, rmax, widened", [(0.5, 2.0, (0.0, 2.0)),
                                                 (-3.0, -1.0, (-3.0, 0.0)),
                                                 (0.25, 0.25, (0.0, 0.25))])
def test_a_range_without_zero_is_widened_to_hold_it(rmin, rmax, widened):
    scale, zp = choose_quant_params(rmin, rmax)
    assert (scale, zp) == choose_quant_params(*widened)
    lo, hi = widened
    assert scale == np.float32((hi - lo) / 255)
    assert zp == (-128 if lo == 0.0 else 127)


def test_ideal_error_bound_holds_and_is_tight_where_outputs_clamp():
    # An asymmetric output range (zero point far from 0) and inputs that push outputs
    # past both ends: the bound covers the error and exceeds it by at most the input
    # quantization error through the weights plus two output LSBs.
    rng = np.random.default_rng(2)
    layer = MCUParams(activation_range=(-0.5, 1.5)).build(
        rng.normal(0, 0.5, (5, 8)), rng.normal(0, 0.2, 5), rng)
    assert abs(layer.output_q.zero_point) > 30
    x = rng.uniform(-3, 3, (400, 8))
    w, b = split_flat(layer.read(), layer.shape)
    ideal = x @ w.T + b
    error = np.abs(layer.forward(x) - ideal)
    bound = layer.ideal_error_bound(x)
    assert np.all(error <= bound)
    x_err = np.abs(x - dequantize(layer.quantize_input(x), *layer.input_q))
    s_out = float(np.float32(layer.output_q.scale))
    assert ((ideal < -0.6) | (ideal > 1.6)).sum() > 100           # clamped both ways
    assert np.all(bound <= error + x_err @ np.abs(w).T + 2 * s_out)


def test_the_largest_q31_mantissa_is_accepted():
    # (2^31 - 1) / 2^31 has mantissa INT32_MAX at shift 0: the largest valid multiplier
    assert quantize_multiplier((2 ** 31 - 1) / 2 ** 31) == (INT32_MAX, 0)


def test_an_unknown_fused_activation_is_refused():
    with pytest.raises(ValueError, match="fused activation must be one of"):
        activation_bounds("tanh", 0.1, 0)


@pytest.mark.parametrize("rmin, rmax, zero_point", [
    # the zero point from min and from max are equal but for rounding, straddling a
    # tie; TFLite takes the end with the smaller error |q_end| + |r_end / s|
    (-14.800884804131588, 5.436249914654229, 59),    # errors 314.5, 195.5: max (58.5000...1)
    (-0.03755183893649306, 2.6983678550080015, -125),  # errors 131.5, 378.5: min (-124.5)
])
def test_the_zero_point_comes_from_the_end_with_the_smaller_error(rmin, rmax, zero_point):
    assert choose_quant_params(rmin, rmax)[1] == zero_point


def test_a_point_range_gets_scale_one_and_zero_point_zero():
    assert choose_quant_params(0.0, 0.0) == (np.float32(1.0), 0)
    assert choose_quant_params(0.0, -0.0) == (np.float32(1.0), 0)


def test_symmetric_scales_give_an_all_zero_channel_the_range_one():
    w = np.array([[0.0, 0.0], [0.5, -0.25], [-3.0, 1.0]])
    np.testing.assert_array_equal(symmetric_scales(w, per_channel=True),
                                  np.float32([1 / 127, 0.5 / 127, 3 / 127]))
    np.testing.assert_array_equal(symmetric_scales(w, per_channel=False),
                                  np.full(3, np.float32(3 / 127)))
    np.testing.assert_array_equal(symmetric_scales(np.zeros((2, 3)), per_channel=False),
                                  np.full(2, np.float32(1 / 127)))

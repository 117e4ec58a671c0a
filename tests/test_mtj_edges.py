"""sMTJ kernels at the edges of their blocking (two devices, one device short of two
blocks, exactly two blocks) against their NumPy twins, and the p-bit neuron's derivative
against its equilibrium mean (devices/mtj.py)."""
import numpy as np
import pytest

from devices import mtj


def spread_array(n, seed):
    params = mtj.MTJParams(delta_dtod=0.1, ic0_dtod=0.1, offset_dtod=2e-6)
    return params.build_array(n, np.random.default_rng(seed), 0.0)


@pytest.mark.parametrize("n", [2, 2 * mtj._BLOCK - 1, 2 * mtj._BLOCK])
def test_drive_and_hold_kernels_match_their_twins(n):
    a, b = spread_array(n, 3), spread_array(n, 3)
    current = np.random.default_rng(4).normal(0.0, 30e-6, (20, n))
    ref = np.empty((20, n))
    switches = mtj.telegraph_drive_np(b.state, current, b.offset, b.ic0, b.delta,
                                      b.log_rate0, 2, b.key, 0, ref)
    state = a.state.copy()
    out = np.empty_like(ref)                    # the parallel kernel, block by block
    assert mtj.telegraph_drive(state, current, a.offset, a.ic0, a.delta, a.log_rate0, 2,
                               a.key, 0, out) == switches
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(state, b.state)
    p_plus, p_minus = b.leave_probabilities(5e-6)
    ref = np.empty((50, n))
    mtj.telegraph_hold_np(b.state, p_plus, p_minus, b.key, 40, ref)
    a.state[:], a.samples = state, 40           # where the drive left the devices
    np.testing.assert_array_equal(a.hold(5e-6, 50), ref)        # the array picks a kernel
    np.testing.assert_array_equal(a.state, b.state)


@pytest.mark.parametrize("levels", ["binary", "bipolar"])
def test_pbit_derivative_is_the_slope_of_its_mean(levels):
    neuron = mtj.MTJNeuronParams(gain=1.7, levels=levels).build(3, np.random.default_rng(0))
    z = np.linspace(-4, 4, 41).reshape(-1, 1).repeat(3, axis=1)
    h = 1e-5
    numeric = (neuron.mean(z + h) - neuron.mean(z - h)) / (2 * h)
    np.testing.assert_allclose(neuron.derivative(z), numeric, rtol=1e-7, atol=1e-10)
    top = 0.5 * 1.7 if levels == "bipolar" else 0.25 * 1.7       # the slope at z = 0
    assert neuron.derivative(np.zeros((1, 3)))[0, 0] == pytest.approx(top, rel=1e-15)

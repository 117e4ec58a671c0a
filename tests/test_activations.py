"""Activations: closed forms, dtype kept, saturation without warnings."""
import warnings

import numpy as np

from devsim.activations import Sigmoid, logistic_inplace, logistic_np


def test_sigmoid_matches_closed_form_keeps_dtype_and_saturates_exactly():
    act = Sigmoid().build(5, np.random.default_rng(0))
    z = np.random.default_rng(1).normal(0, 4, (50, 5))
    np.testing.assert_allclose(act(z), 0.5 * (1 + np.tanh(z / 2)), rtol=1e-15, atol=1e-16)
    z32 = z.astype(np.float32)
    out32 = act(z32)
    assert out32.dtype == np.float32
    # float32 kernel: within 2 ulp (2.4e-7) of the float64 logistic of the same inputs
    np.testing.assert_allclose(out32, act(z32.astype(np.float64)), rtol=2.4e-7, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp(-z) overflowing must stay silent
        far = act(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]]))
    assert 0.0 <= far[0, 0] < 1e-300 and far[0, 2] == 0.5 and far[0, 4] == 1.0
    np.testing.assert_allclose(far[0, [1, 3]], [np.exp(-100.0), 1.0], rtol=1e-15)
    far32 = act(np.array([[-1e4, 1e4]], dtype=np.float32))  # clamped at |z| = 87
    assert 0.0 < far32[0, 0] < 1e-37 and far32[0, 1] == 1.0
    np.testing.assert_allclose(act.derivative(z), act(z) * (1 - act(z)), rtol=1e-15)


def test_sigmoid_kernel_within_two_ulp_of_libm():
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0, 10, 20000), [0.0, 1e-300, -36.7, 36.7, 690.0, -690.0]])
    out = z.copy()
    logistic_inplace(out, np.empty(out.size))
    np.testing.assert_allclose(out, logistic_np(z), rtol=4.5e-16, atol=0)
    far = np.array([-800.0, 800.0])  # clamped at |z| = 700: 1e-304 and 1, no overflow
    logistic_inplace(far, np.empty(far.size))
    assert 0 < far[0] < 1e-300 and far[1] == 1.0


def test_in_place_equals_call_and_reuses_the_array():
    from devsim.activations import Identity, LeakyReLU, ReLU, Tanh
    rng = np.random.default_rng(4)
    for params in (Sigmoid(), Tanh(), ReLU(), Identity(), LeakyReLU(slope=0.1)):
        act = params.build(6, rng)
        for dtype in (np.float64, np.float32):
            z = rng.normal(0, 3, (7, 6)).astype(dtype)
            expected = act(z)
            got = act.in_place(z)
            np.testing.assert_array_equal(got, expected)
            if params.kind != "leaky_relu":  # no in-place form: a new array, z untouched
                assert np.shares_memory(got, z)
    strided = np.random.default_rng(5).normal(size=(6, 8))[:, ::2]  # not contiguous
    np.testing.assert_array_equal(Sigmoid().build(4, rng).in_place(strided),
                                  Sigmoid().build(4, rng)(strided))


def test_network_run_same_outputs_recorded_or_not():
    from devsim.network import LayerParams, Network, NetworkParams
    from devsim.activations import Tanh
    params = NetworkParams(layers=(LayerParams(units=9, activation=Tanh()),
                                   LayerParams(units=3)))
    net = Network(params, 5, np.random.default_rng(0), np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(11, 5))
    recorded = net.run(x, record=True)
    np.testing.assert_array_equal(net.run(x).outputs, recorded.outputs)
    # the recorded pre-activations are not overwritten by the activation
    np.testing.assert_array_equal(np.tanh(recorded.preactivations[0]), recorded.inputs[1])

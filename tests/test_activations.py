"""Activations: closed forms, dtype kept, saturation without warnings."""
import warnings

import numpy as np

from devsim.activations import Sigmoid


def test_sigmoid_matches_closed_form_keeps_dtype_and_saturates_exactly():
    act = Sigmoid().build(5, np.random.default_rng(0))
    z = np.random.default_rng(1).normal(0, 4, (50, 5))
    np.testing.assert_allclose(act(z), 0.5 * (1 + np.tanh(z / 2)), rtol=1e-15, atol=1e-16)
    z32 = z.astype(np.float32)
    out32 = act(z32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, act(z32.astype(np.float64)), rtol=2e-7, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp(-z) overflowing must stay silent
        far = act(np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]]))
    np.testing.assert_array_equal(far[0, [0, 2, 4]], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(far[0, [1, 3]], [np.exp(-100.0), 1.0], rtol=1e-15)
    np.testing.assert_allclose(act.derivative(z), act(z) * (1 - act(z)), rtol=1e-15)

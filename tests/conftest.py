"""Shared fixtures: small networks on ideal hardware, the tflite-micro oracle."""
import numpy as np
import pytest

from devsim.activations import Identity, Sigmoid, Tanh
from devsim.hardware import Hardware
from devsim.network import LayerParams, Network, NetworkParams


def make_hardware(widths=(5, 4, 3), activations=None, loss="mse", seed=0, **network):
    """Ideal hardware with layer widths (n_in, h1, ..., n_out)."""
    acts = activations or [Tanh()] * (len(widths) - 2) + [Sigmoid()]
    layers = tuple(LayerParams(units=w, activation=a) for w, a in zip(widths[1:], acts))
    rng = np.random.default_rng(seed)
    net = Network(NetworkParams(layers=layers, loss=loss, **network), widths[0], rng, rng)
    return Hardware(net, loss)


@pytest.fixture(scope="module")
def tflm():
    """The tflite-micro oracle (:mod:`tflm_oracle`); skips where the wheel is missing."""
    pytest.importorskip("tflite_micro", reason="tflite-micro (the test extra; wheels for "
                        "Linux x86_64 only) is not installed")
    from tflm_oracle import TFLM
    return TFLM()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


__all__ = ["make_hardware", "Identity", "Sigmoid", "Tanh"]

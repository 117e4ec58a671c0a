"""Shared fixtures: small networks on ideal hardware."""
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


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


__all__ = ["make_hardware", "Identity", "Sigmoid", "Tanh"]


def pytest_terminal_summary(terminalreporter):
    """What the contract tables covered (rows are found by discovery: plugins appear here
    when installed), so that a run shows which models were checked."""
    from contracts import COVERED
    if not COVERED:
        return
    terminalreporter.section("contract tables")
    for name, ids in COVERED.items():
        listed = ", ".join(ids) if len(ids) <= 40 else f"{', '.join(ids[:8])}, ..."
        terminalreporter.write_line(f"{name} ({len(ids)} rows): {listed}")

"""Shared fixtures: small networks on ideal hardware, the tflite-micro oracle."""
import weakref

import numpy as np
import pytest

from devsim.activations import Identity, Sigmoid, Tanh
from devsim.bench import Bench
from devsim.network import LayerParams, Network, NetworkParams
from trainer.base import Setup, Timescales
from trainer.executors import Plain


_BENCHES = weakref.WeakKeyDictionary()  # chip -> the bench it was made on


def make_bench(widths=(5, 4, 3), activations=None, loss="mse", seed=0, **network):
    """An ideal network with layer widths (n_in, h1, ..., n_out) on the bench; its chip
    is ``.chip``."""
    acts = activations or [Tanh()] * (len(widths) - 2) + [Sigmoid()]
    layers = tuple(LayerParams(units=w, activation=a) for w, a in zip(widths[1:], acts))
    rng = np.random.default_rng(seed)
    net = Network(NetworkParams(layers=layers, loss=loss, **network), widths[0], rng, rng)
    return lab(chip_of(net, loss))


def chip_of(network, loss="mse"):
    """The chip of ``network`` put on a bench (:func:`lab` finds the bench)."""
    bench = Bench(network, loss)
    _BENCHES[bench.chip] = bench
    return bench.chip


def lab(chip):
    """The bench a test chip was made on (tests are the experimenter)."""
    return _BENCHES[chip]


def make_hardware(widths=(5, 4, 3), activations=None, loss="mse", seed=0, **network):
    """The chip (controller side) of :func:`make_bench`'s network."""
    return make_bench(widths, activations, loss, seed, **network).chip


def build_estimator(params, chip, seed=0, bench=None, **timescales):
    """``params.build`` with the estimator's stream from ``seed``."""
    return params.build(Setup(chip, np.random.default_rng(seed), Timescales(**timescales),
                              bench))


def estimate(estimator, chip, window):
    """One window of ``estimator`` on ``chip`` by the plain ask/tell loop."""
    return Plain(chip).window(estimator, window)


def run_window(estimator, chip, window):
    """The requests of one window in order, their results, and the estimate."""
    estimator.start(window)
    requests, results = [], []
    while (request := estimator.ask()) is not None:
        requests.append(request)
        results.append(chip.run(request))
        estimator.tell(results[-1])
    return requests, results, estimator.result()


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


__all__ = ["make_bench", "make_hardware", "chip_of", "lab", "build_estimator", "estimate", "Identity",
           "Sigmoid", "Tanh"]


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

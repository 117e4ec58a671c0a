"""Compiled crossbar passes on deeper networks with nonzero biases, split into several
parts, inside a work space filled with NaN: a pass equals the layer-by-layer path bit for
bit, reads only work memory it wrote first, and writes nothing past its work space
(devices/crossbar_chain.py)."""
import numpy as np
import pytest

from devices.crossbar import CrossbarParams
from devices.crossbar_chain import Chain
from devsim import blas, parallel
from devsim.activations import Identity, ReLU, Sigmoid
from devsim.network import LayerParams, Network, NetworkParams

pytestmark = pytest.mark.skipif(not blas.AVAILABLE,
                                reason="no NumPy CBLAS entry points or no sched_yield")

READ_NOISE = dict(read_noise=0.01, dac_bits=7, input_range=1.0, adc_bits=9,
                  output_range=12.0, out_noise=0.06)
COLUMN_NOISE = dict(dac_bits=7, input_range=1.0, adc_bits=9, output_range=12.0,
                    out_noise=0.06)   # a readout without read noise: no row sums


def twin_networks(widths, activations, device):
    """Two identical networks with random nonzero biases: one runs its chain."""
    layers = tuple(LayerParams(units=w, activation=a) for w, a in zip(widths[1:], activations))
    params = NetworkParams(layers=layers, device=CrossbarParams(**device))
    nets = [Network(params, widths[0], np.random.default_rng(0), np.random.default_rng(1))
            for _ in range(2)]
    delta = np.random.default_rng(2).normal(0.0, 0.2, nets[0].n_params)
    for net in nets:
        net.write(delta)
    assert nets[0]._chain is not None
    nets[1]._chain = None
    return nets


@pytest.mark.parametrize("device", [READ_NOISE, COLUMN_NOISE, {}],
                         ids=["read-noise", "column-noise", "ideal"])
@pytest.mark.parametrize("depth", [3, 4])
def test_deep_chain_in_three_parts_equals_the_layer_path_within_its_work_space(
        monkeypatch, device, depth):
    widths = (12, 9, 20, 16, 7)[:depth + 1]   # the widest layer is the second: its
    # output takes the second of the two output slots, the last before the row sums
    activations = (Sigmoid(), ReLU(), Identity(), Sigmoid())[:depth]
    chained, layered = twin_networks(widths, activations, device)
    monkeypatch.setattr(parallel, "row_threads", lambda n_rows: 3)
    rows = 2 * parallel.BLOCK_ROWS + 44        # three parts of whole blocks, the last short
    assert len(set(parallel.part_bounds(rows, 3))) == 4
    size = rows * (max(widths[:-1]) + 3 * max(widths[1:]) + 1)
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 1.5, (rows, widths[0]))
    nodes = rng.normal(0.0, 0.3, (rows, chained.n_nodes))
    for node_perturbation in (None, nodes):
        chained._chain._work = np.full(size + 1000, np.nan)          # kept: large enough
        got = chained.run(x, node_perturbation).outputs
        np.testing.assert_array_equal(got, layered.run(x, node_perturbation).outputs)
        assert np.isfinite(got).all()
        assert np.isnan(chained._chain._work[size:]).all()           # nothing past the space


def test_a_single_layer_network_runs_compiled():
    layers = (LayerParams(units=5, activation=Sigmoid()),)
    net = Network(NetworkParams(layers=layers, device=CrossbarParams(**READ_NOISE)), 4,
                  np.random.default_rng(0), np.random.default_rng(1))
    assert net._chain is not None and Chain.of(net.devices, net.activations) is not None


def test_two_chains_of_one_precision_take_turns():
    # The argument arrays are shared per precision: each chain must put its own layers
    # back when the other ran last.
    a_chained, a_layered = twin_networks((12, 20, 7), (Sigmoid(), Sigmoid()), READ_NOISE)
    b_chained, b_layered = twin_networks((12, 9, 5, 7), (ReLU(), Sigmoid(), Identity()),
                                         READ_NOISE)
    x = np.random.default_rng(4).uniform(-0.5, 1.5, (40, 12))
    for _ in range(2):
        for chained, layered in ((a_chained, a_layered), (b_chained, b_layered)):
            np.testing.assert_array_equal(chained.run(x).outputs, layered.run(x).outputs)

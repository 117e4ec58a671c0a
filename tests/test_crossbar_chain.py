"""Compiled crossbar passes (devices.crossbar_chain) against the layer-by-layer path,
NumPy's BLAS called from compiled code, and the compiled activations."""
import pickle

import numba
import numpy as np
import pytest

from devices.crossbar import CrossbarParams
from devices.crossbar_chain import Chain
from devsim import blas
from devsim.activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from devsim.network import LayerParams, Network, NetworkParams

pytestmark = pytest.mark.skipif(not blas.AVAILABLE,
                                reason="no NumPy CBLAS entry points or no sched_yield")

NOISY = dict(read_noise=0.01, dac_bits=7, input_range=1.0, adc_bits=9, output_range=12.0,
             out_noise=0.06)


def networks(widths=(12, 20, 7), activation=Sigmoid(), **device):
    """Two identical networks (same seeds): one with its compiled chain, one without."""
    layers = tuple(LayerParams(units=w, activation=activation) for w in widths[1:])
    params = NetworkParams(layers=layers, device=CrossbarParams(**device))
    built = [Network(params, widths[0], np.random.default_rng(0), np.random.default_rng(1))
             for _ in range(2)]
    assert built[0]._chain is not None
    built[1]._chain = None
    return built


def assert_same_passes(chained, layered, batch, node=True, calls=2):
    """Successive passes (fresh noise each) agree bit for bit, with and without node
    perturbations, and meter the same reads."""
    rng = np.random.default_rng(batch)
    x = rng.random((batch, chained.shapes[0][1])) * 2 - 0.5
    nodes = rng.standard_normal((batch, chained.n_nodes)) * 0.3 if node else None
    for _ in range(calls):
        np.testing.assert_array_equal(chained.run(x).outputs, layered.run(x).outputs)
        np.testing.assert_array_equal(chained.run(x, nodes).outputs,
                                      layered.run(x, nodes).outputs)
    assert [d.meter.reads for d in chained.devices] == [d.meter.reads for d in layered.devices]


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 2, 33, 64, 300])
def test_noisy_chain_equals_layer_by_layer_path(precision, batch):
    assert_same_passes(*networks(precision=precision, **NOISY), batch)


@pytest.mark.parametrize("device", [
    dict(),  # ideal: no readout, bias added to the sums
    dict(NOISY, adc_stochastic_rounding=True),
    dict(NOISY, drift_nu=0.05, t_inference_s=3600.0, drift_compensation=True),
    dict(mapping="reference", out_noise=0.05, adc_bits=6, output_range=4.0),
    dict(NOISY, tile_cols=8, precision="float32"),
], ids=["ideal", "stochastic-adc", "drift-compensated", "reference", "column-tiles"])
def test_chain_covers_the_periphery_options(device):
    assert_same_passes(*networks(**device), batch=40)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("activation", [ReLU(), Identity(), LeakyReLU()],
                         ids=["relu", "identity", "leaky-relu"])
def test_chain_with_other_activations(activation, precision):
    """The leaky ReLU's slope is rounded to a float32 layer's precision before it
    multiplies, as NumPy's where(z > 0, z, slope * z) rounds it in the layer path."""
    assert_same_passes(*networks(activation=activation, precision=precision, **NOISY),
                       batch=40)


@pytest.mark.parametrize("threads", [1, 2])
def test_chain_result_does_not_depend_on_the_thread_count_of_its_split(threads):
    """Parts of the rows run on helpers or on the caller; the noise is indexed by probe,
    so the outputs equal the layer-by-layer path at the same split."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        assert_same_passes(*networks(precision="float32", **NOISY), batch=64)
    finally:
        numba.set_num_threads(before)


def test_chain_sees_writes_and_new_read_times():
    """A write or a new inference time replaces the arrays a chain points to."""
    chained, layered = networks(**NOISY, drift_nu=0.05, drift_compensation=True)
    delta = np.random.default_rng(5).standard_normal(chained.n_params) * 0.05
    for net in (chained, layered):
        net.run(np.zeros((3, 12)))
        net.write(delta)
        for d in net.devices:
            d.set_time(100.0)
    assert_same_passes(chained, layered, batch=20)


def test_without_numpys_cblas_networks_keep_to_the_layer_path(monkeypatch):
    """Where NumPy's CBLAS entry points cannot be found, no chain is built and passes
    give the same results through the layer-by-layer path."""
    chained, _ = networks(**NOISY)
    monkeypatch.setattr(blas, "AVAILABLE", False)
    layers = (LayerParams(units=20, activation=Sigmoid()), LayerParams(units=7, activation=Sigmoid()))
    fallback = Network(NetworkParams(layers=layers, device=CrossbarParams(**NOISY)), 12,
                       np.random.default_rng(0), np.random.default_rng(1))
    assert fallback._chain is None and chained._chain is not None
    x = np.random.default_rng(3).uniform(-1, 1, (40, 12))
    np.testing.assert_array_equal(fallback.run(x).outputs, chained.run(x).outputs)


def test_pickled_network_rebuilds_its_chain():
    """A copy's chain points to the copy's arrays, not the original's."""
    chained, layered = networks(**NOISY)
    copy = pickle.loads(pickle.dumps(chained))
    assert copy._chain is not None and copy._chain is not chained._chain
    del chained
    assert_same_passes(copy, layered, batch=10)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_layers_of_one_or_two_outputs_run_on_the_chain(outputs, precision):
    """A single output's products are NumPy's matrix-vector and (a block of one row) dot
    products, which the chain's BLAS calls make too (devsim.blas.matmul)."""
    assert_same_passes(*networks(widths=(8, 5, outputs), precision=precision, **NOISY),
                       batch=129)


@pytest.mark.parametrize("widths, device, activation", [
    ((8, 5, 3), dict(tile_rows=4), Sigmoid()),        # two row tiles
    ((8, 5, 3), dict(read_noise=0.02, read_noise_model="proportional"), Sigmoid()),
    ((8, 5, 3), dict(read_noise=0.02, mapping="reference"), Sigmoid()),
    ((8, 5, 3), {}, Tanh()),
])
def test_layers_a_chain_cannot_run_keep_to_the_layer_path(widths, device, activation):
    layers = tuple(LayerParams(units=w, activation=activation) for w in widths[1:])
    params = NetworkParams(layers=layers, device=CrossbarParams(**device))
    net = Network(params, widths[0], np.random.default_rng(0), np.random.default_rng(1))
    assert Chain.of(net.devices, net.activations) is None and net._chain is None
    assert net.run(np.ones((2, widths[0]))).outputs.shape == (2, widths[-1])


def test_weight_perturbations_and_recording_take_the_layer_path():
    chained, layered = networks(**NOISY)
    x = np.random.default_rng(2).random((5, 12))
    wp = np.random.default_rng(3).standard_normal((5, chained.n_params)) * 0.01
    np.testing.assert_array_equal(chained.run(x, weight_perturbation=wp).outputs,
                                  layered.run(x, weight_perturbation=wp).outputs)
    rec = chained.run(x, record=True)
    assert len(rec.inputs) == 2
    np.testing.assert_array_equal(rec.outputs, layered.run(x, record=True).outputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 64, 256), (1, 257, 3), (2, 5, 2), (7, 256, 10),
                                     (64, 64, 256), (7, 256, 1), (128, 785, 1), (64, 1, 1),
                                     (1, 5, 1), (1, 785, 1), (1, 1, 1)])
def test_blas_matmul_is_numpys_product_bit_for_bit(dtype, m, k, n):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    cblas = blas.entry_points()
    for b, transposed, ref in ((np.ascontiguousarray(w.T), False, a @ np.ascontiguousarray(w.T)),
                               (w, True, a @ w.T)):
        out = np.empty((m, n), dtype)
        blas.matmul(a, b, transposed, out, cblas)
        np.testing.assert_array_equal(out, ref)


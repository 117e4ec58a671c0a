"""Contract table of the device models: every registered model and every device preset,
plugins included, checked for what devsim relies on (see :mod:`devsim.device`), with the
layer of every kind that holds parameters (dense, conv2d, depthwise_conv2d: the model's
own convolution or its arrays holding the unrolled kernel) where the promise concerns
a layer's computation."""
from __future__ import annotations

import pickle

import numba
import numpy as np
import pytest
import yaml
from threadpoolctl import threadpool_limits

from contracts import WEIGHTED_LAYERS, device_rows, layer_rows
from devsim import parallel
from devsim.config import from_data
from devsim.device import DeviceArray, DeviceParams, RowSplitArray

ROWS = device_rows()
LAYERS = layer_rows()
DENSE = WEIGHTED_LAYERS["dense"]
N_OUT, N_IN = 6, 9  # the parameter matrix of every layer row
BATCHES = (1, 7, 64, 300)  # 300: calls long enough to be split across threads


def _layer(seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, (N_OUT, N_IN)), rng.uniform(-scale, scale, N_OUT)


def _inputs(n, seed=1, layer=DENSE):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, int(np.prod(layer[1]))))


def _ports(n, seed=2, layer=DENSE):
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal((n, layer[0].shape(layer[1]).n_out)),
            0.01 * rng.standard_normal((n, N_OUT * N_IN + N_OUT)))


def _build(params, seed=3, layer=DENSE):
    """The layer ``layer`` = (spec, input shape) on the device ``params`` (a dense layer
    through the model's own ``build``)."""
    w, b = _layer()
    spec, in_shape = layer
    return spec.build(spec.shape(in_shape), params, w, b, np.random.default_rng(seed))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_builds_an_array_of_the_declared_kind(layer, params):
    array = _build(params, layer=layer)
    assert isinstance(array, DeviceArray) and tuple(array.shape) == (N_OUT, N_IN)
    assert array.n_params == N_OUT * N_IN + N_OUT and array.read().shape == (array.n_params,)
    assert array.n_nodes == layer[0].shape(layer[1]).n_out


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
@pytest.mark.parametrize("batch", BATCHES)
def test_output_shapes_and_dtypes_with_every_port(layer, params, batch):
    array = _build(params, layer=layer)
    node, weights = _ports(batch, layer=layer)
    for args in ((), (node,), (None, weights), (node, weights)):
        out = array.forward(_inputs(batch, layer=layer), *args)
        assert out.shape == (batch, array.n_nodes) and out.dtype in (np.float32, np.float64)
        assert np.isfinite(out).all()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_same_seed_same_bits_and_reads_in_order(layer, params):
    outs = []
    for _ in range(2):
        array = _build(params, layer=layer)
        outs.append([array.forward(_inputs(n, seed=n, layer=layer), *_ports(n, layer=layer)) for n in (5, 300)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_result_does_not_depend_on_the_thread_count(layer, params):
    outs = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            before = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            try:
                array = _build(params, layer=layer)
                outs.append(array.forward(_inputs(300, layer=layer), *_ports(300, layer=layer)))
            finally:
                numba.set_num_threads(before)
    np.testing.assert_array_equal(*outs)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_probes_split_over_calls_equal_one_call(layer, params):
    """A probe's result depends on its place in the array's life, not on the call it
    came in, when calls are cut at canonical blocks (:mod:`devsim.parallel`; stateful
    arrays carry their state across the calls)."""
    x, (node, weights) = _inputs(300, layer=layer), _ports(300, layer=layer)
    whole = _build(params, layer=layer).forward(x, node, weights)
    array = _build(params, layer=layer)
    B = parallel.BLOCK_ROWS
    assert 2 * B < 300  # three calls: one block, one block, the rest
    parts = [array.forward(x[a:b], node[a:b], weights[a:b])
             for a, b in ((0, B), (B, 2 * B), (2 * B, 300))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_without_nonidealities_equals_the_ideal_device(layer, params):
    ideal_params = DeviceParams.members()["ideal"]()
    array = _build(params.without_nonidealities(), layer=layer)
    w, b = np.split(array.read(), [N_OUT * N_IN])
    spec, in_shape = layer
    ideal = spec.build(spec.shape(in_shape), ideal_params, w.reshape(N_OUT, N_IN), b,
                       np.random.default_rng(0))
    x = _inputs(64, layer=layer)
    expected = ideal.forward(x)
    bound = np.broadcast_to(array.ideal_error_bound(x), expected.shape)
    error = np.abs(array.forward(x) - expected)
    assert np.all(error <= bound + 1e-12 * (1.0 + np.abs(expected))), error.max()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_writes_land_as_the_write_physics_says(layer, params):
    array = _build(params.without_nonidealities(), layer=layer)
    rng = np.random.default_rng(9)
    for _ in range(3):
        before = array.read()  # a change toward zero keeps parameters within range
        delta = -0.2 * before + 0.01 * rng.standard_normal(array.n_params)
        array.write(delta)
        landed = array.read() - before
        tolerance = np.broadcast_to(array.write_tolerance(), landed.shape)
        assert np.all(np.abs(landed - delta) <= tolerance + 1e-12), \
            np.max(np.abs(landed - delta) - tolerance)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("params", ROWS)
def test_pickled_array_continues_where_the_original_is(layer, params):
    array = _build(params, layer=layer)
    array.forward(_inputs(10, layer=layer))
    copy = pickle.loads(pickle.dumps(array))
    x, ports = _inputs(20, seed=5, layer=layer), _ports(20, seed=6, layer=layer)
    np.testing.assert_array_equal(copy.forward(x, *ports), array.forward(x, *ports))
    np.testing.assert_array_equal(copy.read(), array.read())


@pytest.mark.parametrize("params", ROWS)
def test_params_round_trip_through_yaml_and_pickle(params):
    again = from_data(DeviceParams, yaml.safe_load(yaml.safe_dump(params.to_dict())))
    assert again == params and pickle.loads(pickle.dumps(params)) == params


@pytest.mark.parametrize("params", ROWS)
def test_meter_counts_one_read_per_probe(params):
    array = _build(params)
    array.forward(_inputs(13))
    array.forward(_inputs(300))
    assert array.meter.reads == 313 and array.meter.time_s >= 0 and array.meter.energy_j >= 0


@pytest.mark.parametrize("params", [p for p in ROWS if issubclass(
    type(_build(p.values[0])), RowSplitArray)])
def test_row_parts_equal_the_whole_call(params):
    array = _build(params)
    x, (node, weights) = _inputs(300), _ports(300)
    whole = _build(params).forward(x, node, weights)
    call = array.begin_forward(300)
    B = parallel.BLOCK_ROWS  # parts of whole blocks, in any order
    assert 2 * B < 300
    parts = [array.forward_rows(call, x[a:b], a, node[a:b], weights[a:b])
             for a, b in ((2 * B, 300), (0, B), (B, 2 * B))]
    np.testing.assert_array_equal(np.concatenate([parts[1], parts[2], parts[0]]), whole)

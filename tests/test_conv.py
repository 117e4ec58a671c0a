"""Float convolution and pooling against the independent sliding-window references and
by hand; the perturbation ports against perturbed kernels; conv layers on crossbars
against the array run on explicit window rows (same noise), and the meter."""
from __future__ import annotations

import numpy as np
import pytest

import devices.conv as conv
import devsim.array_layers as array_layers
from devices.conv import (IdealConv2D, IdealDepthwise, conv2d, conv2d_reference,
                          depthwise_conv2d, depthwise_conv2d_reference, pool2d_reference)
from devsim.array_layers import ArrayConv2D, ArrayDepthwise, pool2d, pool2d_np
from devices.crossbar import CrossbarParams
from devices.ideal import IdealParams
from devsim.conv_geometry import ConvGeometry

NOISY = CrossbarParams(read_noise=0.02, out_noise=0.01, dac_bits=7, input_range=3.0,
                       adc_bits=9, output_range=8.0, prog_noise=0.01, mvm_time_s=1e-7,
                       cell_read_energy_j=1e-15, adc_energy_j=1e-12)
IDEAL_XBAR = CrossbarParams(w_max=4.0, tile_rows=4096, tile_cols=4096)


def random_geometry(rng):
    while True:
        try:
            return ConvGeometry(*(int(n) for n in rng.integers(1, 8, 2)), int(rng.integers(1, 5)),
                                *(int(n) for n in rng.integers(1, 5, 2)),
                                *(int(n) for n in rng.integers(1, 3, 2)),
                                str(rng.choice(["same", "valid"])))
        except ValueError:
            continue


def maps(x, g):
    return x.reshape(-1, g.in_h, g.in_w, g.in_c)


def test_conv_by_hand():
    # 2x2 map, one channel [[1, 2], [3, 4]]; 2x2 kernel [[1, 0], [0, -1]] 'same', stride
    # 1: total padding 1, behind. Windows (1,2,3,4), (2,0,4,0), (3,4,0,0), (4,0,0,0).
    g = ConvGeometry(2, 2, 1, 2, 2)
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    w = np.array([[1.0, 0.0, 0.0, -1.0]])
    assert conv2d(g, w, np.array([0.5]), x).tolist() == [[-2.5, 2.5, 3.5, 4.5]]
    assert pool2d("avg_pool", g, x).tolist() == [[2.5, 3.0, 3.5, 4.0]]
    assert pool2d("max_pool", g, -x).tolist() == [[-1.0, -2.0, -3.0, -4.0]]


def test_float_kernels_match_references():
    rng = np.random.default_rng(0)
    for _ in range(40):
        g = random_geometry(rng)
        x = rng.normal(size=(3, g.in_size))
        c_out, dm = int(rng.integers(1, 6)), int(rng.integers(1, 3))
        w, b = rng.normal(size=(c_out, g.patch_size)), rng.normal(size=c_out)
        ref = conv2d_reference(maps(x, g), w.reshape(c_out, g.kernel_h, g.kernel_w, g.in_c), b, g)
        np.testing.assert_allclose(conv2d(g, w, b, x), ref.reshape(3, -1), rtol=1e-12,
                                   atol=1e-12)
        wd, bd = rng.normal(size=(g.in_c * dm, g.taps)), rng.normal(size=g.in_c * dm)
        tfl = wd.T.reshape(1, g.kernel_h, g.kernel_w, -1)        # (1, kh, kw, C*dm)
        ref = depthwise_conv2d_reference(maps(x, g), tfl, bd, g)
        np.testing.assert_allclose(depthwise_conv2d(g, wd, bd, x), ref.reshape(3, -1),
                                   rtol=1e-12, atol=1e-12)
        for kind in array_layers.POOLS:
            np.testing.assert_allclose(pool2d(kind, g, x),
                                       pool2d_reference(kind, maps(x, g), g).reshape(3, -1),
                                       rtol=1e-12)
    with pytest.raises(ValueError, match="pool kind"):
        pool2d("sum_pool", g, x)


def test_pool_kernel_is_its_numpy_twin_and_keeps_nan():
    rng = np.random.default_rng(5)
    for _ in range(60):
        g = random_geometry(rng)
        x = rng.normal(size=(3, g.in_size))
        np.testing.assert_array_equal(pool2d("max_pool", g, x), pool2d_np("max_pool", g, x))
        np.testing.assert_allclose(pool2d("avg_pool", g, x), pool2d_np("avg_pool", g, x),
                                   rtol=1e-14, atol=0)
        assert pool2d("avg_pool", g, x.astype(np.float32)).dtype == np.float32
    g = ConvGeometry(2, 2, 1, 2, 2, 2, 2, "valid")
    for kind in array_layers.POOLS:
        assert np.isnan(pool2d(kind, g, np.array([[1.0, np.nan, 3.0, -1.0]]))).all()


@pytest.mark.parametrize("block_bytes", [None, 1])
@pytest.mark.parametrize("depthwise", [False, True])
def test_perturbation_ports_are_perturbed_kernels(depthwise, block_bytes, monkeypatch):
    if block_bytes is not None:  # conv2d makes its window rows one probe at a time
        monkeypatch.setattr(conv, "_COLS_BYTES", block_bytes)
    rng = np.random.default_rng(1 + depthwise)
    g = ConvGeometry(5, 6, 3, 3, 2, 2, 1, "same")
    shape = (6, g.taps) if depthwise else (4, g.patch_size)
    kernel = depthwise_conv2d if depthwise else conv2d
    w, b = rng.normal(size=shape), rng.normal(size=shape[0])
    x = rng.normal(size=(4, g.in_size))
    wp = rng.normal(size=(4, shape[0] * shape[1] + shape[0]))
    node = rng.normal(size=(4, g.n_positions * shape[0]))
    got = kernel(g, w, b, x, node, wp)
    for t in range(4):
        dw, db = wp[t, :-shape[0]].reshape(shape), wp[t, -shape[0]:]
        want = kernel(g, w + dw, b + db, x[t:t + 1])[0] + node[t]
        np.testing.assert_allclose(got[t], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [IdealConv2D, IdealDepthwise])
def test_ideal_layers(cls):
    rng = np.random.default_rng(2)
    g = ConvGeometry(4, 4, 2, 3, 3)
    shape = (4, g.taps) if cls is IdealDepthwise else (3, g.patch_size)
    w, b = rng.normal(size=shape), rng.normal(size=shape[0])
    layer = cls(g, w, b)
    x = rng.normal(size=(5, g.in_size))
    kernel = depthwise_conv2d if cls is IdealDepthwise else conv2d
    np.testing.assert_array_equal(layer.forward(x), kernel(g, w, b, x))
    assert layer.meter.reads == 5 * 16 and layer.n_nodes == 16 * shape[0]
    delta = rng.normal(size=layer.n_params)
    layer.write(delta)
    np.testing.assert_array_equal(layer.read(), np.concatenate([w.ravel(), b]) + delta)
    with pytest.raises(ValueError):
        cls(g, np.ones((3, 5)), np.zeros(3))


# ------------------------------------------------------------------ on crossbars
def test_ideal_crossbar_conv_equals_ideal_device():
    rng = np.random.default_rng(3)
    g = ConvGeometry(6, 6, 3, 3, 3, 2, 2, "same")
    w, b = rng.normal(0, 0.5, (5, g.patch_size)), rng.normal(0, 0.1, 5)
    x = rng.normal(size=(4, g.in_size))
    wp = rng.normal(0, 0.01, (4, w.size + 5))
    node = rng.normal(size=(4, g.n_positions * 5))
    layer = ArrayConv2D.build(IDEAL_XBAR, g, w, b, rng)
    ideal = IdealConv2D(g, w, b)
    np.testing.assert_array_equal(layer.forward(x), ideal.forward(x))
    np.testing.assert_allclose(layer.forward(x, node, wp), ideal.forward(x, node, wp),
                               rtol=1e-12, atol=1e-12)
    wd, bd = rng.normal(0, 0.5, (6, g.taps)), rng.normal(0, 0.1, 6)
    dlayer = ArrayDepthwise.build(IDEAL_XBAR, g, wd, bd, rng)
    dideal = IdealDepthwise(g, wd, bd)
    wpd = rng.normal(0, 0.01, (4, wd.size + 6))
    noded = rng.normal(size=(4, g.n_positions * 6))
    np.testing.assert_allclose(dlayer.forward(x, noded, wpd), dideal.forward(x, noded, wpd),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dlayer.read(), dideal.read())


def test_noisy_crossbar_conv_is_one_mvm_per_position(monkeypatch):
    # The layer equals the same array (same seed: same devices, same noise draws) called
    # on the explicit window rows, with each probe's weight perturbation on all its
    # positions; perturbed calls split into parts (here one probe each) draw one call's
    # noise. Every position is a read, with its time and energy.
    monkeypatch.setattr(array_layers, "_REPEAT_BYTES", 1)
    rng = np.random.default_rng(4)
    g = ConvGeometry(5, 5, 2, 3, 3, 1, 1, "same")
    w, b = rng.normal(0, 0.5, (4, g.patch_size)), rng.normal(0, 0.1, 4)
    x = rng.uniform(-1, 1, (3, g.in_size))
    wp = rng.normal(0, 0.05, (3, w.size + 4))
    node = rng.normal(0, 0.1, (3, g.n_positions * 4))
    layer = ArrayConv2D.build(NOISY, g, w, b, np.random.default_rng(9))
    twin = NOISY.build(w, b, np.random.default_rng(9))
    rows = g.im2col(x).reshape(-1, g.patch_size)
    for args, twin_args in [((), ()), ((node,), (node.reshape(-1, 4),)),
                            ((node, wp), (node.reshape(-1, 4), np.repeat(wp, 25, axis=0)))]:
        got = layer.forward(x, *args)
        np.testing.assert_array_equal(got, twin.forward(rows, *twin_args).reshape(3, -1))
    assert np.std(got - IdealConv2D(g, w, b).forward(x, node, wp)) > 1e-3   # it is noisy
    reads = 3 * 3 * 25
    assert layer.meter.reads == reads == twin.meter.reads
    assert layer.meter.time_s == pytest.approx(reads * 1e-7)
    cells, conversions = (g.patch_size + 1) * 2 * 4, 4
    assert layer.meter.energy_j == pytest.approx(reads * (cells * 1e-15 + conversions * 1e-12),
                                                 rel=1e-12, abs=0)


def test_noisy_depthwise_on_per_channel_arrays():
    rng = np.random.default_rng(5)
    g = ConvGeometry(4, 5, 3, 2, 3, 2, 1, "valid")
    dm = 2
    w, b = rng.normal(0, 0.5, (3 * dm, g.taps)), rng.normal(0, 0.1, 3 * dm)
    x = rng.uniform(-1, 1, (2, g.in_size))
    wp = rng.normal(0, 0.05, (2, w.size + 3 * dm))
    layer = ArrayDepthwise.build(NOISY, g, w, b, np.random.default_rng(6))
    twin_rng = np.random.default_rng(6)
    twins = [NOISY.build(w[c * dm:(c + 1) * dm], b[c * dm:(c + 1) * dm], twin_rng)
             for c in range(3)]
    got = layer.forward(x, None, wp).reshape(-1, 3, dm)
    cols = g.im2col(x).reshape(-1, g.taps, 3)
    n_pos = g.n_positions
    for c, twin in enumerate(twins):
        part = layer.channel_params(wp, c)
        assert part.shape == (2, dm * g.taps + dm)
        want = twin.forward(np.ascontiguousarray(cols[:, :, c]), None,
                            np.repeat(part, n_pos, axis=0))
        np.testing.assert_array_equal(got[:, c], want)
    meter = layer.meter
    assert meter.reads == 2 * n_pos and meter.time_s == pytest.approx(2 * n_pos * 1e-7)
    total = sum(t.meter.energy_j for t in twins)
    assert meter.energy_j == pytest.approx(total, rel=1e-12, abs=0)


def test_depthwise_writes_land_on_their_channel_arrays():
    rng = np.random.default_rng(7)
    g = ConvGeometry(3, 3, 2, 3, 3)
    w, b = rng.normal(size=(4, 9)), rng.normal(size=4)
    layer = ArrayDepthwise.build(IdealParams(), g, w, b, rng)
    delta = rng.normal(size=layer.n_params)
    layer.write(delta)
    np.testing.assert_array_equal(layer.read(), np.concatenate([w.ravel(), b]) + delta)
    wd, bd = (w.ravel() + delta[:36]).reshape(4, 9), b + delta[36:]
    np.testing.assert_array_equal(layer.arrays[1].read(),
                                  np.concatenate([wd[2:].ravel(), bd[2:]]))
    # an array model without row-split calls takes the perturbation in successive calls
    x, wp = rng.normal(size=(3, g.in_size)), rng.normal(size=(3, layer.n_params))
    np.testing.assert_allclose(layer.forward(x, None, wp),
                               IdealDepthwise(g, wd, bd).forward(x, None, wp), rtol=1e-12,
                               atol=1e-12)
    with pytest.raises(ValueError, match="arrays"):
        ArrayDepthwise(g, layer.arrays[:1])
    with pytest.raises(ValueError, match="inputs"):
        ArrayConv2D(g, layer.arrays[0])

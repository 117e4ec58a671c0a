"""int8 convolution and pooling: hand-computed values, the Numba kernels against the
literal NumPy references, the references (and kernels, and devices) bit-exact against
the tflite-micro interpreter on random models, and the devices' perturbation ports."""
from __future__ import annotations

import numpy as np
import pytest

from devices.mcu import MCUDense, MCUParams, rademacher_lsb
from devices.mcu_conv import (MCUConv2D, MCUDepthwise, MCUPool, average_pool_reference,
                              conv_per_channel_reference, depthwise_conv_per_channel_reference,
                              max_pool_reference, perturbed_reference, pool_q)
from devices.mcu_quant import INT32_MAX, QuantParams, activation_bounds, dequantize, quantize
from devsim import crng
from devsim.array_layers import pool2d
from devsim.conv_geometry import ConvGeometry
from devsim.device import Meter

def as_map(x, g: ConvGeometry):
    return x.reshape(-1, g.in_h, g.in_w, g.in_c)


# ------------------------------------------------------------------ by hand
def test_conv_by_hand_pads_with_the_zero_point():
    # 3x3 map (z_in = 2): x - z = 1..9; 2x2 kernel of ones, stride 2, 'same': the padding
    # (one row, one column) falls behind. M = 1 -> (2^30, 1) is exact: y = acc + b + z_out.
    g = ConvGeometry(3, 3, 1, 2, 2, 2, 2, "same")
    x = (np.arange(1, 10) + 2).astype(np.int8)[None, :]
    w = np.ones((1, 4), np.int8)
    layer = MCUConv2D(g, w, np.array([1], np.int32), np.array([1.0], np.float32),
                      QuantParams(np.float32(1.0), 2), QuantParams(np.float32(1.0), -1),
                      MCUParams())
    assert (int(layer.multiplier[0]), int(layer.shift[0])) == (2 ** 30, 1)
    # windows: 1+2+4+5 = 12, 3+6 = 9, 7+8 = 15, 9; plus bias 1, minus 1
    assert layer.forward_q(x).tolist() == [[12, 9, 15, 9]]
    assert conv_per_channel_reference(as_map(x, g), layer.tflite_filter, layer.b_q,
                                      layer.multiplier, layer.shift, g, 2, -1, -128,
                                      127).ravel().tolist() == [12, 9, 15, 9]


def test_depthwise_by_hand():
    # 1x2 map, 2 channels [c0, c1] = [(1, 2), (10, 20)] (z_in = 0), 1x2 kernel 'valid',
    # depth multiplier 2: outputs (c0 m0, c0 m1, c1 m0, c1 m1) with taps [1, 1], [1, -1],
    # [2, 0], [0, 1]: 1 + 10 = 11, 1 - 10 = -9, 2 * 2 = 4, 20.
    g = ConvGeometry(1, 2, 2, 1, 2, 1, 1, "valid")
    x = np.array([[1, 2, 10, 20]], np.int8)
    w = np.array([[1, 1], [1, -1], [2, 0], [0, 1]], np.int8)
    one = QuantParams(np.float32(1.0), 0)
    layer = MCUDepthwise(g, w, np.zeros(4, np.int32), np.ones(4, np.float32), one, one,
                         MCUParams())
    assert layer.depth_multiplier == 2
    assert layer.forward_q(x).tolist() == [[11, -9, 4, 20]]
    assert layer.tflite_filter[0, 0, :, :].tolist() == [[1, 1, 2, 0], [1, -1, 0, 1]]


def test_average_pool_rounds_half_away_from_zero_on_q():
    # 2x2 windows 'valid', one channel per case: sums 7, 5, 6, -6, -7 over 4 values
    # -> 2.25 -> 2, 1.25 -> 1, 1.5 -> 2, -1.5 -> -2, -1.75 -> -2
    g = ConvGeometry(2, 2, 5, 2, 2, 1, 1, "valid")
    windows = np.array([[1, 2, 2, 2], [1, 1, 1, 2], [1, 2, 2, 1], [-1, -2, -2, -1],
                        [-1, -2, -2, -2]], np.int8)          # (channel, pixel)
    x = windows.T.reshape(1, -1)
    assert pool_q("avg_pool", x, g).tolist() == [[2, 1, 2, -2, -2]]
    assert pool_q("max_pool", x, g).tolist() == [[2, 2, 2, -1, -1]]
    assert pool_q("avg_pool", x, g, act_min=-1, act_max=1).tolist() == [[1, 1, 1, -1, -1]]
    # 'same' 2x2 stride 2 on 3x3: the corner window holds one pixel, counted once
    g3 = ConvGeometry(3, 3, 1, 2, 2, 2, 2, "same")
    x3 = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 100]], np.int8)
    assert pool_q("avg_pool", x3, g3).tolist() == [[3, 5, 8, 100]]   # 3, 4.5, 7.5, 100


def test_pool_rejects_unknown_kind():
    with pytest.raises(ValueError, match="pool kind"):
        pool_q("min_pool", np.zeros((1, 4), np.int8), ConvGeometry(2, 2, 1, 2, 2))


# ------------------------------------------------------------------ random cases
def random_geometry(rng, max_size=9, max_kernel=4, max_stride=2):
    while True:
        try:
            return ConvGeometry(*(int(n) for n in rng.integers(1, max_size + 1, 2)),
                                int(rng.integers(1, 6)),
                                *(int(n) for n in rng.integers(1, max_kernel + 1, 2)),
                                *(int(n) for n in rng.integers(1, max_stride + 1, 2)),
                                str(rng.choice(["same", "valid"])))
        except ValueError:      # a 'valid' kernel larger than the map
            continue


def random_quantization(rng, n_out, depth, kind):
    """Weight scales (per channel or one), (s, z) of input and output, the fused clamp.

    The output scale puts a typical accumulator of ``depth`` products (standard deviation
    about 74^2 sqrt(depth)) some 30 LSBs from the zero point, within a factor e either
    way, so that outputs spread over the int8 range rather than saturate.
    """
    def scales(lo, hi, n):
        return np.exp(rng.uniform(lo, hi, n)).astype(np.float32)

    ws = scales(-8, -4, n_out)
    s_in = scales(-5, 0, 1)[0]
    spread = 74.0 ** 2 * np.sqrt(depth) / 30 * np.exp(rng.uniform(-1, 1))
    z_in, z_out = (int(z) for z in rng.integers(-128, 128, 2))
    if kind == "ties":            # powers of two: M = 2^-k, exact .5 ties in the rounding
        ws = np.float32(2.0) ** rng.integers(-9, -4, n_out).astype(np.float32)
        s_in = np.float32(2.0) ** np.float32(rng.integers(-6, 0))
        spread = 2.0 ** np.round(np.log2(spread))
    elif kind == "extremes":      # zero points at the ends of the int8 range
        z_in, z_out = (int(z) for z in rng.choice([-128, 127], 2))
    s_out = np.float32(s_in * np.median(ws) * spread)
    if kind == "big_multiplier":  # M > 1: left shifts of the accumulator
        s_out = np.float32(s_in * np.median(ws) * np.exp(rng.uniform(-3, -0.5)))
    if rng.integers(3) == 0:      # per-tensor weights
        ws = np.full(n_out, ws[0], np.float32)
    fused = str(rng.choice(["none", "relu", "relu6"]))
    return ws, QuantParams(s_in, z_in), QuantParams(s_out, z_out), fused


KINDS = ("random", "ties", "extremes", "big_multiplier")


def conv_case(rng, case, depthwise):
    g = random_geometry(rng)
    dm = int(rng.integers(1, 4)) if depthwise else 1
    n_out = g.in_c * dm if depthwise else int(rng.integers(1, 9))
    kind = KINDS[case % len(KINDS)]
    cols = g.taps if depthwise else g.patch_size
    ws, q_in, q_out, fused = random_quantization(rng, n_out, cols, kind)
    w = rng.integers(-127, 128, (n_out, cols)).astype(np.int8)
    b = rng.integers(-20_000, 20_000, n_out).astype(np.int32)
    x = rng.integers(-128, 128, (int(rng.integers(1, 4)), g.in_size)).astype(np.int8)
    if kind == "extremes":
        w = rng.choice(np.array([-127, 127], np.int8), w.shape)
        x = rng.choice(np.array([-128, 127], np.int8), x.shape)
    cls = MCUDepthwise if depthwise else MCUConv2D
    layer = cls(g, w, b, ws, q_in, q_out, MCUParams(fused_activation=fused))
    return g, layer, x, fused


def reference_of(layer, x_map):
    g = layer.geometry
    args = (layer.multiplier, layer.shift, g)
    if isinstance(layer, MCUDepthwise):
        args += (layer.depth_multiplier,)
    args += (layer.input_q.zero_point, layer.output_q.zero_point, layer.act_min,
             layer.act_max)
    if isinstance(layer, MCUDepthwise):
        return depthwise_conv_per_channel_reference(x_map, layer.tflite_filter, layer.b_q,
                                                    *args)
    return conv_per_channel_reference(x_map, layer.tflite_filter, layer.b_q, *args)


def tflm_model(tflm, layer, x, fused):
    g = layer.geometry
    graph = tflm.graph((x.shape[0], g.in_h, g.in_w, g.in_c), "int8", layer.input_q)
    scales = layer.weight_scales
    if len(set(scales.tolist())) == 1:    # store a per-tensor scale as one
        scales = scales[:1]
    stride, pad = (g.stride_h, g.stride_w), g.padding
    if isinstance(layer, MCUDepthwise):
        graph.depthwise(layer.tflite_filter, layer.b_q, scales, layer.output_q, stride, pad,
                        layer.depth_multiplier, fused)
    else:
        graph.conv2d(layer.tflite_filter, layer.b_q, scales, layer.output_q, stride, pad, fused)
    return graph.finish()


ORACLE_CASES = {"conv2d": 300, "depthwise": 300}
"""Random single-layer models per operator, each run on 1-3 input maps: maps up to 9x9
with 1-5 channels, kernels 1-4 by 1-4, strides 1-2 per axis, 'same' and 'valid',
per-channel or per-tensor weight scales, NONE/RELU/RELU6, any zero points, depth
multipliers 1-3 (35,099 and 46,216 outputs with these seeds)."""


@pytest.mark.parametrize("op, n_cases", ORACLE_CASES.items(),
                         ids=[f"{op}-{n}_models" for op, n in ORACLE_CASES.items()])
def test_conv_matches_tflite_micro(tflm, op, n_cases):
    rng = np.random.default_rng(2026 + len(op))
    outputs = distinct = 0
    for case in range(n_cases):
        g, layer, x, fused = conv_case(rng, case, op == "depthwise")
        expected = tflm.run(tflm_model(tflm, layer, x, fused), as_map(x, g))
        assert expected.shape == (x.shape[0], g.out_h, g.out_w, layer.shape[0])
        ref = reference_of(layer, as_map(x, g))
        assert np.array_equal(ref, expected), (op, case)
        assert np.array_equal(layer.forward_q(x), expected.reshape(x.shape[0], -1)), (op, case)
        outputs += expected.size
        distinct += len(np.unique(expected)) > 3
    assert outputs > 30_000
    assert distinct > n_cases // 2      # most models are not saturated into a few values


POOL_CASES = {"avg_pool": 200, "max_pool": 200}
"""Random pooling models: filters 1-4 by 1-4, strides 1-3 per axis, fused clamps
(9,798 and 9,688 outputs with these seeds)."""


@pytest.mark.parametrize("kind, n_cases", POOL_CASES.items(),
                         ids=[f"{k}-{n}_models" for k, n in POOL_CASES.items()])
def test_pool_matches_tflite_micro(tflm, kind, n_cases):
    rng = np.random.default_rng(70 if kind == "avg_pool" else 71)
    floor_misses = outputs = 0
    reference = average_pool_reference if kind == "avg_pool" else max_pool_reference
    for case in range(n_cases):
        g = random_geometry(rng, max_kernel=4, max_stride=3)
        q = QuantParams(np.exp(np.float32(rng.uniform(-5, 0))).astype(np.float32),
                        int(rng.integers(-128, 128)))
        fused = str(rng.choice(["none", "relu", "relu6"]))
        lo, hi = activation_bounds(fused, *q)
        x = rng.integers(-128, 128, (int(rng.integers(1, 4)), g.in_size)).astype(np.int8)
        graph = tflm.graph((x.shape[0], g.in_h, g.in_w, g.in_c), "int8", q)
        graph.pool(kind, (g.kernel_h, g.kernel_w), (g.stride_h, g.stride_w), g.padding, fused)
        expected = tflm.run(graph.finish(), as_map(x, g))
        assert np.array_equal(reference(as_map(x, g), g, lo, hi), expected), (kind, case)
        assert np.array_equal(pool_q(kind, x, g, lo, hi), expected.reshape(x.shape[0], -1))
        outputs += expected.size
        if kind == "avg_pool":   # a floored mean, a plausible wrong model, differs
            counts = (g.window_index >= 0).sum(axis=1)
            windows = g.im2col_np(x, 0).reshape(x.shape[0], g.n_positions, g.taps, g.in_c)
            floor = np.clip(windows.astype(np.int64).sum(axis=2) // counts[None, :, None],
                            lo, hi)
            floor_misses += np.count_nonzero(floor.reshape(expected.shape) != expected)
    assert outputs > 9000
    if kind == "avg_pool":
        assert floor_misses > 100


def test_conv_graph_with_float_io_is_the_tflm_graph(tflm):
    # QUANTIZE -> CONV_2D(relu) -> DEPTHWISE(relu6) -> MAX_POOL -> CONV_2D -> AVG_POOL
    # -> FULLY_CONNECTED -> DEQUANTIZE in TFLM, against the devsim layers' float-facing
    # forward calls chained (pools on the quantized maps).
    rng = np.random.default_rng(3)
    q = [QuantParams.from_range(lo, hi) for lo, hi in
         [(-1, 1), (0, 3), (0, 6), (-4, 4), (-2, 3)]]
    g1 = ConvGeometry(8, 8, 1, 3, 3, 1, 1, "same")
    g2 = ConvGeometry(8, 8, 4, 3, 3, 2, 2, "same")
    g3 = ConvGeometry(4, 4, 8, 2, 2, 2, 2, "valid")
    g4 = ConvGeometry(2, 2, 8, 3, 3, 1, 1, "same")
    g5 = ConvGeometry(2, 2, 6, 2, 2, 1, 1, "valid")
    conv1 = MCUConv2D.from_float(g1, rng.normal(0, 0.5, (4, 9)), rng.normal(0, 0.1, 4),
                                 q[0], q[1], MCUParams(fused_activation="relu"))
    dw = MCUDepthwise.from_float(g2, rng.normal(0, 0.5, (8, 9)), rng.normal(0, 0.1, 8),
                                 q[1], q[2], MCUParams(fused_activation="relu6"))
    conv2 = MCUConv2D.from_float(g4, rng.normal(0, 0.2, (6, 72)), rng.normal(0, 0.1, 6),
                                 q[2], q[3], MCUParams())
    fc = MCUDense.from_float(rng.normal(0, 0.5, (3, 6)), rng.normal(0, 0.1, 3), q[3], q[4],
                             MCUParams())
    x = rng.uniform(-1, 1, (16, g1.in_size))
    h = dw.forward(conv1.forward(x))
    h = dequantize(pool_q("max_pool", quantize(h, *q[2]), g3), *q[2])
    h = conv2.forward(h)
    h = dequantize(pool_q("avg_pool", quantize(h, *q[3]), g5), *q[3])
    ours = fc.forward(h)

    graph = tflm.graph((16, 8, 8, 1), "float32")
    graph.quantize(q[0])
    for layer, fused in ((conv1, "relu"), (dw, "relu6")):
        stride = (layer.geometry.stride_h, layer.geometry.stride_w)
        if layer is dw:
            graph.depthwise(dw.tflite_filter, dw.b_q, dw.weight_scales, q[2], stride, "same",
                            2, fused)
        else:
            graph.conv2d(conv1.tflite_filter, conv1.b_q, conv1.weight_scales, q[1], stride,
                         "same", fused)
    graph.pool("max_pool", (2, 2), (2, 2), "valid")
    graph.conv2d(conv2.tflite_filter, conv2.b_q, conv2.weight_scales, q[3], (1, 1), "same")
    graph.pool("avg_pool", (2, 2), (1, 1), "valid")
    graph.fully_connected(fc.w_q, fc.b_q, fc.weight_scales, q[4])
    graph.dequantize()
    theirs = tflm.run(graph.finish(), x.astype(np.float32).reshape(16, 8, 8, 1))
    assert theirs.shape == (16, 3)
    assert np.array_equal(quantize(ours, *q[4]), quantize(theirs, *q[4]))
    assert len(np.unique(quantize(ours, *q[4]))) > 10


# ------------------------------------------------------------------ kernels and ports
@pytest.mark.parametrize("depthwise", [False, True])
def test_perturbed_kernels_match_reference(depthwise):
    rng = np.random.default_rng(11 + depthwise)
    for case in range(12):
        g, layer, x, _ = conv_case(rng, case, depthwise)
        layer.w_q.flat[[0, -1]] = [127, -127]            # perturbations that must clamp
        layer.b_q[-1] = INT32_MAX - 3
        n = layer.n_params
        k = rng.integers(-300, 301, (x.shape[0], n))
        k[:, -layer.shape[0]:] = rng.integers(-10, 11, (x.shape[0], layer.shape[0]))
        got = layer.forward_q(x, weight_lsb=k)
        dw = k[:, :-layer.shape[0]].reshape(x.shape[0], *layer.shape)
        db = k[:, -layer.shape[0]:]
        if depthwise:   # the reference takes the .tflite filter layout (1, kh, kw, c_out)
            w = layer.tflite_filter
            dw = dw.transpose(0, 2, 1).reshape(x.shape[0], *w.shape)
            ref = perturbed_reference(depthwise_conv_per_channel_reference, as_map(x, g), w,
                                      layer.b_q, dw, db, layer.multiplier, layer.shift, g,
                                      layer.depth_multiplier, layer.input_q.zero_point,
                                      layer.output_q.zero_point, layer.act_min, layer.act_max)
        else:
            w = layer.tflite_filter
            ref = perturbed_reference(conv_per_channel_reference, as_map(x, g), w, layer.b_q,
                                      dw.reshape(x.shape[0], *w.shape), db, layer.multiplier,
                                      layer.shift, g, layer.input_q.zero_point,
                                      layer.output_q.zero_point, layer.act_min, layer.act_max)
        assert np.array_equal(got, ref.reshape(x.shape[0], -1)), case
        # a perturbed probe is the layer written with that perturbation
        saved = layer.w_q.copy(), layer.b_q.copy()
        layer.write_q(k[0])
        assert np.array_equal(layer.forward_q(x[:1]), got[:1])
        layer.w_q[...], layer.b_q[...] = saved


def test_node_perturbation_float_port_and_meter():
    rng = np.random.default_rng(5)
    g = ConvGeometry(6, 5, 3, 3, 3, 1, 2, "same")
    q = QuantParams.from_range(-2, 2)
    layer = MCUConv2D.from_float(g, rng.normal(0, 0.3, (4, g.patch_size)), rng.normal(0, 0.1, 4),
                                 q, q, MCUParams())
    x = rng.uniform(-2, 2, (5, g.in_size))
    y = layer.forward(x)
    assert y.shape == (5, g.n_positions * 4) == (5, layer.n_nodes)
    assert np.array_equal(y, layer.dequantize_output(layer.forward_q(layer.quantize_input(x))))
    kn = rng.integers(-200, 200, y.shape)
    got = layer.forward(x, node_perturbation=kn * layer.output_lsb)
    expected = np.clip(quantize(y, *q).astype(int) + kn, layer.act_min, layer.act_max)
    assert np.array_equal(quantize(got, *q), expected)
    kw = rng.integers(-3, 4, (5, layer.n_params))
    assert np.array_equal(layer.forward(x, weight_perturbation=kw * layer.param_lsb),
                          layer.dequantize_output(layer.forward_q(layer.quantize_input(x),
                                                                  weight_lsb=kw)))
    key = crng.stream_key_np(3, 2)
    assert np.array_equal(layer.forward_q_rademacher(layer.quantize_input(x), key, 9, 2, 40),
                          layer.forward_q(layer.quantize_input(x),
                                          weight_lsb=rademacher_lsb(key, 9, 5, layer.shape, 2,
                                                                    40)))
    core = layer.params.timing
    layer.meter = Meter()
    layer.forward(x)
    macs = 5 * g.n_positions * 4 * g.patch_size       # 5 probes
    assert layer.meter.reads == 5
    assert layer.meter.time_s == pytest.approx(macs * core.cycles_per_mac / core.clock_hz)


def test_device_rejects_mismatched_kernel():
    g = ConvGeometry(4, 4, 3, 3, 3)
    q = QuantParams.from_range(-1, 1)
    with pytest.raises(ValueError, match="columns"):
        MCUConv2D.from_float(g, np.ones((2, 9)), np.zeros(2), q, q, MCUParams())
    with pytest.raises(ValueError, match="multiple"):
        MCUDepthwise.from_float(g, np.ones((4, 9)), np.zeros(4), q, q, MCUParams())


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_quantized_cnn_network_is_the_tflm_graph_of_its_layers(tflm, per_channel):
    # A float CNN from a network config, post-training quantized by devsim.quantize and
    # run through the network's layer loop (float in, dequantized out), against the TFLM
    # graph of its layers: QUANTIZE -> CONV_2D(relu) -> MAX_POOL -> DEPTHWISE(relu, x2,
    # stride 2) -> AVG_POOL('same') -> FULLY_CONNECTED -> DEQUANTIZE (flatten is
    # FULLY_CONNECTED's own reading of the map).
    from devsim.array_layers import Flatten
    from devsim.config import from_data
    from devsim.network import Network, NetworkParams
    from devsim.quantize import quantize_network
    params = from_data(NetworkParams, {"input_shape": [9, 9, 2], "layers": [
        {"type": "conv2d", "channels": 5, "kernel": [3, 3], "activation": "relu"},
        {"type": "max_pool", "pool": [2, 2], "stride": [1, 1]},
        {"type": "depthwise_conv2d", "depth_multiplier": 2, "stride": [2, 2],
         "activation": "relu"},
        {"type": "avg_pool", "pool": [3, 3], "stride": [2, 2], "padding": "same"},
        "flatten",
        {"units": 7, "activation": "identity"}]})
    rng = np.random.default_rng(8)
    net = Network(params, 162, rng, rng)
    net.write(rng.normal(0.0, 0.05, net.n_params))
    x = rng.uniform(-1.0, 1.0, (40, 162))
    int8 = quantize_network(net, x[:20], MCUParams(per_channel=per_channel))
    ours = int8.run(x).outputs

    first = int8.devices[0]
    graph = tflm.graph((len(x), 9, 9, 2), "float32")
    graph.quantize(first.input_q)
    for layer in int8.devices:
        if isinstance(layer, Flatten):
            continue
        if isinstance(layer, MCUPool):
            g = layer.geometry
            graph.pool(layer.kind, (g.kernel_h, g.kernel_w), (g.stride_h, g.stride_w), g.padding)
            continue
        scales = layer.weight_scales if per_channel else layer.weight_scales[:1]
        if isinstance(layer, MCUConv2D):
            g = layer.geometry
            stride = (g.stride_h, g.stride_w)
            if isinstance(layer, MCUDepthwise):
                graph.depthwise(layer.tflite_filter, layer.b_q, scales, layer.output_q, stride,
                                g.padding, layer.depth_multiplier, layer.fused_activation)
            else:
                graph.conv2d(layer.tflite_filter, layer.b_q, scales, layer.output_q, stride,
                             g.padding, layer.fused_activation)
        else:
            graph.fully_connected(layer.w_q, layer.b_q, scales, layer.output_q,
                                  layer.fused_activation)
    graph.dequantize()
    theirs = tflm.run(graph.finish(), x.astype(np.float32).reshape(len(x), 9, 9, 2))
    q_out = int8.devices[-1].output_q
    assert theirs.shape == ours.shape == (40, 7)
    assert np.array_equal(quantize(ours, *q_out), quantize(theirs, *q_out))
    assert len(np.unique(quantize(ours, *q_out))) > 40
    # and the float network it came from is close (the int8 model is a faithful copy)
    assert np.corrcoef(ours.ravel(), net.run(x).outputs.ravel())[0, 1] > 0.95


def test_two_conv_layers_of_one_shape_called_in_turn_each_run_their_own_kernel():
    # Unperturbed single-probe calls, alternating between two layers of the same shape:
    # each output is its own layer's (against the reference kernel), never a kernel left
    # over from the other's call.
    rng = np.random.default_rng(12)
    g = ConvGeometry(5, 5, 2, 3, 3)
    q = QuantParams.from_range(-1, 1)
    layers = [MCUConv2D.from_float(g, rng.normal(0, 0.4, (3, g.patch_size)),
                                   rng.normal(0, 0.1, 3), q, q, MCUParams()) for _ in range(2)]
    x = rng.integers(-128, 128, (6, g.in_size)).astype(np.int8)
    for t in range(6):
        layer = layers[t % 2]
        want = reference_of(layer, as_map(x[t:t + 1], g)).reshape(1, -1)
        assert np.array_equal(layer.forward_q(x[t:t + 1]), want), t


def test_rademacher_steps_beyond_two_weight_ranges_are_refused():
    g = ConvGeometry(4, 4, 1, 3, 3)
    q = QuantParams.from_range(-1, 1)
    layer = MCUConv2D.from_float(g, np.ones((2, 9)), np.zeros(2), q, q, MCUParams())
    with pytest.raises(ValueError, match=r"^mu_weight must be in \[0, 254\], got 255$"):
        layer.forward_q_rademacher(np.zeros((1, 16), np.int8), 0, 0, 255, 1)


def test_conv_local_gradient_is_the_derivative_of_the_signal_weighted_output():
    # The float conv is linear in (w, b): d/dw_ok <g, conv(w, b, x)> = <g, conv(e_ok, 0, x)>
    from devices.conv import conv2d
    rng = np.random.default_rng(13)
    g = ConvGeometry(4, 3, 2, 2, 2, 1, 1, "same")
    q = QuantParams.from_range(-1, 1)
    layer = MCUConv2D.from_float(g, rng.normal(0, 0.4, (3, g.patch_size)), np.zeros(3), q, q,
                                 MCUParams())
    x, signal = rng.normal(size=(4, g.in_size)), rng.normal(size=(4, g.n_positions * 3))
    basis = np.eye(3 * g.patch_size + 3)
    want = [np.sum(signal * conv2d(g, e[:-3].reshape(3, g.patch_size), e[-3:], x))
            for e in basis]
    np.testing.assert_allclose(layer.local_gradient(signal, x), want, rtol=1e-12, atol=1e-12)


def test_a_pool_layer_has_no_parameters_meters_its_reads_and_refuses_unknown_kinds():
    g = ConvGeometry(4, 4, 3, 2, 2, 2, 2)
    q = QuantParams.from_range(-1, 1)
    with pytest.raises(ValueError, match="pool kind must be 'avg_pool' or 'max_pool'"):
        MCUPool("min_pool", g, q, MCUParams())
    params = MCUParams(clock_hz=50e6, cycles_per_mac=3.0, energy_per_cycle_j=2e-10)
    pool = MCUPool("avg_pool", g, q, params)
    assert pool.param_lsb.shape == (0,)
    pool.forward_q(np.zeros((5, g.in_size), np.int8))
    cycles = 5 * g.n_positions * g.taps * g.in_c * 3.0
    assert pool.meter.reads == 5
    assert pool.meter.time_s == pytest.approx(cycles / 50e6, rel=1e-12, abs=0)
    assert pool.meter.energy_j == pytest.approx(cycles * 2e-10, rel=1e-12, abs=0)


@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
def test_pool_error_bound_is_sound_and_the_maximums_is_reached(kind):
    # Max: quantization is monotone, so the int8 maximum is the quantized float maximum
    # and its error is one of the window's input errors (the bound is reached wherever the
    # maximum carries the window's largest error). Mean: the window's largest input error
    # plus half an LSB for its rounding.
    rng = np.random.default_rng(14)
    g = ConvGeometry(6, 6, 2, 2, 2, 2, 2)
    pool = MCUPool(kind, g, QuantParams.from_range(-1, 1), MCUParams())
    x = rng.uniform(-1, 1, (200, g.in_size))
    error = np.abs(pool.forward(x) - pool2d(kind, g, x))
    bound = pool.ideal_error_bound(x)
    assert np.all(error <= bound)
    if kind == "max_pool":
        assert np.mean(error == bound) > 0.2


def test_an_average_pool_rounding_a_tie_reaches_its_bound():
    # Inputs on the grid (no input error) whose window mean is half an LSB: the mean
    # rounds away from zero, an error of exactly half an LSB, the bound (to 1e-6).
    g = ConvGeometry(2, 2, 1, 2, 2, 2, 2)
    q = QuantParams.from_range(-1, 1)
    pool = MCUPool("avg_pool", g, q, MCUParams())
    x = dequantize(np.array([[0, 1, 0, 1]]) + q.zero_point, *q)
    assert np.array_equal(pool.quantize_input(x) - q.zero_point, [[0, 1, 0, 1]])
    error = np.abs(pool.forward(x) - x.mean())
    assert error[0, 0] == pytest.approx(0.5 * pool.output_lsb, rel=1e-12)
    assert error[0, 0] <= pool.ideal_error_bound(x)[0, 0] <= error[0, 0] * (1 + 2e-6)

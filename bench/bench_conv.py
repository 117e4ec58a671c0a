"""Convolution throughput: devsim's float, crossbar and int8 conv layers against a plain
NumPy im2col implementation and the machine's GEMM rate, in one run.

For each layer (a small CNN's 3x3 'same' convolutions on 8x8, 16x16 and 28x28 maps,
batch 64), all measured in the same run and timed in interleaved rounds
(:func:`bench.timing.race`):

* ``gemm64`` / ``gemm32``: the bare product of the layer's im2col matrix (T*P, K) with
  the (K, c_out) kernel, float64 / float32, on arrays made beforehand: the machine's
  GEMM rate for exactly these shapes, the floor of any im2col convolution;
* ``numpy64`` / ``numpy32``: the baseline a user would write: ``np.pad``,
  ``sliding_window_view``, a reshape (the im2col copy), the GEMM and the bias;
* ``ideal64``: ``devices.conv.IdealConv2D.forward`` (the ideal device, float64);
* ``ideal64+wp``: the same with a weight perturbation per probe (T kernels: one batched
  product of each probe's window rows with its kernel offset, on top of the shared GEMM);
* ``xbar32``: ``devsim.array_layers.ArrayConv2D`` on a float32 crossbar with the noisy
  periphery of ``bench_crossbar.py`` (7-bit DAC, 9-bit ADC, 1 % read noise, output
  noise): one MVM per output position, T*P reads (the NumPy columns do no noise);
* ``numpy_i8``: the int8 baseline: im2col of the int8 map padded with the input zero
  point, an int32 matrix product, the TFLM requantization vectorised in int64, the clamp;
* ``mcu_i8``: ``devices.mcu_conv.MCUConv2D.forward_q``, the bit-exact Numba kernel (one
  thread); its output is checked equal to ``numpy_i8`` before timing.

Rates are GFLOP/s counting 2 T P K c_out per call (G MAC/s x 2 for the int8 columns,
for comparison on one scale).

A second table times whole networks (:data:`NETWORKS`: the CNN of
``experiments/zhao_cnn.py`` on 8x8 digits and a LeNet-like CNN on 28x28 maps) through
``Network.run`` (devsim's layer loop: the layers of the network definition on a device),
in probes per second at batches of 64 and 1024, against, in the same run:

* ``gemm64``: the bare GEMMs of the network's conv and dense layers on im2col matrices
  made beforehand (the floor of any im2col network);
* ``numpy64``: the whole forward pass in plain NumPy (``sliding_window_view`` im2col per
  convolution, ``einsum`` for the depthwise one, reshapes for pooling, the GEMMs);
* ``net_ideal64``: the network on the ideal device; ``net_ideal64+np``: with a node
  perturbation per probe on every node (what NP and MGD's node mode ask for);
* ``net_xbar32``: on the noisy float32 crossbar (every conv unrolled onto its array);
* ``net_mcu_i8``: on the int8 MCU (the bit-exact TFLM kernels, quantize and dequantize
  between layers: the float-facing network pass every estimator uses).

Usage (from the project root)::

    PYTHONPATH=. python bench/bench_conv.py [--repeat 5]

Thread counts follow ``OPENBLAS_NUM_THREADS`` (the GEMMs) and are printed; the int8
kernel and im2col are single-threaded Numba.
"""
from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # as bench_crossbar.py: see there

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

from bench.timing import race  # noqa: E402
from devices.conv import IdealConv2D  # noqa: E402
from devsim.array_layers import ArrayConv2D  # noqa: E402
from devices.crossbar import CrossbarParams  # noqa: E402
from devices.mcu import MCUParams  # noqa: E402
from devices.mcu_quant import QuantParams  # noqa: E402
from devices.mcu_reference import multiply_by_quantized_multiplier  # noqa: E402
from devices.mcu_conv import MCUConv2D  # noqa: E402
from devsim.config import from_data  # noqa: E402
from devsim.conv_geometry import ConvGeometry  # noqa: E402
from devsim.network import Network, NetworkParams  # noqa: E402

BATCH = 64
LAYERS = {  # name: (H, W, C_in, C_out), 3x3 'same', stride 1
    "8x8x1->16": (8, 8, 1, 16),
    "8x8x16->32": (8, 8, 16, 32),
    "16x16x8->16": (16, 16, 8, 16),
    "16x16x16->32": (16, 16, 16, 32),
    "28x28x1->8": (28, 28, 1, 8),
    "14x14x8->16": (14, 14, 8, 16),
}
NOISY = dict(read_noise=0.01, dac_bits=7, input_range=1.0, adc_bits=9, output_range=12.0,
             out_noise=0.06, precision="float32")
COLUMNS = ("gemm64", "numpy64", "ideal64", "ideal64+wp", "gemm32", "numpy32", "xbar32",
           "numpy_i8", "mcu_i8")


def numpy_im2col(maps, g: ConvGeometry, pad_value=0):
    """(T*P, K) windows of (T, H, W, C) maps by np.pad and sliding_window_view."""
    bottom = max((g.out_h - 1) * g.stride_h + g.kernel_h - g.in_h - g.pad_top, 0)
    right = max((g.out_w - 1) * g.stride_w + g.kernel_w - g.in_w - g.pad_left, 0)
    padded = np.pad(maps, ((0, 0), (g.pad_top, bottom), (g.pad_left, right), (0, 0)),
                    constant_values=pad_value)
    windows = sliding_window_view(padded, (g.kernel_h, g.kernel_w), axis=(1, 2))
    windows = windows[:, ::g.stride_h, ::g.stride_w][:, :g.out_h, :g.out_w]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, g.patch_size)   # (dy, dx, c)


def numpy_conv(maps, g, w_t, b):
    """The float baseline: im2col by NumPy, GEMM, bias."""
    return numpy_im2col(maps, g) @ w_t + b


def numpy_conv_int8(maps_q, g, w32_t, b, m, s, z_in, z_out, lo, hi):
    """The int8 baseline: im2col padded with z_in, int32 product, TFLM requantization."""
    acc = (numpy_im2col(maps_q, g, z_in).astype(np.int32) - np.int32(z_in)) @ w32_t + b
    y = multiply_by_quantized_multiplier(acc, m, s) + z_out
    return np.clip(y, lo, hi).astype(np.int8)


def candidates(g: ConvGeometry, c_out: int, rng):
    n_k, n_pos = g.patch_size, g.n_positions
    w = rng.normal(0, 1 / np.sqrt(n_k), (c_out, n_k))
    b = rng.normal(0, 0.1, c_out)
    x = rng.uniform(-1, 1, (BATCH, g.in_size))
    x32 = x.astype(np.float32)
    maps64, maps32 = x.reshape(BATCH, g.in_h, g.in_w, g.in_c), x32.reshape(BATCH, g.in_h,
                                                                           g.in_w, g.in_c)
    cols64 = rng.random((BATCH * n_pos, n_k))
    cols32 = cols64.astype(np.float32)
    w_t64, w_t32 = np.ascontiguousarray(w.T), np.ascontiguousarray(w.T, dtype=np.float32)
    ideal = IdealConv2D(g, w, b)
    wp = rng.normal(0, 0.01, (BATCH, ideal.n_params))
    xbar = ArrayConv2D.build(CrossbarParams(**NOISY), g, w, b, rng)
    q_in, q_out = QuantParams.from_range(-1, 1), QuantParams.from_range(-2, 2)
    mcu = MCUConv2D.from_float(g, w, b, q_in, q_out, MCUParams(fused_activation="relu"))
    x_q = mcu.quantize_input(x)
    maps_q = x_q.reshape(maps64.shape)
    int8_args = (maps_q, g, mcu.w_q.astype(np.int32).T.copy(), mcu.b_q, mcu.multiplier,
                 mcu.shift, mcu.input_q.zero_point, mcu.output_q.zero_point, mcu.act_min,
                 mcu.act_max)
    if not np.array_equal(mcu.forward_q(x_q), numpy_conv_int8(*int8_args).reshape(BATCH, -1)):
        raise AssertionError("int8 kernel and NumPy baseline disagree")
    if not np.allclose(ideal.forward(x), numpy_conv(maps64, g, w_t64, b).reshape(BATCH, -1)):
        raise AssertionError("float conv and NumPy baseline disagree")
    return {
        "gemm64": lambda: cols64 @ w_t64,
        "numpy64": lambda: numpy_conv(maps64, g, w_t64, b),
        "ideal64": lambda: ideal.forward(x),
        "ideal64+wp": lambda: ideal.forward(x, None, wp),
        "gemm32": lambda: cols32 @ w_t32,
        "numpy32": lambda: numpy_conv(maps32, g, w_t32, b.astype(np.float32)),
        "xbar32": lambda: xbar.forward(x32),
        "numpy_i8": lambda: numpy_conv_int8(*int8_args),
        "mcu_i8": lambda: mcu.forward_q(x_q),
    }


NETWORKS = {  # name: (input shape, layers)
    "zhao_cnn 8x8x1": ((8, 8, 1), [
        {"type": "conv2d", "channels": 16, "activation": "relu"},
        {"type": "depthwise_conv2d", "stride": [2, 2], "activation": "relu"},
        {"type": "conv2d", "channels": 32, "kernel": [1, 1], "activation": "relu"},
        {"type": "avg_pool"}, "flatten", {"units": 10, "activation": "identity"}]),
    "lenet 28x28x1": ((28, 28, 1), [
        {"type": "conv2d", "channels": 8, "activation": "relu"}, {"type": "max_pool"},
        {"type": "conv2d", "channels": 16, "activation": "relu"}, {"type": "max_pool"},
        "flatten", {"units": 10, "activation": "identity"}]),
}
NETWORK_COLUMNS = ("gemm64", "numpy64", "net_ideal64", "net_ideal64+np", "net_xbar32",
                   "net_mcu_i8")


def numpy_network(net: Network, x):
    """The network's forward pass in plain NumPy from its parameters (float64)."""
    h = x
    for shape, device, act in zip(net.layers, net.devices, net.activations):
        g, n = shape.geometry, len(h)
        if shape.kind in ("conv2d", "depthwise_conv2d"):
            flat = device.read()
            w, b = flat[:-shape.matrix[0]].reshape(shape.matrix), flat[-shape.matrix[0]:]
            maps = h.reshape(n, *shape.in_shape)
            if shape.kind == "conv2d":
                h = numpy_im2col(maps, g) @ w.T + b
            else:
                cols = numpy_im2col(maps, g).reshape(n * g.n_positions, g.taps, g.in_c)
                h = np.einsum("pkc,cmk->pcm", cols, w.reshape(g.in_c, -1, g.taps))
                h = h.reshape(n * g.n_positions, -1) + b
        elif shape.kind in ("avg_pool", "max_pool"):   # 'valid', stride = window
            maps = h.reshape(n, g.out_h, g.kernel_h, g.out_w, g.kernel_w, g.in_c)
            h = maps.mean(axis=(2, 4)) if shape.kind == "avg_pool" else maps.max(axis=(2, 4))
        elif shape.kind == "dense":
            flat = device.read()
            h = h @ flat[:-shape.matrix[0]].reshape(shape.matrix).T + flat[-shape.matrix[0]:]
        h = act(h.reshape(n, -1))
    return h


def network_candidates(in_shape, layers, batch, rng):
    params = from_data(NetworkParams, {"input_shape": list(in_shape), "layers": layers})
    n_in = int(np.prod(in_shape))
    nets = {kind: Network(params.replace(device=device), n_in, np.random.default_rng(1), rng)
            for kind, device in (("ideal", params.device),
                                 ("xbar", CrossbarParams(**NOISY)),
                                 ("mcu", MCUParams(activation_range=(-3.0, 3.0))))}
    ideal = nets["ideal"]
    x = rng.uniform(0, 1, (batch, n_in))
    node = rng.normal(0, 0.01, (batch, ideal.n_nodes))
    if not np.allclose(ideal.run(x).outputs, numpy_network(ideal, x)):
        raise AssertionError("network pass and NumPy network disagree")
    gemms = [(rng.random((batch * (s.geometry.n_positions if s.geometry else 1), s.matrix[1])),
              rng.random((s.matrix[1], s.matrix[0])))
             for s in ideal.layers if s.kind in ("conv2d", "dense")]
    return ideal.layers, {
        "gemm64": lambda: [a @ b for a, b in gemms],
        "numpy64": lambda: numpy_network(ideal, x),
        "net_ideal64": lambda: ideal.run(x),
        "net_ideal64+np": lambda: ideal.run(x, node),
        "net_xbar32": lambda: nets["xbar"].run(x),
        "net_mcu_i8": lambda: nets["mcu"].run(x),
    }


def network_table(repeat: int, rng):
    print("\n# whole networks through Network.run: probes per second; ratios net_ideal64 / "
          "numpy64, net_ideal64 / gemm64, net_mcu_i8 / numpy64")
    print("| network | batch | MFLOP per probe | " + " | ".join(NETWORK_COLUMNS)
          + " | ideal/np64 | ideal/gemm64 | mcu/np64 |")
    print("|" + "---|" * (6 + len(NETWORK_COLUMNS)))
    for name, (in_shape, layers) in NETWORKS.items():
        for batch in (64, 1024):
            shapes, cands = network_candidates(in_shape, layers, batch, rng)
            rate = {k: batch / t for k, t in race(cands, repeat).items()}
            mflop = (sum(2 * s.n_out * s.matrix[1] for s in shapes if s.n_params)) / 1e6
            row = [name, str(batch), f"{mflop:.3f}"] + [f"{rate[c]:,.0f}"
                                                        for c in NETWORK_COLUMNS]
            row += [f"{rate[a] / rate[b]:.2f}" for a, b in
                    [("net_ideal64", "numpy64"), ("net_ideal64", "gemm64"),
                     ("net_mcu_i8", "numpy64")]]
            print("| " + " | ".join(row) + " |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--part", choices=("layers", "networks", "all"), default="all")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    from threadpoolctl import threadpool_info
    blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
               default=1)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, BLAS threads {blas}, batch {BATCH}, 3x3 'same' stride 1")
    if args.part == "networks":
        network_table(args.repeat, rng)
        return
    print("# GFLOP/s (2 T P K c_out per call); ratios: ideal64 / numpy64, ideal64 / gemm64, "
          "xbar32 / numpy32, xbar32 / gemm32, mcu_i8 / numpy_i8, mcu_i8 / gemm64")
    ratios = ["ideal/np64", "ideal/gemm64", "xbar/np32", "xbar/gemm32", "mcu/np_i8",
              "mcu/gemm64"]
    print("| layer | K | " + " | ".join(COLUMNS + tuple(ratios)) + " |")
    print("|" + "---|" * (2 + len(COLUMNS) + len(ratios)))
    for name, (h, w, c_in, c_out) in LAYERS.items():
        g = ConvGeometry(h, w, c_in, 3, 3)
        flops = 2 * BATCH * g.n_positions * g.patch_size * c_out
        rate = {k: flops / t / 1e9 for k, t in race(candidates(g, c_out, rng),
                                                    args.repeat).items()}
        row = [name, str(g.patch_size)] + [f"{rate[c]:.2f}" for c in COLUMNS]
        row += [f"{rate[a] / rate[b]:.2f}" for a, b in
                [("ideal64", "numpy64"), ("ideal64", "gemm64"), ("xbar32", "numpy32"),
                 ("xbar32", "gemm32"), ("mcu_i8", "numpy_i8"), ("mcu_i8", "gemm64")]]
        print("| " + " | ".join(row) + " |", flush=True)
    if args.part == "all":
        network_table(args.repeat, rng)


if __name__ == "__main__":
    main()

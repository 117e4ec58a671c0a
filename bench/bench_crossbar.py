"""Noisy crossbar inference throughput against plain NumPy and the machine's GEMM rate.

For each network (784-256-10 and 64-256-256-10) and batch size (1, 64, 1024), all in
one run:

* ``gemm32`` / ``gemm64``: the bare matrix products of the layers (``X @ W.T``) in
  float32 / float64: the machine's GEMM rate for these shapes;
* ``numpy32``: a plain NumPy implementation of the same noisy layers (DAC clip and
  quantise, GEMM, bias, column read noise of the same variance, output noise, ADC clip
  and quantise), float32, noise from ``numpy.random.Generator``;
* ``devsim32`` / ``devsim64``: the layers as ``crossbar`` devices (``forward`` chained,
  each layer's output the next one's input, as the layers-only NumPy model does);
* ``net32``: the whole ``devsim.network.Network`` (sigmoid after every layer) on
  float32 crossbars: what a training run pays per probe.

The noisy model is aihwkit's ``InferenceRPUConfig`` periphery defaults (7-bit DAC over
[-1, 1], 9-bit ADC over [-12, 12], output noise 0.06) plus 1 % white read noise per
device. Rates are GFLOP/s counting 2 n_in n_out per layer per probe. Ratios are taken
against numbers measured in this same run. Usage::

    python bench/bench_crossbar.py [--repeat 5] [--aihwkit]

``--aihwkit`` adds IBM aihwkit's ``AnalogLinear`` inference with ``InferenceRPUConfig``
defaults, always on one thread, its fastest setting (needs aihwkit and torch installed).
Thread counts of everything else follow ``OPENBLAS_NUM_THREADS`` / ``NUMBA_NUM_THREADS``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from devices.crossbar import CrossbarParams, quant_step
from devsim.network import LayerParams, Network, NetworkParams

NETWORKS = {"784-256-10": (784, 256, 10), "64-256-256-10": (64, 256, 256, 10)}
BATCHES = (1, 64, 1024)
NOISY = dict(read_noise=0.01, dac_bits=7, input_range=1.0, adc_bits=9, output_range=12.0,
             out_noise=0.06)


def best_time(fn, repeat: int, min_time: float = 0.05) -> float:
    """Best per-call seconds over ``repeat`` rounds of enough calls to last ``min_time``."""
    fn()
    calls, elapsed = 1, 0.0
    while elapsed < min_time:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        calls *= 2
    calls //= 2
    best = elapsed / calls
    for _ in range(repeat - 1):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def devsim_network(widths, precision: str) -> Network:
    layers = tuple(LayerParams(units=w) for w in widths[1:])
    params = NetworkParams(layers=layers, device=CrossbarParams(precision=precision, **NOISY))
    return Network(params, widths[0], np.random.default_rng(0), np.random.default_rng(1))


class NumpyCrossbar:
    """The same noisy MVM in plain vectorised NumPy (the baseline a user would write)."""

    def __init__(self, network: Network, dtype):
        flat = network.read()
        self.layers = []
        for (n_out, n_in), o in zip(network.shapes, network.param_offsets):
            w = flat[o:o + n_out * n_in].reshape(n_out, n_in).astype(dtype)
            b = flat[o + n_out * n_in:o + n_out * n_in + n_out].astype(dtype)
            self.layers.append((w, b))
        self.rng = np.random.default_rng(2)
        self.dtype = dtype
        self.in_step = quant_step(NOISY["input_range"], NOISY["dac_bits"])
        self.out_step = quant_step(NOISY["output_range"], NOISY["adc_bits"])
        self.var_dev = 2.0 * NOISY["read_noise"] ** 2  # differential pair, w_max = 1

    def __call__(self, x):
        h = x
        for i, (w, b) in enumerate(self.layers):
            xq = np.rint(np.clip(h, -1.0, 1.0) / self.in_step).astype(self.dtype) * self.in_step
            y = xq @ w.T + b
            var = self.var_dev * (np.einsum("ti,ti->t", xq, xq) + 1.0)[:, None] \
                + NOISY["out_noise"] ** 2
            y += np.sqrt(var) * self.rng.standard_normal(y.shape, dtype=self.dtype)
            bound = NOISY["output_range"]
            y = np.rint(np.clip(y, -bound, bound) / self.out_step) * self.out_step
            h = y
        return h


def layers_fn(net: Network, x):
    """The network's devices chained without activations."""
    def run():
        h = x
        for device in net.devices:
            h = device.forward(h)
    return run


def gemm_fn(widths, batch, dtype, rng):
    xs = [rng.random((batch, n_in)).astype(dtype) for n_in in widths[:-1]]
    ws = [rng.random((n_out, n_in)).astype(dtype) for n_in, n_out in zip(widths, widths[1:])]
    return lambda: [x @ w.T for x, w in zip(xs, ws)]


def aihwkit_fn(widths, batch):
    """aihwkit's analog inference (to be timed under a one-thread BLAS limit)."""
    import torch
    from aihwkit.nn import AnalogLinear, AnalogSequential
    from aihwkit.simulator.configs import InferenceRPUConfig

    torch.set_num_threads(1)
    mods = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        mods.append(AnalogLinear(n_in, n_out, bias=True, rpu_config=InferenceRPUConfig()))
        if i < len(widths) - 2:
            mods.append(torch.nn.Sigmoid())
    model = AnalogSequential(*mods).eval()
    x = torch.rand(batch, widths[0])

    def run():
        with torch.no_grad():
            model(x)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--aihwkit", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}")
    big = rng.random((1024, 1024)).astype(np.float32)
    peak32 = 2 * 1024 ** 3 / best_time(lambda: big @ big, args.repeat) / 1e9
    big64 = big.astype(np.float64)
    peak64 = 2 * 1024 ** 3 / best_time(lambda: big64 @ big64, args.repeat) / 1e9
    print(f"# peak GEMM 1024^3: float32 {peak32:.1f} GFLOP/s, float64 {peak64:.1f} GFLOP/s")
    cols = ["network", "batch", "gemm32", "gemm64", "numpy32", "devsim32", "devsim64", "net32"]
    if args.aihwkit:
        cols.append("aihwkit")
    import numba
    from threadpoolctl import threadpool_info
    blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
               default=1)
    print(f"# threads: BLAS {blas}, Numba {numba.get_num_threads()}"
          + ("; aihwkit always 1" if args.aihwkit else ""))
    print("# GFLOP/s per column; ratios: devsim32 / numpy32, devsim32 / gemm32, "
          "devsim64 / gemm64, devsim32 / peak32"
          + (", devsim32 / aihwkit, net32 / aihwkit (both with sigmoids)" if args.aihwkit
             else ""))
    print("| " + " | ".join(cols + ["d32/np32", "d32/gemm32", "d64/gemm64", "d32/peak32"]
                            + (["d32/aihwkit", "net32/aihwkit"] if args.aihwkit else []))
          + " |")
    print("|" + "---|" * (len(cols) + 4 + 2 * args.aihwkit))
    for name, widths in NETWORKS.items():
        flops = 2 * sum(a * b for a, b in zip(widths, widths[1:]))
        nets = {prec: devsim_network(widths, prec) for prec in ("float32", "float64")}
        base = NumpyCrossbar(nets["float32"], np.float32)
        for batch in BATCHES:
            x = rng.random((batch, widths[0]))
            rate = {}
            for dt, key in ((np.float32, "gemm32"), (np.float64, "gemm64")):
                rate[key] = flops * batch / best_time(gemm_fn(widths, batch, dt, rng),
                                                      args.repeat) / 1e9
            rate["numpy32"] = flops * batch / best_time(lambda: base(x), args.repeat) / 1e9
            for prec, key in (("float32", "devsim32"), ("float64", "devsim64")):
                rate[key] = flops * batch / best_time(layers_fn(nets[prec], x),
                                                      args.repeat) / 1e9
            rate["net32"] = flops * batch / best_time(lambda: nets["float32"].run(x),
                                                      args.repeat) / 1e9
            if args.aihwkit:
                from threadpoolctl import threadpool_limits
                with threadpool_limits(1):  # aihwkit's fastest setting, whatever the rest use
                    rate["aihwkit"] = flops * batch / best_time(aihwkit_fn(widths, batch),
                                                                args.repeat) / 1e9
            row = [name, str(batch)] + [f"{rate[c]:.2f}" for c in cols[2:]]
            row += [f"{rate['devsim32'] / rate['numpy32']:.2f}",
                    f"{rate['devsim32'] / rate['gemm32']:.2f}",
                    f"{rate['devsim64'] / rate['gemm64']:.2f}",
                    f"{rate['devsim32'] / peak32:.2f}"]
            if args.aihwkit:
                row += [f"{rate['devsim32'] / rate['aihwkit']:.1f}",
                        f"{rate['net32'] / rate['aihwkit']:.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Noisy crossbar inference throughput against plain NumPy and the machine's GEMM rate.

For each network (784-256-10 and 64-256-256-10) and batch size (1, 64, 1024), all in
one run:

* ``gemm32`` / ``gemm64``: the bare matrix products of the layers (``X @ W.T``) in
  float32 / float64, the faster of two weight layouts (rows of W, or W.T contiguous):
  the machine's GEMM rate for these shapes;
* ``numpy32``: a plain NumPy implementation of the same noisy layers (DAC clip and
  quantise, GEMM, bias, column read noise of the same variance, output noise, ADC clip
  and quantise), float32, noise from ``numpy.random.Generator``;
* ``devsim32`` / ``devsim64``: the layers as a ``devsim.network.Network`` of
  ``crossbar`` devices with identity activations (each layer's output the next one's
  input, as the layers-only NumPy model does), which runs as one compiled pass
  (:mod:`devices.crossbar_chain`);
* ``layers32``: the same float32 layers called one by one (``Crossbar.forward`` chained,
  into output arrays kept between calls): the layer-by-layer path, for comparison;
* ``net32``: the network with a sigmoid after every layer, on float32 crossbars: what
  a training run pays per probe.

The noisy model is aihwkit's ``InferenceRPUConfig`` periphery defaults (7-bit DAC over
[-1, 1], 9-bit ADC over [-12, 12], output noise 0.06) plus 1 % white read noise per
device. Rates are GFLOP/s counting 2 n_in n_out per layer per probe. Ratios are taken
against numbers measured in this same run; the columns of one row are timed in
interleaved rounds (:func:`bench.timing.race`), so that a slow phase of the machine
falls on all of them alike. Usage (from the project root)::

    PYTHONPATH=. python bench/bench_crossbar.py [--repeat 7] [--aihwkit]

``--aihwkit`` adds IBM aihwkit's ``AnalogLinear`` inference with ``InferenceRPUConfig``
defaults, always on one thread, its fastest setting (needs aihwkit and torch installed).
Thread counts of everything else follow ``OPENBLAS_NUM_THREADS`` / ``NUMBA_NUM_THREADS``.

OpenBLAS's worker threads spin for about 0.1 s after each threaded call, and a spinning
worker takes half a core from the threads of devsim's row split (large batches), so a
devsim round timed right after a threaded GEMM round would measure that interference,
not devsim (64-256-256-10 at batch 1024 on two threads: 3.3 ms against 1.6 ms). The
script therefore sets ``OPENBLAS_THREAD_TIMEOUT=20`` (workers sleep after 2^20 cycles,
about 0.4 ms) unless the environment already sets it; the GEMM columns' back-to-back
calls never idle that long.
"""
from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

from bench.timing import race  # noqa: E402
from devices.crossbar import CrossbarParams  # noqa: E402
from devices.crossbar_periphery import quant_step  # noqa: E402
from devsim.activations import Identity, Sigmoid  # noqa: E402
from devsim.network import LayerParams, Network, NetworkParams  # noqa: E402

NETWORKS = {"784-256-10": (784, 256, 10), "64-256-256-10": (64, 256, 256, 10)}
BATCHES = (1, 64, 1024)
NOISY = dict(read_noise=0.01, dac_bits=7, input_range=1.0, adc_bits=9, output_range=12.0,
             out_noise=0.06)


def devsim_network(widths, precision: str, activation=Sigmoid()) -> Network:
    layers = tuple(LayerParams(units=w, activation=activation) for w in widths[1:])
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
    """The network's devices chained without activations, each writing into an output
    array kept between calls (as a serving or training loop keeps its arrays: a fresh
    1 MB array per layer and call costs page faults at batch 1024)."""
    dtype = net.devices[0].forward(x[:1]).dtype
    outs = [np.empty((len(x), n_out), dtype=dtype) for n_out, _ in net.shapes]

    def run():
        h = x
        for device, out in zip(net.devices, outs):
            h = device.forward(h, out=out)
    return run


def gemm_fn(widths, batch, dtype, rng, transposed: bool):
    """The layers' bare products ``x @ W.T``, the weights held as (n_out, n_in) rows
    (``transposed=False``) or as a contiguous (n_in, n_out) matrix (``True``); OpenBLAS's
    speed depends on the layout, and the faster one is the machine's rate."""
    xs = [rng.random((batch, n_in)).astype(dtype) for n_in in widths[:-1]]
    ws = [rng.random((n_out, n_in)).astype(dtype) for n_in, n_out in zip(widths, widths[1:])]
    ops = [np.ascontiguousarray(w.T) if transposed else w.T for w in ws]
    return lambda: [x @ w for x, w in zip(xs, ops)]


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
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--aihwkit", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}")
    big = rng.random((1024, 1024)).astype(np.float32)
    big64 = big.astype(np.float64)
    peak = race({"32": lambda: big @ big, "64": lambda: big64 @ big64}, args.repeat)
    peak32, peak64 = (2 * 1024 ** 3 / peak[k] / 1e9 for k in ("32", "64"))
    print(f"# peak GEMM 1024^3: float32 {peak32:.1f} GFLOP/s, float64 {peak64:.1f} GFLOP/s")
    cols = ["network", "batch", "gemm32", "gemm64", "numpy32", "devsim32", "devsim64",
            "layers32", "net32"]
    if args.aihwkit:
        cols.append("aihwkit")
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits
    blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"),
               default=1)
    print(f"# threads: BLAS {blas}, Numba {numba.get_num_threads()}, "
          f"OPENBLAS_THREAD_TIMEOUT {os.environ['OPENBLAS_THREAD_TIMEOUT']}"
          + ("; aihwkit always 1" if args.aihwkit else ""))
    print("# GFLOP/s per column; ratios: devsim32 / numpy32, devsim32 / gemm32, "
          "devsim64 / gemm64, net32 / gemm32, devsim32 / peak32"
          + (", devsim32 / aihwkit, net32 / aihwkit (aihwkit with sigmoids)" if args.aihwkit
             else ""))
    print("| " + " | ".join(cols + ["d32/np32", "d32/gemm32", "d64/gemm64", "net32/gemm32",
                                    "d32/peak32"]
                            + (["d32/aihwkit", "net32/aihwkit"] if args.aihwkit else []))
          + " |")
    print("|" + "---|" * (len(cols) + 5 + 2 * args.aihwkit))
    for name, widths in NETWORKS.items():
        flops = 2 * sum(a * b for a, b in zip(widths, widths[1:]))
        nets = {prec: devsim_network(widths, prec, Identity())
                for prec in ("float32", "float64")}
        net32 = devsim_network(widths, "float32")
        base = NumpyCrossbar(nets["float32"], np.float32)
        for batch in BATCHES:
            x = rng.random((batch, widths[0]))
            candidates = {
                **{f"gemm{bits}{layout}": gemm_fn(widths, batch, dt, rng, layout == "t")
                   for bits, dt in ((32, np.float32), (64, np.float64)) for layout in "nt"},
                "numpy32": lambda: base(x),
                "devsim32": lambda: nets["float32"].run(x),
                "devsim64": lambda: nets["float64"].run(x),
                "layers32": layers_fn(nets["float32"], x),
                "net32": lambda: net32.run(x),
            }
            if args.aihwkit:
                # aihwkit's fastest setting, whatever the rest use
                candidates["aihwkit"] = (aihwkit_fn(widths, batch),
                                         lambda: threadpool_limits(1))
            rate = {k: flops * batch / t / 1e9
                    for k, t in race(candidates, args.repeat).items()}
            for bits in (32, 64):
                rate[f"gemm{bits}"] = max(rate[f"gemm{bits}n"], rate[f"gemm{bits}t"])
            row = [name, str(batch)] + [f"{rate[c]:.2f}" for c in cols[2:]]
            row += [f"{rate['devsim32'] / rate['numpy32']:.2f}",
                    f"{rate['devsim32'] / rate['gemm32']:.2f}",
                    f"{rate['devsim64'] / rate['gemm64']:.2f}",
                    f"{rate['net32'] / rate['gemm32']:.2f}",
                    f"{rate['devsim32'] / peak32:.2f}"]
            if args.aihwkit:
                row += [f"{rate['devsim32'] / rate['aihwkit']:.1f}",
                        f"{rate['net32'] / rate['aihwkit']:.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()

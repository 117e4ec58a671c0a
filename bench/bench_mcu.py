"""Bit-exact int8 fully-connected throughput: devices/mcu.py kernels against NumPy, in one run.

For each layer shape (probes T, n_in, n_out), all measured in the same run:

* ``numpy``: the baseline, NumPy int32 matmul of the zero-point-corrected input with
  the int8 weights (as int32), plus bias, then the TFLM requantization vectorised in
  int64 (SaturatingRoundingDoublingHighMul, RoundingDivideByPOT) and the clamp;
* ``kernel``: ``devices.mcu.fully_connected`` (Numba, int8 x int16 dot products, one thread);
* ``perturbed``: ``devices.mcu.fully_connected_perturbed``, every probe with its own
  integer weight and bias perturbation (clamped), as quantized zeroth-order training
  runs it, the perturbations passed in as an int16 array (their drawing not timed);
* ``seeded``: ``devices.mcu.fully_connected_rademacher``, the same with +-1 LSB
  Rademacher directions drawn inside the kernel from a counter-based key;
* ``f64 gemm``: ``X @ W.T`` in float64 through BLAS, not bit-exact, for scale only.

The kernel's output is checked equal to the baseline's before timing. Rates are
G MAC/s (T n_in n_out multiply-accumulates per call); times are the best of
``--repeat`` runs after one warm-up; ratios are to the NumPy baseline of the same shape.

    python -m bench.bench_mcu [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from bench.timing import best_time
from devices.mcu import fully_connected, fully_connected_perturbed, fully_connected_rademacher
from devices.mcu_quant import activation_bounds, requant_params
from devices.mcu_reference import multiply_by_quantized_multiplier
from devsim import crng

SHAPES = ((256, 64, 128), (1024, 64, 10), (256, 512, 256), (64, 1024, 1024))


def numpy_fc(x, w32, b, m, s, z_in, z_out, lo, hi):
    """The baseline: int32 matmul + bias, TFLM requantization in int64, clamp."""
    acc = (x.astype(np.int32) - np.int32(z_in)) @ w32.T + b
    y = multiply_by_quantized_multiplier(acc, m, s) + z_out
    return np.clip(y, lo, hi).astype(np.int8)


def bench_shape(n_probe, n_in, n_out, repeat, rng):
    x = rng.integers(-128, 128, (n_probe, n_in)).astype(np.int8)
    w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
    b = rng.integers(-20_000, 20_000, n_out).astype(np.int32)
    ws = np.exp(rng.uniform(-7, -5, n_out)).astype(np.float32)
    m, s = requant_params(np.float32(0.02), ws, np.float32(0.05))
    z_in, z_out = 3, -7
    lo, hi = activation_bounds("relu", np.float32(0.05), z_out)
    w32 = w.astype(np.int32)
    out = np.empty((n_probe, n_out), np.int8)
    args = (m, s, np.int32(z_in), np.int32(z_out), np.int32(lo), np.int32(hi), out)
    n_pert = min(n_probe, 64)  # perturbed probes, bounded so dw fits in memory
    dw = rng.integers(-1, 2, (n_pert, n_out, n_in)).astype(np.int16)
    db = rng.integers(-100, 101, (n_pert, n_out)).astype(np.int64)
    out_p = np.empty((n_pert, n_out), np.int8)
    xf, wf = x.astype(np.float64), w.astype(np.float64)

    fully_connected(x, w, b, *args)
    if not np.array_equal(out, numpy_fc(x, w32, b, m, s, z_in, z_out, lo, hi)):
        raise AssertionError("kernel and NumPy baseline disagree")
    macs = n_probe * n_in * n_out
    rows = {
        "numpy": best_time(lambda: numpy_fc(x, w32, b, m, s, z_in, z_out, lo, hi), repeat) / macs,
        "kernel": best_time(lambda: fully_connected(x, w, b, *args), repeat) / macs,
        "perturbed": best_time(lambda: fully_connected_perturbed(
            x[:n_pert], w, b, dw, db, *args[:-1], out_p), repeat) / (n_pert * n_in * n_out),
        "seeded": best_time(lambda: fully_connected_rademacher(
            x[:n_pert], w, b, crng.stream_key_np(0, 1), np.int64(0), np.int64(1), np.int64(100),
            *args[:-1], out_p), repeat) / (n_pert * n_in * n_out),
        "f64 gemm": best_time(lambda: xf @ wf.T, repeat) / macs,
    }
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, OMP/OPENBLAS threads "
          f"{os.environ.get('OMP_NUM_THREADS', '-')}/{os.environ.get('OPENBLAS_NUM_THREADS', '-')}")
    print(f"{'T x n_in x n_out':>20} {'path':>10} {'G MAC/s':>9} {'vs numpy':>9}")
    for shape in SHAPES:
        rows = bench_shape(*shape, args.repeat, rng)
        base = rows["numpy"]
        for name, sec_per_mac in rows.items():
            label = "x".join(str(n) for n in shape) if name == "numpy" else ""
            print(f"{label:>20} {name:>10} {1e-9 / sec_per_mac:9.2f} {base / sec_per_mac:8.1f}x")


if __name__ == "__main__":
    main()

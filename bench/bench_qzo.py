"""Quantized zeroth-order probes on the int8 MCU: suffix passes and seeded directions.

One quantized 64-256-256-10 ReLU network (post-training quantized, as in
experiments/mcu_corruption.py), B = 32 samples, n = 8 queries per sample (256 probes
per call). Measured in the same run, best of ``--repeat`` after a warm-up:

* node perturbation of layer l: ``full`` re-runs the whole network with the
  perturbation in the flat node vector (``Hardware.cost``); ``suffix`` runs layers
  l.. from the cached layer input (``Hardware.run`` of a ``Request`` with ``start=l``,
  zeros on the later layers' nodes). Costs are checked equal.
* weight perturbation of layer 0: ``passed`` draws the directions with
  ``trainer.qzo.weight_directions`` and sends them as whole-LSB float perturbations
  (``Hardware.run``; a request's perturbation covers every layer it runs, so the later
  layers get zero rows and run through the per-probe perturbed kernels too, as in the
  central differences of ``trainer.qzo``); ``seeded`` lets the kernel draw them from
  the key (``Request.seeded``). Costs are checked equal.

    python -m bench.bench_qzo [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from devsim.activations import Identity, ReLU
from devsim.bench import Bench
from devsim.hardware import Hardware, Request, Seeded
from devsim.network import LayerParams, Network, NetworkParams
from devsim.quantize import quantize_network
from trainer.qzo import weight_directions
from bench.timing import best_time

WIDTHS = (64, 256, 256, 10)
B, N = 32, 8


def hardware(rng) -> tuple[Hardware, np.ndarray]:
    acts = [ReLU()] * (len(WIDTHS) - 2) + [Identity()]
    params = NetworkParams(layers=tuple(LayerParams(units=w, activation=a)
                                        for w, a in zip(WIDTHS[1:], acts)),
                           loss="cross_entropy", init="he_normal")
    net = Network(params, WIDTHS[0], rng, rng)
    x = rng.uniform(0, 1, (256, WIDTHS[0]))
    return Bench(quantize_network(net, x), "cross_entropy").chip, x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    hw, x = hardware(rng)
    x = x[:B]
    y = np.eye(10)[rng.integers(0, 10, B)]
    clean = hw.probe(x, y)
    rows, targets = np.repeat(x, N, axis=0), np.repeat(y, N, axis=0)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"network {'-'.join(map(str, WIDTHS))}, {B} samples x {N} queries = {B * N} probes\n")
    print("| probe | baseline ms | ours ms | baseline / ours |")
    print("|---|---|---|---|")
    lsb = hw.capabilities.integer
    for layer in range(len(WIDTHS) - 1):
        lo, hi = hw.node_offsets[layer], hw.node_offsets[layer + 1]
        flat = np.zeros((B * N, hw.n_nodes))
        flat[:, lo:hi] = rng.integers(-5, 6, (B * N, hi - lo)) * lsb.node_lsb[lo:hi]
        suffix_request = Request(np.repeat(clean.inputs[layer], N, axis=0), targets,
                                 node_perturbation=flat[:, lo:], start=layer)
        assert np.array_equal(hw.cost(rows, targets, node_perturbation=flat),
                              hw.run(suffix_request).costs)
        full = best_time(lambda: hw.cost(rows, targets, node_perturbation=flat), args.repeat)
        suffix = best_time(lambda: hw.run(suffix_request), args.repeat)
        print(f"| node, layer {layer}: full vs suffix | {full * 1e3:.2f} | {suffix * 1e3:.2f} | "
              f"{full / suffix:.1f}x |")
    key, shape = np.uint64(7), hw.layer_shapes[0]
    span = slice(hw.param_offsets[0], hw.param_offsets[1])

    def passed():
        u = weight_directions(key, 0, N, shape)
        mu = np.where(np.arange(u.shape[1]) < shape[0] * shape[1], 1, 100)
        step = np.zeros((B * N, hw.n_params))
        step[:, span] = np.tile(u * mu * lsb.param_lsb[span], (B, 1))
        return hw.run(Request(np.repeat(clean.inputs[0], N, axis=0), targets,
                              weight_perturbation=step)).costs

    def seeded():
        return hw.run(Request(clean.inputs[0], y, seeded=Seeded(key, 0, N, 1, 100))).costs

    assert np.array_equal(passed(), seeded().ravel())
    t_passed, t_seeded = best_time(passed, args.repeat), best_time(seeded, args.repeat)
    print(f"| weights, layer 0: passed vs seeded | {t_passed * 1e3:.2f} | {t_seeded * 1e3:.2f} | "
          f"{t_passed / t_seeded:.1f}x |")


if __name__ == "__main__":
    main()

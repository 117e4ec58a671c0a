"""Adapting an int8 MCU model to corrupted inputs with quantized zeroth-order training.

The setting of Zhao, Li, Young & Zhang ("Poor Man's Training on MCUs", arXiv
2411.05873) on data available here: a 64-256-256-10 ReLU network is trained in float
on scikit-learn's digits (reference backpropagation), quantized to int8 (post-training
quantization calibrated on clean training images, ``devsim.quantize``), and deployed
on corrupted inputs (Gaussian noise, blur, contrast shift). It then adapts on the
MCU, on the corrupted training images, with

- ``none``: no adaptation;
- ``qzo dense``: quantized ZO on every layer, node perturbation (suffix passes);
- ``qzo dense (weights)``: quantized ZO on every layer, weight perturbation with
  directions replayed from a seed;
- ``qzo sparse``: quantized ZO on the first layer only (node perturbation);
- ``int8-aware bp``: the reference model's exact gradient at the dequantized int8
  weights, written through the same rounding write: OUTSIDE THE RULE, a baseline.

Each method gets the same number of epochs over the corrupted training images; the
table gives corrupted-test accuracy (mean over seeds), the hardware steps spent and
the SRAM each method needs (``devices.mcu_memory``), and checks every method's SRAM
against a 256 KiB budget. Usage::

    python experiments/mcu_corruption.py [--seeds 0 1 2] [--epochs 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from devices.mcu import MCUParams
from devices.mcu_memory import MemoryBudgetError, MemoryReport, memory_report
from devsim.activations import Identity, ReLU
from devsim.bench import Bench
from devsim.data import Digits
from devsim.network import LayerParams, Network, NetworkParams
from devsim.quantize import quantize_network
from trainer.backprop import BackpropParams
from trainer.base import Setup
from trainer.loop import Timescales, TrainingLoop
from trainer.optim import SGDParams
from trainer.qzo import QZOParams

WIDTHS = (256, 256, 10)
LOSS = "cross_entropy"
BATCH = 32
SRAM_BUDGET_KIB = 256
METHODS = {  # name: (estimator, SGD learning rate)
    "qzo dense": (QZOParams(queries=4, mu_node=5, node_from=0), 0.05),
    "qzo dense (weights)": (QZOParams(queries=20, mu_weight=1, mu_bias=100), 0.05),
    "qzo sparse": (QZOParams(queries=4, mu_node=5, node_from=0, train_layers=(0,)), 0.05),
    "int8-aware bp": (BackpropParams(), 0.05),
}


# ------------------------------------------------------------------ corruptions
def gaussian_noise(x, rng):
    """Additive pixel noise, sigma 0.3 of the [0, 1] pixel range, clipped."""
    return np.clip(x + rng.normal(0.0, 0.3, x.shape), 0.0, 1.0)


def blur(x, rng):
    """3x3 Gaussian blur (weights 1-2-1 in each direction) of the 8x8 images, zero padded."""
    img = np.pad(x.reshape(-1, 8, 8), ((0, 0), (1, 1), (1, 1)))
    k = np.array([1.0, 2.0, 1.0]) / 4.0
    rows = k[0] * img[:, :-2] + k[1] * img[:, 1:-1] + k[2] * img[:, 2:]
    out = k[0] * rows[:, :, :-2] + k[1] * rows[:, :, 1:-1] + k[2] * rows[:, :, 2:]
    return out.reshape(-1, 64)


def contrast_shift(x, rng):
    """Contrast cut to 30 % about mid-grey and brightness raised by 0.1 (a washed-out
    display): background 0.45, full strokes 0.75."""
    return 0.6 + 0.3 * (x - 0.5)


CORRUPTIONS = {"gaussian_noise": gaussian_noise, "blur": blur, "contrast": contrast_shift}


# ------------------------------------------------------------------ steps
def network_params() -> NetworkParams:
    acts = [ReLU()] * (len(WIDTHS) - 1) + [Identity()]
    return NetworkParams(layers=tuple(LayerParams(units=w, activation=a)
                                      for w, a in zip(WIDTHS, acts)), loss=LOSS, init="he_normal")


def accuracy(bench: Bench, x, labels) -> float:
    return float((bench.outputs(x).argmax(axis=1) == labels).mean())


def train(bench: Bench, x, y, estimator, lr: float, epochs: int, seed: int) -> float:
    """``epochs`` passes over (x, y) in minibatches of BATCH; returns wall seconds."""
    rng = np.random.default_rng(seed)
    timescales = Timescales(tau_x=1, tau_theta=BATCH)
    setup = Setup(bench.chip, rng, timescales,
                  bench if estimator.outside_the_rule else None)
    loop = TrainingLoop(bench.chip, x, y, estimator.build(setup), SGDParams(lr=lr).build(),
                        timescales, rng)
    t0 = time.perf_counter()
    for _ in range(epochs * len(x) // BATCH):
        loop.update()
    return time.perf_counter() - t0


def float_model(data, seed: int, epochs: int) -> Network:
    rng = np.random.default_rng(seed)
    net = Network(network_params(), data.n_inputs, rng, rng)
    train(Bench(net, LOSS), data.x_train, data.y_train, BackpropParams(), 0.1, epochs, seed)
    return net


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20, help="adaptation epochs per method")
    p.add_argument("--pretrain-epochs", type=int, default=30)
    args = p.parse_args(argv)

    results = {}  # (corruption, method) -> list of accuracies
    steps, wall = {}, {}
    clean = {"float": [], "int8": []}
    t_start = time.perf_counter()
    for seed in args.seeds:
        data = Digits().load(np.random.default_rng(seed))
        net = float_model(data, seed, args.pretrain_epochs)
        clean["float"].append(accuracy(Bench(net, LOSS), data.x_test, data.labels_test))
        mcu = MCUParams(core="cortex-m4")
        int8 = Bench(quantize_network(net, data.x_train, mcu), LOSS)
        clean["int8"].append(accuracy(int8, data.x_test, data.labels_test))
        for c_name, corrupt in CORRUPTIONS.items():
            rng = np.random.default_rng(1000 + seed)
            x_tr, x_te = corrupt(data.x_train, rng), corrupt(data.x_test, rng)
            results.setdefault((c_name, "none"), []).append(accuracy(int8, x_te, data.labels_test))
            for m_name, (estimator, lr) in METHODS.items():
                bench = Bench(quantize_network(net, data.x_train, mcu), LOSS)
                seconds = train(bench, x_tr, data.y_train, estimator, lr, args.epochs, seed)
                results.setdefault((c_name, m_name), []).append(
                    accuracy(bench, x_te, data.labels_test))
                steps[m_name] = bench.chip.steps
                wall[m_name] = wall.get(m_name, 0.0) + seconds
    elapsed = time.perf_counter() - t_start

    shapes = Network(network_params(), 64, np.random.default_rng(0),
                     np.random.default_rng(0)).shapes
    n_runs = len(args.seeds) * len(CORRUPTIONS)
    print(f"64-{'-'.join(map(str, WIDTHS))} ReLU on digits, seeds {args.seeds}, "
          f"{args.epochs} adaptation epochs, batch {BATCH}; clean test accuracy float "
          f"{np.mean(clean['float']):.3f}, int8 {np.mean(clean['int8']):.3f}\n")
    print("| method | " + " | ".join(CORRUPTIONS) + " | hardware steps | SRAM KiB | fits "
          f"{SRAM_BUDGET_KIB} KiB | wall s per run |")
    print("|---" * (len(CORRUPTIONS) + 5) + "|")
    for m_name in ["none"] + list(METHODS):
        accs = " | ".join(f"{np.mean(r):.3f} ± {np.std(r):.3f}"
                          for r in (results[(c, m_name)] for c in CORRUPTIONS))
        report = sram(shapes, METHODS[m_name][0] if m_name in METHODS else None)
        try:
            report.check(SRAM_BUDGET_KIB)
            fits = "yes"
        except MemoryBudgetError:
            fits = "no"
        print(f"| {m_name} | {accs} | {steps.get(m_name, 0):,} | {report.sram_bytes / 1024:.1f} | "
              f"{fits} | {wall.get(m_name, 0.0) / n_runs:.1f} |")
    print(f"\ntotal {elapsed:.0f} s")
    for m_name in ("qzo dense", "int8-aware bp"):
        try:
            sram(shapes, METHODS[m_name][0]).check(SRAM_BUDGET_KIB)
        except MemoryBudgetError as exc:
            print(f"{m_name} under a {SRAM_BUDGET_KIB} KiB budget: {exc}")


def sram(shapes, estimator) -> MemoryReport:
    """Memory of the deployed model adapted by ``estimator`` (None: inference only)."""
    if estimator is None:
        return memory_report(shapes)
    methods, queries = estimator.footprint(len(shapes))
    return memory_report(shapes, methods, n_queries=queries)


if __name__ == "__main__":
    main()

"""Adapting a pre-trained int8 CNN on an MCU to corrupted digits with quantized zeroth order.

The setting of Zhao, Li, Young & Zhang ("Poor Man's Training on MCUs", arXiv 2411.05873),
small enough for this machine: a MobileNet-like CNN for 8x8 digits

    conv2d 3x3, 16 ch, ReLU -> depthwise 3x3 stride 2, ReLU -> conv2d 1x1 (pointwise),
    32 ch, ReLU -> average pool 2x2 -> flatten -> dense 10

is pre-trained in float (devsim's reference backpropagation on the ideal device),
quantized to int8 (``devsim.quantize``: TFLite-style post-training quantization,
per-channel weight scales, ReLU fused; the int8 graph is bit-exact with tflite-micro),
and deployed on corrupted digits: Gaussian pixel noise, blur and a contrast cut (those of
``experiments/mcu_corruption.py``) and a one-pixel shift. It then adapts on the MCU, on
the corrupted training images, with

- ``qzo weights``: quantized ZO weight perturbation on every layer (directions drawn in
  the int8 kernels and replayed from the seed);
- ``qzo nodes``: quantized ZO node perturbation on every layer (suffix passes from the
  cached layer input; each conv weight's estimate sums over the positions it serves);
- ``qzo mixture``: weight perturbation on the two small early layers, node perturbation
  on the later ones (the paper's mixture by depth);
- ``qzo sparse``: node perturbation on the last two layers only (pointwise conv, dense);
- ``int8 bp``, ``int8 bp sparse``: the reference model's exact gradient at the
  dequantized int8 weights, written through the same LSB-rounding write, on every layer
  or on the sparse variant's layers. OUTSIDE THE RULE: the upper reference.

Every method gets the same epochs over the corrupted training split (minibatches of 32,
plain SGD, one learning rate for the QZO variants and one for the BP references). The
table gives corrupted-test accuracy before and
after (mean ± std over seeds), the hardware steps (every clean and perturbed pass; a
suffix pass counts as one), and each variant's SRAM and flash from the MCU accountant
(``devices/mcu_memory.py``), checked against a 256 KiB budget. Usage::

    PYTHONPATH=. python experiments/zhao_cnn.py [--seeds 0 1 2] [--epochs 5] [--lr 0.2]
        [--bp-lr 0.1] [--png PATH]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from devices.mcu import MCUParams
from devices.mcu_memory import MemoryBudgetError, network_memory_report
from devsim.bench import Bench
from devsim.config import from_data
from devsim.data import Digits
from devsim.network import Network, NetworkParams
from devsim.quantize import quantize_network
from experiments.mcu_corruption import CORRUPTIONS as MLP_CORRUPTIONS
from experiments.mcu_corruption import accuracy, train
from trainer.backprop import Backprop, BackpropParams
from trainer.base import Estimate, Footprint
from trainer.qzo import QZOParams

LOSS = "cross_entropy"
SRAM_BUDGET_KIB = 256
LAYERS = [
    {"type": "conv2d", "channels": 16, "kernel": [3, 3], "activation": "relu"},
    {"type": "depthwise_conv2d", "kernel": [3, 3], "stride": [2, 2], "activation": "relu"},
    {"type": "conv2d", "channels": 32, "kernel": [1, 1], "activation": "relu"},
    {"type": "avg_pool", "pool": [2, 2]},
    "flatten",
    {"units": 10, "activation": "identity"},
]
SPARSE = (2, 5)
"""The layers the sparse variants train: the pointwise conv and the classifier."""


def shift(x, rng):
    """The digit moved one pixel right and one down (zeros come in at the top left)."""
    img = x.reshape(-1, 8, 8)
    out = np.zeros_like(img)
    out[:, 1:, 1:] = img[:, :-1, :-1]
    return out.reshape(-1, 64)


CORRUPTIONS = {**MLP_CORRUPTIONS, "shift": shift}


class SparseBackpropParams(BackpropParams):
    """Reference backpropagation on the layers ``SPARSE`` only (OUTSIDE THE RULE)."""

    def build(self, setup):
        return SparseBackprop(setup.bench, setup.chip.param_offsets)

    def footprint(self, n_layers):
        return Footprint(tuple("bp" if i in SPARSE else None for i in range(n_layers)))


class SparseBackprop(Backprop):
    def __init__(self, bench, offsets):
        super().__init__(bench, decorrelation_lr=0.0)
        self.mask = np.zeros(offsets[-1], dtype=bool)
        for layer in SPARSE:
            self.mask[offsets[layer]:offsets[layer + 1]] = True

    def rounds(self, window):
        estimate = yield from super().rounds(window)
        return Estimate(np.where(self.mask, estimate.gradient, 0.0), estimate.cost)


METHODS = {  # name: estimator (every layer without parameters is skipped by itself)
    "qzo weights": QZOParams(queries=20, mu_weight=1, mu_bias=100),
    "qzo nodes": QZOParams(queries=4, mu_node=5, node_from=0),
    "qzo mixture": QZOParams(queries=4, mu_node=5, node_from=2),
    "qzo sparse": QZOParams(queries=4, mu_node=5, node_from=0, train_layers=SPARSE),
    "int8 bp": BackpropParams(),
    "int8 bp sparse": SparseBackpropParams(),
}


def network_params() -> NetworkParams:
    return from_data(NetworkParams, {"input_shape": [8, 8, 1], "loss": LOSS,
                                     "init": "he_normal", "layers": LAYERS})


def float_model(data, seed: int, epochs: int, lr: float) -> Network:
    rng = np.random.default_rng(seed)
    net = Network(network_params(), data.n_inputs, rng, rng)
    train(Bench(net, LOSS), data.x_train, data.y_train, BackpropParams(), lr, epochs, seed)
    return net


def memory(net: Network, estimator):
    """The int8 model's flash and SRAM when ``estimator`` adapts it (None: inference)."""
    if estimator is None:
        return network_memory_report(net.layers)
    methods, queries = estimator.footprint(len(net.layers))
    methods = [m if layer.n_params else None for m, layer in zip(methods, net.layers)]
    return network_memory_report(net.layers, methods, n_queries=queries)


def plot(results, before, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = ["none"] + list(METHODS)
    fig, ax = plt.subplots(figsize=(9.5, 3.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [results[(c, name)] if name != "none" else before[c] for c in CORRUPTIONS]
        xs = np.arange(len(CORRUPTIONS)) + (k - (len(names) - 1) / 2) * width
        ax.bar(xs, [np.mean(v) for v in values], width, label=name,
               yerr=[np.std(v) for v in values], capsize=2)
    ax.set_xticks(np.arange(len(CORRUPTIONS)), list(CORRUPTIONS))
    ax.set_ylabel("corrupted-test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("int8 CNN on an MCU adapted to corrupted digits (mean, std over seeds)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="lower center")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5, help="adaptation epochs per method")
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--pretrain-lr", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=0.2, help="SGD rate of every QZO adaptation")
    p.add_argument("--bp-lr", type=float, default=0.1, help="SGD rate of the BP references")
    p.add_argument("--png", default="experiments/zhao_cnn.png")
    args = p.parse_args(argv)

    results, before, steps, wall = {}, {}, {}, {}
    clean = {"float": [], "int8": []}
    t_start = time.perf_counter()
    mcu = MCUParams(core="cortex-m4")
    for seed in args.seeds:
        data = Digits().load(np.random.default_rng(seed))
        net = float_model(data, seed, args.pretrain_epochs, args.pretrain_lr)
        clean["float"].append(accuracy(Bench(net, LOSS), data.x_test, data.labels_test))
        int8 = Bench(quantize_network(net, data.x_train, mcu), LOSS)
        clean["int8"].append(accuracy(int8, data.x_test, data.labels_test))
        for c_name, corrupt in CORRUPTIONS.items():
            rng = np.random.default_rng(1000 + seed)
            x_tr, x_te = corrupt(data.x_train, rng), corrupt(data.x_test, rng)
            before.setdefault(c_name, []).append(accuracy(int8, x_te, data.labels_test))
            for m_name, estimator in METHODS.items():
                bench = Bench(quantize_network(net, data.x_train, mcu), LOSS)
                lr = args.bp_lr if isinstance(estimator, BackpropParams) else args.lr
                seconds = train(bench, x_tr, data.y_train, estimator, lr, args.epochs, seed)
                results.setdefault((c_name, m_name), []).append(
                    accuracy(bench, x_te, data.labels_test))
                steps[m_name] = bench.chip.steps
                wall[m_name] = wall.get(m_name, 0.0) + seconds
        print(f"seed {seed} done, {time.perf_counter() - t_start:.0f} s", flush=True)
    elapsed = time.perf_counter() - t_start

    n_runs = len(args.seeds) * len(CORRUPTIONS)
    print(f"\nCNN conv3x3x16-dw3x3/2-pw32-avgpool-dense10 on digits, "
          f"seeds {args.seeds}, {args.epochs} adaptation epochs, batch 32, lr {args.lr} "
          f"(BP {args.bp_lr}); "
          f"clean test accuracy float {np.mean(clean['float']):.3f}, "
          f"int8 {np.mean(clean['int8']):.3f}; {net.n_params} parameters\n")
    print("| method | " + " | ".join(CORRUPTIONS) + " | hardware steps | SRAM KiB | flash KiB "
          f"| fits {SRAM_BUDGET_KIB} KiB | wall s per run |")
    print("|---" * (len(CORRUPTIONS) + 6) + "|")
    for m_name in ["none"] + list(METHODS):
        runs = [before[c] if m_name == "none" else results[(c, m_name)] for c in CORRUPTIONS]
        accs = " | ".join(f"{np.mean(r):.3f} ± {np.std(r):.3f}" for r in runs)
        report = memory(net, METHODS.get(m_name))
        try:
            report.check(SRAM_BUDGET_KIB)
            fits = "yes"
        except MemoryBudgetError:
            fits = "no"
        print(f"| {m_name} | {accs} | {steps.get(m_name, 0):,} | "
              f"{report.sram_bytes / 1024:.1f} | {report.flash_bytes / 1024:.1f} | {fits} | "
              f"{wall.get(m_name, 0.0) / n_runs:.1f} |")
    print(f"\ntotal {elapsed:.0f} s")
    for m_name in ("qzo nodes", "int8 bp"):
        print(f"\n{m_name} memory:\n{memory(net, METHODS[m_name]).table()}")
    if args.png:
        plot(results, before, args.png)


if __name__ == "__main__":
    main()

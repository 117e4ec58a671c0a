"""Node perturbation over depth: NP, ANP, DNP and DANP against BP, 1 to 6 hidden layers.

Dalm, van Gerven & Ahmad (arXiv 2310.00965) claim that decorrelating every layer's input
is what lets node perturbation train deeper networks: the advantage of the decorrelated
forms grows with depth, and their claim is about the *training* set. Here every method
trains the same 64-W-...-W-10 leaky-ReLU network (He-normal init, cross-entropy, Gaussian
node noise sigma at every pre-activation, a clean and a noisy pass per minibatch of 32)
on scikit-learn's digits (standardised) for the same number of epochs with Adam, at every
depth; BP is the reference (``backprop``, outside the rule). The learning rate is searched
equally for every method and depth: the same grid, the rate with the lowest mean final
training cost over the seeds wins (a diverged rate never does); its train accuracy (mean
± std over seeds) and test accuracy are reported with the train gap to BP at that depth
[in brackets] and the gain of each decorrelated form over its plain form. The decorrelation rate is fixed (Dalm et al.'s default). Usage::

    PYTHONPATH=. python experiments/dalm_depth.py [--depths 1 2 3 4 5 6] [--seeds 0 1]
        [--epochs 20] [--lrs 3e-4 1e-3 3e-3] [--png experiments/dalm_depth.png]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from devsim.network import LayerParams
from devsim.activations import Identity, LeakyReLU
from devsim.runner import load_config
from experiments.np_family import method_config, train_and_evaluate

METHODS = ("BP", "NP", "ANP", "DNP", "DANP")


def depth_config(base, depth: int, width: int):
    """``base`` (configs/np_digits.yaml) with ``depth`` hidden layers of ``width``."""
    layers = tuple([LayerParams(units=width, activation=LeakyReLU())] * depth
                   + [LayerParams(units=10, activation=Identity())])
    return base.replace(network=base.network.replace(layers=layers))


def plot(table, depths, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, split in zip(axes, ("train", "test")):
        for method in METHODS:
            ax.errorbar(depths, [np.mean(table[(method, d)][split]) for d in depths],
                        yerr=[np.std(table[(method, d)][split]) for d in depths],
                        marker="o", ms=4, capsize=2, label=method,
                        linestyle="--" if method == "BP" else "-")
        ax.set_xlabel("hidden layers")
        ax.set_title(f"{split} accuracy (best rate per method and depth)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/np_digits.yaml")
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3],
                    help="Adam rates searched for every method and depth")
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--decorrelation-lr", type=float, default=1e-3)
    ap.add_argument("--png", default="experiments/dalm_depth.png")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    base = load_config(args.config)
    t_start = time.perf_counter()
    table = {}   # (method, depth) -> {"lr", "train": [...], "test": [...], "cost": ...}
    for depth in args.depths:
        config = depth_config(base, depth, args.width)
        for method in METHODS:
            best = None
            for lr in args.lrs:
                cfg = method_config(config, method, lr, args.decorrelation_lr,
                                    perturbation="gaussian", sigma=args.sigma,
                                    passes="clean_noisy")
                runs = [train_and_evaluate(cfg.replace(seed=s), args.epochs) for s in args.seeds]
                cost = float(np.mean([r["train_cost"] for r in runs]))
                cost = cost if np.isfinite(cost) else np.inf  # a diverged rate never wins
                if best is None or cost < best["cost"]:
                    best = {"lr": lr, "cost": cost, "train": [r["train"] for r in runs],
                            "test": [r["test"] for r in runs]}
            table[(method, depth)] = best
            print(f"depth {depth} {method}: lr {best['lr']:g}, train "
                  f"{np.mean(best['train']):.3f}, test {np.mean(best['test']):.3f} "
                  f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    print(f"\n{args.config} with {args.width}-wide hidden layers, {args.epochs:g} epochs, seeds "
          f"{args.seeds}, Adam rates {args.lrs}, sigma {args.sigma:g}, decorrelation rate "
          f"{args.decorrelation_lr:g}; {time.perf_counter() - t_start:.0f} s\n")
    print("| hidden layers | " + " | ".join(f"{m} train / test (lr)" for m in METHODS)
          + " | DNP - NP train | DANP - ANP train |")
    print("|---" * (len(METHODS) + 3) + "|")
    for depth in args.depths:
        cells = []
        for method in METHODS:
            r = table[(method, depth)]
            gap = np.mean(r["train"]) - np.mean(table[("BP", depth)]["train"])
            cells.append(f"{np.mean(r['train']):.3f} ± {np.std(r['train']):.3f} / "
                         f"{np.mean(r['test']):.3f} ({r['lr']:g})"
                         + ("" if method == "BP" else f" [{gap:+.3f}]"))
        gain = [np.mean(table[(d, depth)]["train"]) - np.mean(table[(p, depth)]["train"])
                for d, p in (("DNP", "NP"), ("DANP", "ANP"))]
        print(f"| {depth} | " + " | ".join(cells) + f" | {gain[0]:+.3f} | {gain[1]:+.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{m}/{d}": v for (m, d), v in table.items()}, f, indent=1)
    if args.png:
        plot(table, args.depths, args.png)


if __name__ == "__main__":
    main()

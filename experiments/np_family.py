"""NP, ANP, INP and their decorrelated forms against reference BP (Dalm et al.'s claim).

Each method trains the same network from the same initialisation (per seed) for
the same number of epochs (samples presented, not hardware steps: NP and ANP spend
two passes per sample, INP one per layer plus the clean one), with Adam. Methods
whose name starts with D set ``network.decorrelation: true`` and a decorrelation
rate; the others train on the plain network. Prints train and test accuracy
(mean and per seed) and the wall time of every method, and writes a bar chart.

    python -m experiments.np_family --config configs/np_digits.yaml --epochs 30 --seeds 0 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from devsim.runner import build, evaluate, load_config
from trainer.backprop import BackpropParams
from trainer.node_perturbation import ANPParams, INPParams, NPParams

KINDS = {"BP": BackpropParams, "NP": NPParams, "ANP": ANPParams, "INP": INPParams}


def method_config(config, method: str, lr: float, decorrelation_lr: float, **estimator):
    """``config`` set up for ``method`` (BP, NP, ANP, INP or any of them prefixed by D)."""
    decorrelated = method.startswith("D")
    kind = KINDS[method[1:] if decorrelated else method]
    fields = dict(decorrelation_lr=decorrelation_lr if decorrelated else 0.0)
    if kind is not BackpropParams:
        fields.update(estimator)
    return config.replace(
        network=config.network.replace(decorrelation=decorrelated),
        train=config.train.replace(estimator=kind(**fields),
                                   optimizer=config.train.optimizer.replace(lr=lr)))


def train_and_evaluate(config, epochs: float) -> dict:
    """Train for ``epochs`` passes over the training set; final train and test accuracy."""
    built = build(config)
    bench, data = built.bench, built.data
    updates = int(round(epochs * len(data.x_train) / config.train.timescales.tau_theta))
    t0 = time.perf_counter()
    for _ in range(updates):
        built.loop.update()
    seconds = time.perf_counter() - t0
    train = evaluate(bench, data.x_train, data.y_train, data.labels_train)
    test = evaluate(bench, data.x_test, data.y_test, data.labels_test)
    return {"train": train["accuracy"], "test": test["accuracy"], "train_cost": train["cost"],
            "seconds": seconds, "steps": bench.chip.steps}


def run_methods(config, methods: dict, epochs: float, seeds) -> dict:
    """{label: [result per seed]} for {label: config}; prints a table row per method."""
    print("| method | train acc | test acc | per seed (train / test) | hardware steps | wall |")
    print("|---|---|---|---|---|---|")
    results = {}
    for label, cfg in methods.items():
        runs = [train_and_evaluate(cfg.replace(seed=s), epochs) for s in seeds]
        results[label] = runs
        per = ", ".join(f"{r['train']:.3f} / {r['test']:.3f}" for r in runs)
        print(f"| {label} | {np.mean([r['train'] for r in runs]):.3f} "
              f"| {np.mean([r['test'] for r in runs]):.3f} | {per} | {runs[0]['steps']:,} "
              f"| {sum(r['seconds'] for r in runs):.0f} s |", flush=True)
    return results


def bar_chart(results: dict, title: str, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(results)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(labels), 3.8))
    x = np.arange(len(labels))
    for offset, key, colour in ((-0.2, "train", "C0"), (0.2, "test", "C1")):
        values = np.array([[r[key] for r in results[k]] for k in labels])
        ax.bar(x + offset, values.mean(1), 0.4, color=colour, label=key)
        for i, row in enumerate(values):
            ax.plot(np.full(len(row), x[i] + offset), row, "k.", ms=3)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    lowest = min(r[key] for runs in results.values() for r in runs for key in ("train", "test"))
    ax.set_ylim(max(0.0, np.floor(10 * lowest - 0.5) / 10), 1.0)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/np_digits.yaml")
    ap.add_argument("--epochs", type=float, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+",
                    default=["BP", "DBP", "NP", "DNP", "ANP", "DANP", "INP", "DINP"])
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam rate of the perturbative methods")
    ap.add_argument("--bp-lr", type=float, default=1e-3, help="Adam rate of BP and DBP")
    ap.add_argument("--decorrelation-lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    config = load_config(args.config)
    methods = {m: method_config(config, m, args.bp_lr if m.endswith("BP") else args.lr,
                                args.decorrelation_lr, perturbation="gaussian",
                                sigma=args.sigma, passes="clean_noisy")
               for m in args.methods}
    print(f"{args.config}: {args.epochs:g} epochs, seeds {args.seeds}, Adam lr {args.lr:g} "
          f"(BP {args.bp_lr:g}), sigma {args.sigma:g}, decorrelation lr {args.decorrelation_lr:g}")
    results = run_methods(config, methods, args.epochs, args.seeds)
    if args.out:
        bar_chart(results, f"{config.name}: {args.epochs:g} epochs, mean of {len(args.seeds)} "
                  f"seeds (dots: seeds)", args.out)


if __name__ == "__main__":
    main()

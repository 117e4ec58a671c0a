"""SGD, momentum and Adam fed with MGD estimates, same hardware-step budget.

The quick-start task (``configs/quickstart.yaml``: 64-32-10 sigmoid network on
digits, MGD with node perturbation, normalised estimates, tau_theta 100) through the
controller path with the optimizer swapped: SGD lr 3 (the quick start's), heavy-ball
momentum beta 0.9 with lr 0.3 (the same step size in the long run, lr / (1 - beta)),
and Adam lr 0.01. 1 M hardware steps each. Usage::

    PYTHONPATH=. python experiments/mgd_optimizers.py [--seeds 0 1] [--steps 1000000]

prints a Markdown table and writes ``mgd_optimizers.json`` and ``mgd_optimizers.png``.
"""
from __future__ import annotations

import json

import numpy as np

from devsim.trace import read_trace
from mgd_common import run_controller, sweep_arguments

OPTIMIZERS = {
    "sgd": ["train.optimizer={type: sgd, lr: 3.0}"],
    "momentum": ["train.optimizer={type: momentum, lr: 0.3, beta: 0.9}"],
    "adam": ["train.optimizer={type: adam, lr: 0.01}"],
}


def main(argv=None):
    args, out, runs = sweep_arguments(__doc__.splitlines()[0], "mgd_optimizers", argv)
    rows = []
    for name, sets in OPTIMIZERS.items():
        for seed in args.seeds:
            s = run_controller("quickstart.yaml", sets + [
                f"train.steps={args.steps}", "train.eval_every=50000",
                "train.target_accuracy=0.9", "trace.snapshot_every=0"], seed, runs)
            t = read_trace(s["trace"])
            rows.append(dict(optimizer=name, seed=seed, final=s["final"]["test_accuracy"],
                             best=s["best_test_accuracy"], steps_to_90=s["steps_to_target"],
                             curve=[t.evals["step"].tolist(), t.evals["test_accuracy"].tolist()]))
            print({k: v for k, v in rows[-1].items() if k != "curve"}, flush=True)
    (out / "mgd_optimizers.json").write_text(json.dumps(rows, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, color in zip(OPTIMIZERS, ("C0", "C1", "C2")):
        for i, r in enumerate(r for r in rows if r["optimizer"] == name):
            ax.plot(*r["curve"], color=color, label=name if i == 0 else None)
    ax.set(xlabel="hardware steps", ylabel="test accuracy", ylim=(0, 1),
           title="MGD (node perturbation) estimates into three optimizers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mgd_optimizers.png", dpi=120)
    print("| optimizer | final test accuracy (mean) | best | steps to 90 % | per seed final |")
    print("|---|---|---|---|---|")
    for name in OPTIMIZERS:
        sel = [r for r in rows if r["optimizer"] == name]
        t90 = [r["steps_to_90"] for r in sel]
        finals = ", ".join(f"{r['final']:.3f}" for r in sel)
        print(f"| {name} | {np.mean([r['final'] for r in sel]):.3f} | "
              f"{np.mean([r['best'] for r in sel]):.3f} | "
              f"{', '.join('not reached' if v is None else f'{v:,}' for v in t90)} | "
              f"{finals} |")


if __name__ == "__main__":
    main()

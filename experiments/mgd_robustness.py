"""MGD accuracy against cost read-out noise, weight-write noise and neuron variation.

The quick-start task (``configs/quickstart.yaml``: 64-32-10 network on digits, MGD
with node perturbation, eps 0.1, tau_theta 100, SGD lr 3) through the controller
path, 1 M hardware steps, one imperfection at a time:

- ``cost_noise``: Gaussian noise sigma_C on every cost read-out (the controller's ADC),
  ``train.estimator.cost_noise``; the mean cost is about 0.01-0.09 during training;
- write noise: every layer on a ``crossbar`` (w_max 4, program-and-verify writes)
  whose programming noise ``prog_noise`` (sigma as a fraction of the conductance range,
  so sigma_w = prog_noise * 4 weight units per device per write) is swept;
- neuron variation: every neuron is the MGD logistic L / (1 + exp(-k (z - x0))) + y0
  with L, k, x0, y0 drawn per neuron from Gaussians of the given spread around
  (1, 1, 0, 0) (the sigmoid), all four spreads equal.

Usage::

    PYTHONPATH=. python experiments/mgd_robustness.py [--seeds 0 1] [--steps 1000000]

prints a Markdown table and writes ``mgd_robustness.json`` and ``mgd_robustness.png``.
"""
from __future__ import annotations

import json

import numpy as np

from mgd_common import run_controller, sweep_arguments

CROSSBAR = "network.device={type: crossbar, w_max: 4.0, prog_noise: %g}"
LOGISTIC = ("network.layers[%d].activation={type: logistic, L_spread: %g, k_spread: %g, "
            "x0_spread: %g, y0_spread: %g}")
SWEEPS = {
    "cost_noise": [0.0, 1e-4, 3e-4, 1e-3, 3e-3],
    "write_noise": [0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3],
    "neuron_spread": [0.0, 0.05, 0.1, 0.2, 0.4],
}


def overrides(knob, value):
    if knob == "cost_noise":
        return [f"train.estimator.cost_noise={value}"]
    if knob == "write_noise":
        return [CROSSBAR % value]
    return [LOGISTIC % ((i,) + (value,) * 4) for i in (0, 1)]


def main(argv=None):
    args, out, runs = sweep_arguments(__doc__.splitlines()[0], "mgd_robustness", argv)
    rows = []
    for knob, values in SWEEPS.items():
        for value in values:
            accs = []
            for seed in args.seeds:
                s = run_controller("quickstart.yaml", overrides(knob, value) + [
                    f"train.steps={args.steps}", "train.eval_every=250000",
                    "trace.snapshot_every=0"], seed, runs)
                accs.append(s["final"]["test_accuracy"])
            rows.append(dict(knob=knob, value=value, accuracy=accs))
            print(rows[-1], flush=True)
    (out / "mgd_robustness.json").write_text(json.dumps(rows, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    labels = {"cost_noise": "cost read-out noise sigma_C", "write_noise":
              "write noise (fraction of conductance range)",
              "neuron_spread": "spread of L, k, x0, y0 across neurons"}
    for ax, knob in zip(axes, SWEEPS):
        sel = [r for r in rows if r["knob"] == knob]
        v = np.array([r["value"] for r in sel])
        m = np.array([np.mean(r["accuracy"]) for r in sel])
        ax.plot(np.where(v == 0, v[1] / 3, v), m, "o-")
        ax.set(xscale="log", xlabel=labels[knob] + " (0 at far left)", ylabel="test accuracy",
               ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out / "mgd_robustness.png", dpi=120)
    print("| imperfection | value | test accuracy (mean) | per seed |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['knob']} | {r['value']:g} | {np.mean(r['accuracy']):.3f} | "
              f"{', '.join(f'{a:.3f}' for a in r['accuracy'])} |")


if __name__ == "__main__":
    main()

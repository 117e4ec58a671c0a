"""MGD against reference backpropagation on digits, same network.

The 64-32-10 sigmoid network on scikit-learn's 8x8 digits (MSE, ideal device):

- reference BP (``configs/digits_backprop.yaml``: exact minibatch gradients of the
  ideal model, outside the rule; SGD lr 3, minibatches of 100, 1 M samples);
- MGD, node perturbation (``configs/quickstart.yaml``: eps 0.1, tau_theta 100,
  SGD lr 3, 2.5 M hardware steps);
- MGD, weight perturbation (``configs/digits_weight_perturbation.yaml``: eps 0.1,
  tau_theta 1000, SGD lr 5, 12 M hardware steps),

all through the controller path (``devsim run``), test accuracy on the 449 held-out
images at the end. The test split depends on the seed, so each MGD run is compared
with BP on its own seed. Usage::

    PYTHONPATH=. python experiments/mgd_accuracy.py [--seeds 0 1]

prints a Markdown table and writes ``mgd_accuracy.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mgd_common import ROOT, run_controller

RUNS = {"reference BP": "digits_backprop.yaml", "MGD nodes": "quickstart.yaml",
        "MGD weights": "digits_weight_perturbation.yaml"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=str(ROOT / "experiments"))
    args = ap.parse_args(argv)
    runs = ROOT / "runs" / "mgd_accuracy"
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, name in RUNS.items():
        for seed in args.seeds:
            s = run_controller(name, ["trace.snapshot_every=0"], seed, runs)
            rows.append(dict(run=label, seed=seed, steps=s["steps"],
                             final=s["final"]["test_accuracy"], best=s["best_test_accuracy"],
                             wall_seconds=s["wall_seconds"]))
            print(rows[-1], flush=True)
    Path(args.out, "mgd_accuracy.json").write_text(json.dumps(rows, indent=1))
    bp = {r["seed"]: r["final"] for r in rows if r["run"] == "reference BP"}
    print("| run | hardware steps | final test accuracy (mean) | per seed | vs BP per seed "
          "| wall s |")
    print("|---|---|---|---|---|---|")
    for label in RUNS:
        sel = [r for r in rows if r["run"] == label]
        finals = ", ".join(f"{r['final']:.3f}" for r in sel)
        gaps = ", ".join(f"{100 * (r['final'] - bp[r['seed']]):+.1f} pp" for r in sel)
        print(f"| {label} | {sel[0]['steps']:,} | {np.mean([r['final'] for r in sel]):.3f} | "
              f"{finals} | {gaps} | {np.mean([r['wall_seconds'] for r in sel]):.0f} |")


if __name__ == "__main__":
    main()

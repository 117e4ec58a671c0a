"""Accuracy of MGD training on a crossbar versus read noise, bits per cell and ADC bits.

The quick-start task (64-32-10 sigmoid network on the 8x8 digits, MGD with node
perturbation, a fresh sample and code every step) is run on the ``crossbar`` device
with one non-ideality varied at a time, everything else ideal. Test accuracy is
measured on the same noisy hardware after training. Usage::

    python experiments/crossbar_sweep.py [--steps 500000] [--seeds 0 1] [--out runs/crossbar_sweep]

prints a Markdown table and writes ``crossbar_sweep.png`` and ``crossbar_sweep.json``
into ``--out``. With ``--presets`` it trains on each preset of ``devices/presets/crossbar_*``
instead (all of its non-idealities at once) and prints one row per preset, then PCM
with mixed-precision writes at several ``update_threshold`` values. Every run is ``configs/quickstart.yaml`` plus ``--set``-style overrides,
given with each row, so any single point can be reproduced with ``devsim run``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from devsim.runner import load_config, run

BASE = "configs/quickstart.yaml"
TRAIN = ["train.estimator.epsilon=1.0"]  # eps = 0.1 (the quick start's) diverges under read noise
SWEEPS = {
    "read_noise": [0.0, 0.005, 0.01, 0.02, 0.05, 0.1],
    "bits_per_cell": [0, 8, 6, 5, 4, 3],
    "adc_bits": [0, 10, 8, 6, 5, 4],
}
ADC_RANGE = 8.0  # full scale of the ADC, in pre-activation units
PRESETS = ("ideal", "pcm", "reram")
PCM_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2)  # mixed-precision update_threshold on PCM


def device(knob: str, value) -> str:
    """The ``network.device`` override for one point of a sweep."""
    extra = {"read_noise": f"read_noise: {value}", "bits_per_cell": f"bits_per_cell: {value}",
             "adc_bits": f"adc_bits: {value}, output_range: {ADC_RANGE}"}[knob]
    return "network.device={type: crossbar, " + extra + "}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="runs/crossbar_sweep")
    ap.add_argument("--presets", action="store_true", help="train on each crossbar preset")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.presets:
        return presets(args, out)
    results = {}
    print("| knob | value | test accuracy (mean over seeds) | per seed | overrides |")
    print("|---|---|---|---|---|")
    for knob, values in SWEEPS.items():
        for value in values:
            accs = []
            overrides = [device(knob, value), *TRAIN, f"train.steps={args.steps}",
                         f"train.eval_every={args.steps}"]
            for seed in args.seeds:
                config = load_config(BASE, overrides + [f"seed={seed}",
                                     f"trace.path={out}/{knob}_{value}_s{seed}.h5"])
                accs.append(run(config, overwrite=True)["final"]["test_accuracy"])
            results.setdefault(knob, []).append((value, accs))
            print(f"| {knob} | {value or 'off'} | {np.mean(accs):.3f} | "
                  f"{', '.join(f'{a:.3f}' for a in accs)} | `{' '.join(overrides[:2])}` |",
                  flush=True)
    (out / "crossbar_sweep.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "crossbar_sweep.png")


def presets(args, out: Path):
    """One row per preset (and per PCM update threshold): accuracy and the device
    activity the run metered."""
    print("| preset | test accuracy (mean over seeds) | per seed | pulses per run |")
    print("|---|---|---|---|")
    rows = [(name, name, {}) for name in PRESETS]
    rows += [(f"pcm, update_threshold {t}", "pcm", {"update_threshold": t})
             for t in PCM_THRESHOLDS]
    for label, name, extra in rows:
        data = yaml.safe_load(Path(f"devices/presets/crossbar_{name}.yaml").read_text())
        device = yaml.safe_dump({**data, **extra}, default_flow_style=True,
                                width=1 << 20).strip()
        tag = label.replace(", update_threshold ", "_th")
        accs, pulses = [], []
        for seed in args.seeds:
            config = load_config(BASE, [f"network.device={device}", *TRAIN,
                                        f"train.steps={args.steps}",
                                        f"train.eval_every={args.steps}", f"seed={seed}",
                                        f"trace.path={out}/preset_{tag}_s{seed}.h5"])
            summary = run(config, overwrite=True)
            accs.append(summary["final"]["test_accuracy"])
            pulses.append(summary["device"]["pulses"])
        print(f"| {label} | {np.mean(accs):.3f} | {', '.join(f'{a:.3f}' for a in accs)} | "
              f"{np.mean(pulses):.3g} |", flush=True)


def plot(results: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    labels = {"read_noise": "read noise sigma (fraction of g_max - g_min)",
              "bits_per_cell": "bits per cell (0 = continuous)",
              "adc_bits": f"ADC bits (0 = none; range +-{ADC_RANGE})"}
    for ax, (knob, rows) in zip(axes, results.items()):
        xs = np.arange(len(rows))
        means = [np.mean(a) for _, a in rows]
        ax.plot(xs, means, "o-")
        for x, (_, accs) in zip(xs, rows):
            ax.plot([x] * len(accs), accs, ".", color="gray")
        ax.set_xticks(xs, [str(v) for v, _ in rows])
        ax.set_xlabel(labels[knob])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("MGD (node perturbation) on a crossbar: 64-32-10 digits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

"""Gradient-estimation time is linear in K: cosine to the true gradient against T.

A linear neuron (K - 1 inputs, one output, MSE) on one held sample has a quadratic
cost, so the true gradient is exact. MGD with weight perturbation (K channels,
eps 1e-4, discrete mode) integrates T steps; the mean cosine of the estimate to the
gradient (from the ideal model, a diagnostic) is compared with the random-code law
1/sqrt(1 + (K-1)/T) (research_algos.md 1.3) for K = 16 .. 1024, and with Walsh codes,
which reach cosine 1 once T covers their cycle (the next power of two above K).
Usage::

    PYTHONPATH=. python experiments/mgd_cosine.py [--out experiments]

writes ``mgd_cosine.json`` and ``mgd_cosine.png`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from devsim.activations import Identity
from devsim.bench import Bench
from devsim.network import LayerParams, Network, NetworkParams
from trainer.base import Setup, Timescales, Window
from trainer.executors import Plain
from trainer.mgd import MGDParams

KS = (16, 64, 256, 1024)
BUDGET = 4e7  # perturbation entries per (K, T) point, so large K gets fewer trials


def _problem(K, seed):
    rng = np.random.default_rng(seed)
    net = Network(NetworkParams(layers=(LayerParams(units=1, activation=Identity()),)),
                  K - 1, rng, rng)
    bench = Bench(net, "mse")
    x, y = rng.normal(size=K - 1), rng.normal(size=1)
    return bench.chip, x, y, bench.reference().gradient(bench.read_params(), x[None], y[None])


def cosines(K, T, kind, seed=0):
    chip, x, y, g = _problem(K, seed)
    est = MGDParams(target="weights", perturbation=kind, epsilon=1e-4).build(
        Setup(chip, np.random.default_rng(seed), Timescales(tau_p=1)))
    executor = Plain(chip)
    new = np.zeros(T, bool)
    new[0] = True
    window = Window(np.repeat(x[None], T, 0), np.repeat(y[None], T, 0), new)
    trials = int(np.clip(BUDGET / (T * K), 8, 200))
    out = []
    for _ in range(trials):
        G = executor.window(est, window).gradient
        out.append(G @ g / np.linalg.norm(G) / np.linalg.norm(g))
    return float(np.mean(out)), float(np.std(out) / np.sqrt(trials))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments")
    out = Path(ap.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for K in KS:
        for T in sorted({int(v) for v in np.geomspace(1, 4 * K, 9)} | {2 ** int(K).bit_length()}):
            for kind in ("code", "walsh"):
                m, se = cosines(K, T, kind)
                rows.append(dict(K=K, T=T, kind=kind, cosine=m, se=se,
                                 law=1 / np.sqrt(1 + (K - 1) / T)))
                print(rows[-1], flush=True)
    (out / "mgd_cosine.json").write_text(json.dumps(rows, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for K, color in zip(KS, plt.cm.viridis(np.linspace(0, 0.85, len(KS)))):
        for kind, style in (("code", "o"), ("walsh", "x")):
            sel = [r for r in rows if r["K"] == K and r["kind"] == kind]
            T = np.array([r["T"] for r in sel])
            axes[0].plot(T, [r["cosine"] for r in sel], style, color=color,
                         label=f"K={K} {kind}")
            axes[1].plot(T / K, [r["cosine"] for r in sel], style, color=color)
        t = np.geomspace(1, 4 * K, 100)
        axes[0].plot(t, 1 / np.sqrt(1 + (K - 1) / t), "-", color=color, lw=1)
    r = np.geomspace(1e-3, 4, 100)
    axes[1].plot(r, 1 / np.sqrt(1 + 1 / r), "k-", lw=1, label="1/sqrt(1+K/T)")
    axes[0].set(xscale="log", xlabel="integration time T (steps)", ylabel="mean cosine",
                title="cosine to the true gradient (lines: law)")
    axes[1].set(xscale="log", xlabel="T / K", ylabel="mean cosine", title="collapse on T/K")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "mgd_cosine.png", dpi=120)
    print("| K | T | random codes: cosine | law 1/sqrt(1+(K-1)/T) | Walsh codes: cosine |")
    print("|---|---|---|---|---|")
    for K in KS:
        for T in sorted({r["T"] for r in rows if r["K"] == K}):
            c, w = (next(r for r in rows if (r["K"], r["T"], r["kind"]) == (K, T, k))
                    for k in ("code", "walsh"))
            print(f"| {K} | {T} | {c['cosine']:.3f} +- {c['se']:.3f} | {c['law']:.3f} "
                  f"| {w['cosine']:.3f} |")


if __name__ == "__main__":
    main()

"""Training samples per second of the node-perturbation estimators, against reference BP.

The digits network of ``configs/np_digits.yaml`` (64-64-10, minibatches of 32),
one estimate plus optimizer step plus write per update, ideal device, advanced as the
runner advances it (``loop.advance`` to a target step: the executor ``auto`` picks, many
windows per compiled call where one covers the method; the table names it). Every
estimator is timed in the same run as the baseline, reference backprop on the same
network (two forward passes per update for NP/ANP, one per layer plus a clean one
for INP; the device-noise rows also sample the chip's node noise). Reported: samples
per second (rows of the minibatch) and the ratio to BP. Timing is the best of
``--repeat`` runs of ``--updates`` updates after a warm-up.

    python -m bench.bench_node_perturbation [--updates 300] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

from devices.mtj import MTJTelegraphNoiseParams
from devices.noise import GaussianNoiseParams
from devsim.runner import build, load_config
from trainer.backprop import BackpropParams
from trainer.node_perturbation import ANPParams, INPParams, NPParams
from trainer.weight_perturbation import WPParams


def cases(config):
    """{label: config} of the timed estimators."""
    plain = config.network.replace(decorrelation=False)

    def make(estimator, network=plain):
        return config.replace(network=network, train=config.train.replace(estimator=estimator))

    telegraph = MTJTelegraphNoiseParams(mean=0.042, amplitude=0.0059, read_noise=0.0009,
                                        delta=9.335345, dt=1e-6)
    return {
        "BP (baseline)": make(BackpropParams()),
        "NP": make(NPParams()),
        "ANP": make(ANPParams()),
        "INP": make(INPParams()),
        "DANP": make(ANPParams(decorrelation_lr=1e-4), config.network),
        "DANP, Gaussian device noise, noisy+noisy": make(
            ANPParams(perturbation="device", passes="noisy_noisy", decorrelation_lr=1e-4),
            config.network.replace(node_noise=GaussianNoiseParams(std=0.006))),
        "DANP, sMTJ device noise, noisy+noisy": make(
            ANPParams(perturbation="device", passes="noisy_noisy", decorrelation_lr=1e-4),
            config.network.replace(node_noise=telegraph)),
        "WP": make(WPParams()),
    }


def samples_per_second(config, updates: int, repeat: int) -> tuple[float, str]:
    """Training samples per second over ``updates`` windows, and the executor's name."""
    built = build(config)
    loop, chip = built.loop, built.hardware
    batch = config.train.timescales.tau_theta
    for _ in range(20):
        loop.update()
    before = chip.steps
    loop.update()
    window_steps = chip.steps - before  # the same for every window of these methods
    best = float("inf")
    for _ in range(repeat):
        start, windows = time.perf_counter(), 0
        while windows < updates:
            windows += len(loop.advance(chip.steps + (updates - windows) * window_steps))
        best = min(best, time.perf_counter() - start)
    return updates * batch / best, type(loop.executor).__name__


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/np_digits.yaml")
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    config = load_config(args.config)
    rows = {label: samples_per_second(cfg, args.updates, args.repeat)
            for label, cfg in cases(config).items()}
    base = rows["BP (baseline)"][0]
    print("| estimator | executor | samples/s | relative to BP |")
    print("|---|---|---|---|")
    for label, (rate, executor) in rows.items():
        print(f"| {label} | {executor} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()

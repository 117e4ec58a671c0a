"""Noise-based learning with stochastic MTJs (Koenders et al.): DANP on the chip's own noise.

Every DANP run uses two noisy passes per minibatch and only the chip's intrinsic
node noise (``perturbation: device``): the controller never sees the noise. Three
studies on one base config (``configs/mtj_danp_digits.yaml``):

- ``compare``: Gaussian and (uncentred) Bernoulli node noise, the simulated sMTJ
  telegraph noise of the Koenders preset with one device per node, and one shared
  device read successively for all nodes, against reference BP and DBP;
- ``delta``: per-node telegraph noise at several thermal stabilities Delta (the
  per-sample flip probability runs from near 1/2 to near 0 as Delta grows), with the
  preset's read-out noise and without any;
- ``read_noise``: per-node telegraph noise with more or less Gaussian read-out noise.

    python -m experiments.mtj_learning --study compare --epochs 50 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from devices.mtj import MTJTelegraphNoiseParams
from devices.noise import BernoulliNoiseParams, GaussianNoiseParams
from devsim.runner import load_config
from experiments.np_family import bar_chart, run_methods
from trainer.backprop import BackpropParams


def with_noise(config, noise):
    """``config`` with the chip's node noise replaced."""
    return config.replace(network=config.network.replace(node_noise=noise))


def flip_probability(noise: MTJTelegraphNoiseParams) -> float:
    """Per-sample flip probability of a zero-bias junction: (1 - exp(-2 dt / tau)) / 2."""
    rate = noise.dt / (noise.tau0 * math.exp(noise.delta))
    return 0.5 * (1.0 - math.exp(-2.0 * rate))


def studies(config, study: str) -> dict:
    """{label: config} for one study."""
    mtj = config.network.node_noise
    if study == "compare":
        bp = config.train.replace(estimator=BackpropParams())
        dbp = config.train.replace(estimator=BackpropParams(
            decorrelation_lr=config.train.estimator.decorrelation_lr))
        return {
            "BP": config.replace(train=bp, network=config.network.replace(decorrelation=False)),
            "DBP": config.replace(train=dbp),
            "DANP Gaussian": with_noise(config, GaussianNoiseParams(std=0.006)),
            "DANP Bernoulli": with_noise(config, BernoulliNoiseParams(amplitude=0.0125, p=0.5)),
            "DANP sMTJ per node": config,
            "DANP one shared sMTJ": with_noise(config, mtj.replace(shared=True)),
        }
    if study == "delta":
        out = {}
        for read_noise in (mtj.read_noise, 0.0):
            for delta in (5.0, 9.335345, 13.0, 15.0):
                noise = mtj.replace(delta=delta, read_noise=read_noise)
                out[f"Delta {delta:.2f} (p_flip {flip_probability(noise):.2g}), "
                    f"read {1e3 * read_noise:.2g} mV"] = with_noise(config, noise)
        return out
    if study == "read_noise":
        return {f"read noise {1e3 * s:g} mV": with_noise(config, mtj.replace(read_noise=s))
                for s in (0.0, 0.00090841466, 0.003, 0.01, 0.03)}
    raise ValueError(f"unknown study {study!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/mtj_danp_digits.yaml")
    ap.add_argument("--study", choices=("compare", "delta", "read_noise"), default="compare")
    ap.add_argument("--epochs", type=float, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    config = load_config(args.config)
    print(f"{args.config}, study {args.study}: {args.epochs:g} epochs, seeds {args.seeds}")
    results = run_methods(config, studies(config, args.study), args.epochs, args.seeds)
    if args.out:
        bar_chart(results, f"{config.name} ({args.study}): {args.epochs:g} epochs, mean of "
                  f"{len(args.seeds)} seeds (dots: seeds)", args.out)
    best = {k: np.mean([r["test"] for r in v]) for k, v in results.items()}
    print("best test accuracy:", max(best, key=best.get))


if __name__ == "__main__":
    main()

"""MGD training speed on the quick-start network, in simulated hardware steps per second.

Quick-start digits network (64-32-10 sigmoid, MSE, ideal device), one sample per
hardware step (tau_x = 1), a new random +-code every step (tau_p = 1), an update
every tau_theta = 100 steps. A hardware step is one inference: perturbed ones and
the baselines (one per new sample and per window start) both count, as in traces.

Five implementations of the same algorithm, timed in the same run:

- ``numpy per step``: NumPy array operations for every hardware step (the method as
  written: one inference, one cost, one accumulation per step); checked equal to the
  engine;
- ``numpy windowed``: the strongest NumPy version: parameters are fixed within an
  update window, so each window is a few GEMMs over its samples (codes from
  :func:`devsim.crng.sign_np`); checked equal to the engine;
- ``controller``: :class:`trainer.loop.TrainingLoop` with :class:`trainer.mgd.MGD`
  and SGD through the :class:`devsim.hardware.Hardware` interface (chip in the loop);
- ``estimator on-chip``: the same loop with ``on_chip: true``: each window's estimate
  from the chip's compiled engine, the update from the controller's optimizer;
- ``on-chip``: :class:`devsim.insitu.OnChipMGD` with SGD on the chip, all windows of a
  chunk in one compiled call.

The sample sequence (:class:`devsim.data.SampleStream`, a Python loop over samples) is
drawn before timing for ``numpy`` and ``on-chip``; the two loop columns include it, as
every ``TrainingLoop.update`` draws its window's samples.

Usage: ``python -m bench.bench_mgd [--repeat 3]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from devsim import crng
from devsim.data import SampleStream
from devsim.insitu import OnChipMGD
from devsim.runner import build, load_config
from trainer.loop import TrainingLoop
from trainer.mgd import MGD, MGDParams
from trainer.optim import sgd

CONFIG = "configs/quickstart.yaml"
TAU_THETA, EPS, LR, SEED = 100, 0.1, 3.0, 7


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))  # NumPy's exp is SIMD; its tanh is 2x slower


def numpy_steps(theta, shapes, offsets, x, y, idx, new, window, key, first_step, target):
    """MGD in NumPy one hardware step at a time (sigmoid layers, MSE, SGD, tau_p = 1):
    updates ``theta`` in place and returns the counted hardware steps."""
    layers = [(offsets[i], offsets[i] + n_out * n_in, offsets[i + 1], n_out, n_in)
              for i, (n_out, n_in) in enumerate(shapes)]
    n_nodes = sum(n_out for n_out, _ in shapes)
    channels = n_nodes if target == "nodes" else len(theta)
    amp = EPS / np.sqrt(channels)
    gain = channels / window / EPS ** 2
    counted = 0
    for s0 in range(0, len(idx) - window + 1, window):
        grad = np.zeros_like(theta)
        for t in range(s0, s0 + window):
            xt, yt = x[idx[t]], y[idx[t]]
            code = amp * crng.sign_np(key, (first_step + t) * channels + np.arange(channels))
            if t == s0 or new[t]:  # a baseline inference: a new sample or a new window
                h = xt
                for o, ob, oe, n_out, n_in in layers:
                    h = _sigmoid(theta[o:ob].reshape(n_out, n_in) @ h + theta[ob:oe])
                c0 = np.mean((h - yt) ** 2)
                counted += 1
            h, inputs, node = xt, [], 0
            for o, ob, oe, n_out, n_in in layers:
                inputs.append(h)
                if target == "nodes":
                    z = theta[o:ob].reshape(n_out, n_in) @ h + theta[ob:oe]
                    z += code[node:node + n_out]
                else:
                    z = (theta[o:ob] + code[o:ob]).reshape(n_out, n_in) @ h \
                        + theta[ob:oe] + code[ob:oe]
                h, node = _sigmoid(z), node + n_out
            signal = (np.mean((h - yt) ** 2) - c0) * gain * code
            counted += 1
            if target == "nodes":
                node = 0
                for (o, ob, oe, n_out, n_in), h_in in zip(layers, inputs):
                    s = signal[node:node + n_out]
                    grad[o:ob] += np.outer(s, h_in).ravel()
                    grad[ob:oe] += s
                    node += n_out
            else:
                grad += signal
        theta -= LR * grad
    return counted


def numpy_windows(theta, shapes, offsets, x, y, idx, new, window, key, first_step, target):
    """Vectorised NumPy MGD (sigmoid layers, MSE, SGD, tau_p = 1): updates ``theta`` in
    place and returns the counted hardware steps."""
    n_nodes = sum(n_out for n_out, _ in shapes)
    channels = n_nodes if target == "nodes" else len(theta)
    amp = EPS / np.sqrt(channels)
    scale = channels / window
    counted = 0
    layers = [(offsets[i], offsets[i] + n_out * n_in, offsets[i + 1], n_out, n_in)
              for i, (n_out, n_in) in enumerate(shapes)]
    for s0 in range(0, len(idx) - window + 1, window):
        rows = idx[s0:s0 + window]
        xw, yw = x[rows], y[rows]
        codes = amp * crng.sign_np(
            key, (first_step + s0 + np.arange(window))[:, None] * channels + np.arange(channels))
        hb = hp = xw
        inputs, node = [], 0
        for o, ob, oe, n_out, n_in in layers:
            w, b = theta[o:ob].reshape(n_out, n_in), theta[ob:oe]
            hb_next = _sigmoid(hb @ w.T + b)
            inputs.append(hp)
            z = hp @ w.T + b
            if target == "nodes":
                z += codes[:, node:node + n_out]
            else:
                dw = codes[:, o:ob].reshape(window, n_out, n_in)
                z += np.einsum("tji,ti->tj", dw, hp) + codes[:, ob:oe]
            hb, hp, node = hb_next, _sigmoid(z), node + n_out
        change = ((hp - yw) ** 2).mean(1) - ((hb - yw) ** 2).mean(1)
        signal = codes * (change * scale / EPS ** 2)[:, None]
        if target == "nodes":
            node = 0
            for (o, ob, oe, n_out, n_in), h in zip(layers, inputs):
                s = signal[:, node:node + n_out]
                theta[o:ob] -= LR * (s.T @ h).ravel()
                theta[ob:oe] -= LR * s.sum(0)
                node += n_out
        else:
            theta -= LR * signal.sum(0)
        counted += window + 1 + int(new[s0 + 1:s0 + window].sum())
    return counted


def _timed(fn, repeat, setup=lambda: ()):
    """Best steps/s over ``repeat`` runs of fn(*setup()) -> counted steps (setup untimed)."""
    best = 0.0
    for _ in range(repeat):
        args = setup()
        t0 = time.perf_counter()
        steps = fn(*args)
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def bench(target: str, repeat: int, chip_steps: int, numpy_count: int, ctrl_steps: int):
    config = load_config(CONFIG)
    built = build(config)
    hw, data = built.hardware, built.data
    x, y = data.x_train, data.y_train
    engine = OnChipMGD(hw, target=target, epsilon=EPS, tau_p=1, seed=SEED)
    stream = SampleStream(len(x), 1, np.random.default_rng(0))
    # correctness first: NumPy and the engine agree over a few windows from one state
    idx, new = stream.next(10 * TAU_THETA)
    theta = hw.read_params()
    theta = hw.read_params()
    per_step = theta.copy()
    numpy_windows(theta, hw.layer_shapes, hw.param_offsets, x, y, idx, new, TAU_THETA,
                  engine.key, engine.step, target)
    numpy_steps(per_step, hw.layer_shapes, hw.param_offsets, x, y, idx, new, TAU_THETA,
                engine.key, engine.step, target)
    engine.train(x, y, idx, new, TAU_THETA, LR)
    assert np.allclose(theta, hw.read_params(), rtol=1e-8, atol=1e-10), "numpy != engine"
    assert np.allclose(per_step, hw.read_params(), rtol=1e-8, atol=1e-10), "numpy != engine"

    def run_numpy_steps(i, n):
        return numpy_steps(theta, hw.layer_shapes, hw.param_offsets, x, y, i, n,
                           TAU_THETA, engine.key, 0, target)

    def run_numpy(i, n):
        return numpy_windows(theta, hw.layer_shapes, hw.param_offsets, x, y, i, n,
                             TAU_THETA, engine.key, 0, target)

    def run_chip(i, n):
        before = hw.steps
        engine.train(x, y, i, n, TAU_THETA, LR)
        return hw.steps - before

    def run_loop(on_chip, steps):
        est = MGD(MGDParams(target=target, epsilon=EPS, on_chip=on_chip), hw, SEED)
        loop = TrainingLoop(hw, x, y, est, sgd(LR), config.train.timescales,
                            np.random.default_rng(1))
        before = hw.steps
        while hw.steps - before < steps:
            loop.update()
        return hw.steps - before

    return {"numpy per step": _timed(run_numpy_steps, repeat,
                                     lambda: stream.next(numpy_count // 50)),
            "numpy": _timed(run_numpy, repeat, lambda: stream.next(numpy_count)),
            "controller": _timed(lambda: run_loop(False, ctrl_steps), repeat),
            "estimator on-chip": _timed(lambda: run_loop(True, 4 * ctrl_steps), repeat),
            "on-chip": _timed(run_chip, repeat, lambda: stream.next(chip_steps))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print("| target | numpy per step | numpy windowed | controller | estimator on-chip "
          "| on-chip SGD | on-chip / numpy per step | on-chip / numpy windowed "
          "| on-chip / controller |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target, sizes in (("nodes", (2_000_000, 100_000, 200_000)),
                          ("weights", (1_000_000, 20_000, 100_000))):
        r = bench(target, args.repeat, *sizes)
        print(f"| {target} | {r['numpy per step']:,.0f} | {r['numpy']:,.0f} "
              f"| {r['controller']:,.0f} | {r['estimator on-chip']:,.0f} | {r['on-chip']:,.0f} "
              f"| {r['on-chip'] / r['numpy per step']:.0f}x | {r['on-chip'] / r['numpy']:.1f}x "
              f"| {r['on-chip'] / r['controller']:.1f}x |")


if __name__ == "__main__":
    main()

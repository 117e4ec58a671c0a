"""Training speed in hardware steps per second: devsim as a user runs it, against a windowed
NumPy implementation of the same method and the machine's GEMM rate (issue 24).

One table over networks x methods x devices x optimizers. Each row, in the same run:

- ``devsim``: the run built from its config (:func:`devsim.runner.build`, so the
  executor is the one ``train.executor: auto`` picks; the row names it) and advanced as
  the runner advances it, in calls of ``loop.advance`` up to the next trace row
  (``trace.log_every`` = 10,000 steps, or fewer whole windows where a window takes
  long), without the trace and evaluations;
- ``NumPy``: the same method in windowed NumPy (:mod:`bench.numpy_training`) from the
  same initial parameters, on the ideal network (for the crossbar and MTJ rows too:
  modelling their noise in NumPy would only slow it down), timed in interleaved rounds
  with devsim (:func:`bench.timing.race`);
- the FLOP bound: the matrix products per counted step
  (:func:`bench.numpy_training.flops_per_step`) at the machine's float64 GEMM rate,
  measured in this run (the best of square ``np.matmul`` products of 256 and 1024, BLAS
  on one thread and on two, raced before and after the rows; the bound takes the best
  rate on at most this run's threads). ``bound / NumPy`` is the most any implementation
  could gain over the NumPy baseline. The per-probe weight products of MGD on weights
  and WP (a matrix of its own per probe) are matrix-vector products, bound by memory
  and the perturbation draws long before the GEMM rate, so their bound is far out of
  reach;
- checks (ideal device, MCU): the NumPy estimate of devsim's first update window, from
  the same parameters, samples and perturbations (the codes regenerated from devsim's
  counter-based key, the noise from a copy of its generator), as a relative error; and
  the mean training cost after the same number of windows of each (same start, their
  own random draws).

Every method runs with a new sample every step (``tau_x = 1``) and, for MGD, a new code
every step (``tau_p = 1``); a hardware step is one inference, baselines and clean
passes included. Usage (from the project root; ``nice`` on a shared machine)::

    python -m bench.bench_training --threads 1 [--repeat 5]
    python -m bench.bench_training --threads 2 [--repeat 5]
    python -m bench.bench_training --quick            # a few rows, a smoke test

``--threads N`` (default 1) holds BLAS (threadpoolctl) and Numba to N threads for the
whole run, NumPy and devsim alike (devsim holds BLAS to one thread inside its windows
anyway); ``OPENBLAS_THREAD_TIMEOUT=20`` unless set, as in :mod:`bench.bench_crossbar`:
idle OpenBLAS workers spin otherwise.
``--match TEXT`` keeps the rows whose label contains TEXT.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # before NumPy loads OpenBLAS

import numba  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from bench import numpy_training as nt  # noqa: E402
from bench.timing import race  # noqa: E402
from devsim import config as cfg  # noqa: E402
from devsim import crng  # noqa: E402
from devsim.runconfig import RunConfig  # noqa: E402
from devsim.runner import build, evaluate  # noqa: E402
from trainer.executors import Plain  # noqa: E402
from trainer.perturbations import rademacher_codes_np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOG_EVERY = 10_000
"""Steps per ``loop.advance`` call: the runner's default trace row."""
CALL_SECONDS = 0.2
"""Longest a timed devsim call should take (fewer windows than LOG_EVERY if needed)."""
CHECK_WINDOWS = 20
"""Update windows of the cost check."""
CHECK_SECONDS = 2.0
"""Fewer windows (at least 3) where devsim's would take longer than this."""
CHECK_ROWS = 500
"""Training samples the cost check evaluates on."""


@dataclass(frozen=True)
class Net:
    """A network of the table: its data, layers (units, activation), loss, learning rates."""

    data: dict
    layers: tuple
    loss: str
    sgd_lr: float
    adam_lr: float


def _teacher(inputs: int, train: int) -> dict:
    """A generated 10-class task: a random tanh teacher labels N(0, I) inputs."""
    return {"type": "teacher", "model": "mlp", "inputs": inputs, "outputs": 10, "classes": True,
            "samples": train * 5 // 4, "test_fraction": 0.2}


NETWORKS = {
    "64-32-10": Net({"type": "digits", "test_fraction": 0.25},
                    ((32, "sigmoid"), (10, "sigmoid")), "mse", 3.0, 0.01),
    "40-100-100-10": Net(_teacher(40, 4000), ((100, "relu"), (100, "relu"), (10, "identity")),
                         "cross_entropy", 0.01, 0.001),
    "784-256-10": Net(_teacher(784, 2000), ((256, "sigmoid"), (10, "sigmoid")), "mse",
                      1.0, 0.001),
}
"""The quick start (configs/quickstart.yaml), the issue's mid-sized network (4,000
training samples of 40 features) and a wide one (2,000 samples of 784 features)."""

METHODS = {
    "MGD nodes": ({"type": "mgd", "target": "nodes", "epsilon": 0.1}, 100),
    "MGD weights": ({"type": "mgd", "target": "weights", "epsilon": 0.1}, 100),
    "NP": ({"type": "np", "perturbation": "gaussian", "sigma": 0.01}, 32),
    "DANP": ({"type": "anp", "perturbation": "gaussian", "sigma": 0.01,
              "decorrelation_lr": 1e-4}, 32),
    "WP": ({"type": "wp", "perturbation": "gaussian", "sigma": 0.01}, 32),
    "WP signs": ({"type": "wp", "perturbation": "rademacher", "sigma": 0.01}, 32),
    "QZO": ({"type": "qzo", "queries": 4, "mu_node": 5, "node_from": 0}, 32),
    "backprop": ({"type": "backprop"}, 100),
}
"""Estimator and update window (tau_theta) of each method; QZO as configs/mcu_qzo.yaml."""
WP_SGD_SCALE = 0.1
"""WP's SGD rate relative to the network's: its estimate's variance grows with the number
of parameters, and at the network's rate it diverges within the timing on 40-100-100-10."""
QZO_LR = 0.1
"""QZO's SGD rate, as configs/mcu_qzo.yaml."""

FLOPS_KEY = {"MGD nodes": "mgd_nodes", "MGD weights": "mgd_weights", "NP": "np",
             "DANP": "danp", "WP": "wp", "WP signs": "wp", "QZO": "qzo",
             "backprop": "backprop"}

CROSSBAR = {"type": "crossbar", "read_noise": 0.01, "input_range": 4.0, "dac_bits": 8,
            "output_range": 16.0, "adc_bits": 10, "w_max": 2.0}
"""A crossbar with 1 % read noise per device, an 8-bit DAC and a 10-bit ADC; writes by
program-and-verify (``dw_min: 0``), so that the row times inference, not pulse trains."""
PBIT = yaml.safe_load((ROOT / "configs" / "mtj_pbit_mgd.yaml").read_text())[
    "network"]["layers"][0]["activation"]
"""The p-bit neuron of configs/mtj_pbit_mgd.yaml (8 reads per probe)."""
MCU = yaml.safe_load((ROOT / "configs" / "mcu_qzo.yaml").read_text())["network"]["device"]


@dataclass(frozen=True)
class Case:
    """One row: network, method, device (``ideal``, ``crossbar``, ``MTJ``, ``MCU``), optimizer."""

    net: str
    method: str
    device: str
    optimizer: str

    @property
    def label(self) -> str:
        return f"{self.net} {self.method} {self.device} {self.optimizer}"

    @property
    def loss(self) -> str:
        return "cross_entropy" if self.device == "MCU" else NETWORKS[self.net].loss

    @property
    def lr(self) -> float:
        net = NETWORKS[self.net]
        if self.method == "QZO":
            return QZO_LR
        if self.optimizer == "adam":
            return net.adam_lr
        return net.sgd_lr * (WP_SGD_SCALE if self.method.startswith("WP") else 1.0)

    def ideal_activations(self) -> list[str]:
        """The activations of the ideal network the NumPy baseline runs: the network's
        (a p-bit neuron's mean response is the sigmoid); on the MCU, which has no int8
        sigmoid, ReLU hidden layers and identity outputs (as configs/mcu_qzo.yaml)."""
        layers = NETWORKS[self.net].layers
        if self.device == "MCU":
            return ["relu"] * (len(layers) - 1) + ["identity"]
        return [act for _, act in layers]

    def config(self) -> RunConfig:
        net = NETWORKS[self.net]
        estimator, window = METHODS[self.method]
        layers = []
        for i, ((units, _), act) in enumerate(zip(net.layers, self.ideal_activations())):
            hidden = i < len(net.layers) - 1
            layers.append({"units": units,
                           "activation": PBIT if hidden and self.device == "MTJ" else act})
        network = {"loss": self.loss, "layers": layers, "decorrelation": self.method == "DANP"}
        if self.device == "crossbar":
            network["device"] = CROSSBAR
        elif self.device == "MCU":
            network["device"] = MCU
        return cfg.from_data(RunConfig, {
            "name": "bench", "seed": 1, "data": net.data, "network": network,
            "train": {"estimator": estimator, "optimizer": {"type": self.optimizer, "lr": self.lr},
                      "timescales": {"tau_x": 1, "tau_p": 1, "tau_theta": window}}})

    def numpy_method(self, built, rng) -> nt.Method:
        """The NumPy baseline from the built run's initial parameters."""
        net = NETWORKS[self.net]
        estimator, _ = METHODS[self.method]
        if self.method == "QZO":
            return nt.QZO(built.bench.network.devices, self.ideal_activations(), self.loss,
                          self.lr, rng, estimator["queries"], estimator["mu_node"])
        model = nt.Model(built.bench.read_params(), built.hardware.layer_shapes,
                         self.ideal_activations(), net.loss, self.method == "DANP")
        opt = nt.optimizer(self.optimizer, self.lr)
        if self.method.startswith("MGD"):
            return nt.MGD(model, opt, rng, estimator["target"], estimator["epsilon"])
        if self.method in ("NP", "DANP"):
            return nt.NodePerturbation(model, opt, rng, "np" if self.method == "NP" else "anp",
                                       estimator["sigma"], estimator.get("decorrelation_lr", 0.0))
        if self.method.startswith("WP"):
            return nt.WeightPerturbation(model, opt, rng, estimator["sigma"],
                                         signs=estimator["perturbation"] == "rademacher")
        return nt.Backprop(model, opt, rng)


PER_STEP = Case("64-32-10", "MGD nodes", "ideal", "sgd")
"""The row that also times MGD written step by step in NumPy."""


def cases(quick: bool) -> list[Case]:
    """The rows of the table (``quick``: a few on the quick-start network)."""
    if quick:
        return [Case("64-32-10", "MGD nodes", "ideal", "sgd"),
                Case("64-32-10", "NP", "ideal", "adam"),
                Case("64-32-10", "MGD nodes", "crossbar", "sgd"),
                Case("64-32-10", "QZO", "MCU", "sgd"),
                Case("64-32-10", "backprop", "ideal", "sgd")]
    rows = []
    for net in NETWORKS:
        for method in ("MGD nodes", "MGD weights", "NP", "DANP", "WP"):
            rows += [Case(net, method, "ideal", "sgd"), Case(net, method, "ideal", "adam"),
                     Case(net, method, "crossbar", "sgd"), Case(net, method, "MTJ", "sgd")]
        rows += [Case(net, "WP signs", "ideal", "sgd"), Case(net, "WP signs", "ideal", "adam")]
        if net != "784-256-10":  # the MCU has no int8 sigmoid
            rows.append(Case(net, "QZO", "MCU", "sgd"))
        rows.append(Case(net, "backprop", "ideal", "sgd"))
    return rows


# ------------------------------------------------------------------ measuring a row
@dataclass
class Row:
    case: Case
    executor: str
    devsim: float
    numpy: float
    flops: float
    window_seconds: float
    """How long one of devsim's windows took (sizes the check)."""
    finite: bool
    """Whether both sides' parameters were still finite after timing."""
    per_step: float | None = None
    """Steps/s of MGD written step by step in NumPy (the quick start's MGD nodes row)."""
    estimate_error: float | None = None
    costs: tuple[float, float, float] | None = None
    """Mean training cost at the start, after the check's windows of devsim, of NumPy."""


def _advance(loop, chip, steps: int) -> None:
    """Advance as the runner does: ``loop.advance`` up to the target, repeatedly."""
    target = chip.steps + steps
    while chip.steps < target:
        loop.advance(target)


def time_row(case: Case, repeat: int, min_time: float) -> Row:
    """devsim's and the NumPy baseline's steps/s for ``case``, raced in one run."""
    built = build(case.config())
    loop, chip, data = built.loop, built.hardware, built.data
    method = case.numpy_method(built, np.random.default_rng(2))
    samples = nt.Samples(len(data.x_train), np.random.default_rng(3))
    _, rows = METHODS[case.method]
    _advance(loop, chip, 1)  # compiles, fills caches
    before, start = chip.steps, time.perf_counter()
    _advance(loop, chip, 1)
    window_steps, window_seconds = chip.steps - before, time.perf_counter() - start
    windows = max(1, min(math.ceil(LOG_EVERY / window_steps),
                         math.ceil(CALL_SECONDS / max(window_seconds, 1e-9))))
    steps = windows * window_steps

    def devsim_call():
        _advance(loop, chip, steps)

    def numpy_calls(method, windows):
        def call():
            for _ in range(windows):
                idx = samples.next(rows)
                method.window(data.x_train[idx], data.y_train[idx])
        return call

    assert method.steps(rows) == window_steps, (case.label, method.steps(rows), window_steps)
    candidates = {"devsim": (devsim_call, steps), "numpy": (numpy_calls(method, windows), steps)}
    if case == PER_STEP:
        per_step = nt.MGDPerStep(copy.deepcopy(method.model), nt.optimizer("sgd", case.lr),
                                 np.random.default_rng(6), "nodes", method.epsilon)
        candidates["per step"] = (numpy_calls(per_step, 1), window_steps)
    best = race({name: fn for name, (fn, _) in candidates.items()}, repeat, min_time)
    rate = {name: n / best[name] for name, (_, n) in candidates.items()}
    queries = METHODS[case.method][0].get("queries", 1)
    finite = bool(np.isfinite(built.bench.read_params()).all() and method.finite())
    return Row(case, type(loop.executor).__name__, rate["devsim"], rate["numpy"],
               nt.flops_per_step(FLOPS_KEY[case.method], chip.layer_shapes, rows, queries),
               window_seconds, finite, rate.get("per step"))


def _first_window_draws(case: Case, estimator, method: nt.Method, rows: int):
    """The perturbations devsim's estimator draws in its first window, as the NumPy
    method takes them."""
    if case.method.startswith("MGD"):
        p = estimator.perturbation
        return rademacher_codes_np(p.key, estimator.step, rows, estimator.tau_p,
                                   estimator.channels, p.rms)
    if case.method == "QZO":
        draws, at = [], 0
        for n_out, _ in estimator.shapes:
            count = rows * estimator.params.queries * n_out
            draws.append(crng.sign_np(estimator.node_key, at + np.arange(count, dtype=np.uint64))
                         .reshape(rows, estimator.params.queries, n_out))
            at += count
        return draws
    if case.method == "WP signs":
        n = estimator.n_params
        return estimator.params.sigma * crng.sign_np(estimator.key, np.arange(
            estimator.rows * n, (estimator.rows + rows) * n, dtype=np.uint64)).reshape(rows, n)
    return method.draw(rows)  # NP, DANP, WP: from a copy of the estimator's generator


def check_row(row: Row) -> None:
    """The first window's estimate of devsim and of NumPy from the same draws, and the
    training cost after the same windows of each, CHECK_WINDOWS or fewer where devsim's
    take over CHECK_SECONDS (into ``row``)."""
    case = row.case
    built = build(case.config())
    loop, est = built.loop, built.loop.estimator
    _, rows = METHODS[case.method]
    method = case.numpy_method(built, copy.deepcopy(getattr(est, "rng", None)))
    draws = _first_window_draws(case, est, method, rows)
    window = loop.next_window()
    devsim = Plain(built.hardware).window(est, window).gradient
    numpy = method.estimate(window.x, window.y, draws)
    error = np.linalg.norm(numpy - devsim) / np.linalg.norm(devsim)
    if case.method == "DANP":
        for r_np, r_ds in zip(method.model.r, built.hardware.read_decorrelation()):
            error = max(error, np.linalg.norm(r_np - r_ds) / np.linalg.norm(r_ds))
    row.estimate_error = float(error)

    built = build(case.config())
    data = built.data
    x, y = data.x_train[:CHECK_ROWS], data.y_train[:CHECK_ROWS]
    start = evaluate(built.bench, x, y, None)["cost"]
    method = case.numpy_method(built, np.random.default_rng(4))
    samples = nt.Samples(len(data.x_train), np.random.default_rng(5))
    for _ in range(max(3, min(CHECK_WINDOWS, round(CHECK_SECONDS / row.window_seconds)))):
        built.loop.update()
        idx = samples.next(rows)
        method.window(data.x_train[idx], data.y_train[idx])
    row.costs = (start, evaluate(built.bench, x, y, None)["cost"], method.mean_cost(x, y))


# ------------------------------------------------------------------ the machine
def gemm_rates(repeat: int, sizes=(256, 1024)) -> dict[tuple[int, int], float]:
    """The machine's float64 GEMM rate (FLOP/s) of square ``np.matmul`` products of each
    size with BLAS on 1 and on 2 threads, by (size, threads), raced in interleaved rounds."""
    rng = np.random.default_rng(0)
    candidates = {}
    for n in sizes:
        a, b, out = rng.standard_normal((n, n)), rng.standard_normal((n, n)), np.empty((n, n))
        for threads in (1, 2):
            candidates[n, threads] = (lambda a=a, b=b, out=out: np.matmul(a, b, out=out),
                                      lambda t=threads: threadpool_limits(t, user_api="blas"))
    best = race(candidates, max(repeat, 7))
    return {(n, t): 2.0 * n ** 3 / seconds for (n, t), seconds in best.items()}


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ------------------------------------------------------------------ the table
def _rate(v: float) -> str:
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k" if v >= 1e3 else f"{v:.0f}"


def table(rows: list[Row], gemm: float) -> list[str]:
    """Markdown lines of the table; ``gemm`` the FLOP/s the bound is taken at."""
    lines = ["| network | method | device | optimizer | executor | devsim steps/s "
             "| NumPy steps/s | devsim / NumPy | kFLOP/step | FLOP bound steps/s "
             "| devsim % of bound | NumPy % of bound | bound / NumPy | first-window estimate "
             "| cost: start -> devsim, NumPy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r.case
        bound = gemm / r.flops
        check = f"{r.estimate_error:.0e}" if r.estimate_error is not None else "-"
        cost = ("{:.3f} -> {:.3f}, {:.3f}".format(*r.costs) if r.costs is not None else "-")
        lines.append(
            f"| {c.net} | {c.method} | {c.device} | {c.optimizer} | {r.executor} "
            f"| {_rate(r.devsim)} | {_rate(r.numpy)} | {r.devsim / r.numpy:.2f}x "
            f"| {r.flops / 1e3:.1f} | {_rate(bound)} | {100 * r.devsim / bound:.1f} "
            f"| {100 * r.numpy / bound:.1f} | {bound / r.numpy:.1f}x | {check} | {cost} |")
    return lines


def targets(rows: list[Row], gemm: float) -> list[str]:
    """The issue's targets: on how many of their rows they are met in this run."""
    def verdict(name, picked, ok):
        met = [r for r in picked if ok(r)]
        return f"- {name}: {len(met)} of {len(picked)} rows"

    mid = "40-100-100-10"
    return [
        verdict(">= 5x NumPy, MGD and NP, ideal", [
            r for r in rows if r.case.device == "ideal" and r.case.method in
            ("MGD nodes", "MGD weights", "NP")], lambda r: r.devsim >= 5 * r.numpy),
        verdict(">= 3x NumPy, crossbar and MTJ, MGD and NP", [
            r for r in rows if r.case.device in ("crossbar", "MTJ") and r.case.method in
            ("MGD nodes", "MGD weights", "NP")], lambda r: r.devsim >= 3 * r.numpy),
        verdict(f">= 30 % of the FLOP bound, {mid}, ideal", [
            r for r in rows if r.case.net == mid and r.case.device == "ideal"],
            lambda r: r.devsim >= 0.3 * gemm / r.flops),
        verdict(">= 1x minibatch NumPy, backprop", [
            r for r in rows if r.case.method == "backprop"], lambda r: r.devsim >= r.numpy),
    ]


def notes(rows: list[Row]) -> list[str]:
    """What the table's rows leave out: the step-by-step NumPy figure, diverged runs."""
    lines = [f"- MGD nodes written step by step in NumPy, {r.case.label}: "
             f"{_rate(r.per_step)} steps/s (devsim {r.devsim / r.per_step:.0f}x, windowed "
             f"NumPy {r.numpy / r.per_step:.0f}x)" for r in rows if r.per_step]
    diverged = [r.case.label for r in rows if not r.finite]
    if diverged:
        lines.append("- parameters not finite after timing (rates of diverged runs): "
                     + "; ".join(diverged))
    return lines


def main(argv=None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--quick", action="store_true", help="a few rows (smoke test)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS and Numba threads")
    ap.add_argument("--match", default="", help="only rows whose label contains this")
    ap.add_argument("--no-check", action="store_true", help="skip the NumPy checks")
    args = ap.parse_args(argv)
    with threadpool_limits(args.threads, user_api="blas"):
        numba.set_num_threads(args.threads)
        picked = [c for c in cases(args.quick) if args.match in c.label]
        min_time = 0.01 if args.quick else 0.1
        started, load, clock = datetime.datetime.now(), _load(), time.perf_counter()
        rates = gemm_rates(args.repeat)
        rows = []
        for case in picked:
            row = time_row(case, args.repeat, min_time)
            if not args.no_check and case.device in ("ideal", "MCU"):
                check_row(row)
            rows.append(row)
            print(f"{case.label}: {row.executor} {_rate(row.devsim)} vs {_rate(row.numpy)}",
                  flush=True)
        rates = {k: max(rate, rates[k]) for k, rate in gemm_rates(args.repeat).items()}
        gemm = max(rate for (_, t), rate in rates.items() if t <= args.threads)
        print(f"\n{started:%Y-%m-%d %H:%M}, {time.perf_counter() - clock:.0f} s; BLAS "
              f"{args.threads} threads, Numba {numba.get_num_threads()}; float64 GEMM, GFLOP/s "
              f"(the better of the runs before and after the rows): "
              + ", ".join(f"{n}^3 on {t} thread{'s' * (t > 1)} {r / 1e9:.1f}"
                          for (n, t), r in rates.items())
              + f"; the bound at {gemm / 1e9:.1f}")
        print(f"load before: {load}\nload after: {_load()}\n")
        print("\n".join(table(rows, gemm)))
        print("\n" + "\n".join(targets(rows, gemm) + notes(rows)))
    return rows


if __name__ == "__main__":
    main()

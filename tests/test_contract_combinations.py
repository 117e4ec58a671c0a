"""Combination contract tables, generated from the registries (plugins included).

- every device (models and presets) x every activation (stateful neurons and presets
  included) x {1, 2 threads} x {one call, the same probes over several block-aligned
  calls, state carried between them}: a network of two such layers gives the same bits
  in all four ways; a layer the schema refuses (a non-grid activation on integer
  devices) is a one-line ParamError naming the key;
- every activation that offers a compiled pass (device neurons: the p-bit): in several
  calls, then accounted, the outputs, state and meter of its Python pass;
- every activation with a compiled code (the functions compiled passes apply): its
  compiled form and derivative give its Python ones bit for bit, in float32 and
  float64, signed zeros, infinities and NaN included;
- every intrinsic node-noise source likewise, in noisy passes;
- every estimator variant x every device: on the first chip options the device offers
  that the estimator accepts, a window is finite and its bits repeat with the seed; every
  refusal on the way is a one-line ParamError naming a key of the estimator;
- issue 25's case: p-bit neurons on crossbar layers, in processes launched with one and
  with two Numba threads.

Beside the same bits: a row whose second pass over the same probes differs from its
first (noise per read, stateful neurons) must differ under another seed; a row the
model declares free of randomness (a device with no non-ideality to switch off,
activations that keep no state) must repeat its first pass exactly.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit
from threadpoolctl import threadpool_limits

from contracts import (FEATURES, ROOT, activation_rows, bench, build, check_refusal, chip_bench,
                       device_rows, estimator_variants, noise_rows, record, table, windows)
from devsim import parallel
from devsim.activations import apply_in_place, derivative
from devsim.hardware import Request
from devsim.params import ParamError
from trainer.executors import Plain

WIDTHS = (6, 8, 4)
B = parallel.BLOCK_ROWS
PROBES = 5 * B
"""A call long enough to be split across two threads (devsim.parallel)."""
CALLS = ((0, B), (B, 3 * B), (3 * B, PROBES))
"""The same probes over three calls cut at block boundaries, the second long enough to
be split across threads itself."""
assert 3 * B - B >= 2 * parallel.MIN_ROWS_PER_THREAD
WAYS = [(threads, calls) for threads in (1, 2) for calls in ("one call", "split calls")]


@contextlib.contextmanager
def threads(n: int):
    """Numba and BLAS held to ``n`` threads (at most Numba's launch maximum)."""
    with threadpool_limits(n):
        before = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(before)


def _probes(n_in, n_nodes, seed=5):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (PROBES, n_in)), 0.05 * rng.standard_normal((PROBES, n_nodes))


def _passes(run, calls: str) -> np.ndarray:
    """``run(a, b)`` of probes [a, b) as one call or as :data:`CALLS`."""
    bounds = ((0, PROBES),) if calls == "one call" else CALLS
    return np.concatenate([run(a, b) for a, b in bounds])


def _check_ways(make, run, table_name: str, row: str, deterministic: bool) -> None:
    """The four ways agree bit for bit; a second pass repeats the first where the model
    declares no randomness, and a row whose passes vary differs under another seed.
    ``make(seed)`` builds the model, ``run(model, a, b)`` runs its probes [a, b)."""
    name = f"{table_name} {row}"
    outs = {}
    for n, calls in WAYS:
        with threads(n):
            model = make(0)
            outs[n, calls] = _passes(lambda a, b: run(model, a, b), calls)
            if (n, calls) == (1, "one call"):
                again = _passes(lambda a, b: run(model, a, b), calls)
    reference = outs[1, "one call"]
    assert np.isfinite(reference).all()
    for way, out in outs.items():
        np.testing.assert_array_equal(out, reference, err_msg=f"{name}: {way}")
    random = not np.array_equal(again, reference)
    if deterministic:
        assert not random, f"{name}: declared free of randomness, but a second pass differs"
    if random:
        other = make(1)
        assert not np.array_equal(_passes(lambda a, b: run(other, a, b), "one call"),
                                  reference), f"{name}: another seed gives the same bits"
    record(f"{table_name} x threads x calls", [f"{row} {n}t {calls}" for n, calls in WAYS])


# ------------------------------------------------------------- device x activation
DEVICES, ACTIVATIONS = device_rows(), activation_rows()
PAIRS = table("device x activation", [
    pytest.param(d.values[0], a.values[0], id=f"{d.id}/{a.id}")
    for d in DEVICES for a in ACTIVATIONS])


@pytest.mark.parametrize("device, activation", PAIRS)
def test_device_and_activation_give_the_same_bits_for_any_threads_and_calls(
        device, activation, request):
    name = request.node.callspec.id
    try:
        bench(device, WIDTHS, [activation] * 2)
    except ParamError as error:
        assert "\n" not in str(error) and error.path[-1] == "activation", str(error)
        record("device x activation refusals", [name])
        return
    x, node = _probes(WIDTHS[0], sum(WIDTHS[1:]))

    def make(seed):
        return bench(device, WIDTHS, [activation] * 2, seed).network

    def run(network, a, b):
        return network.run(x[a:b], node[a:b]).outputs

    network = make(0)
    deterministic = (device.without_nonidealities() == device
                     and not any(act.stateful for act in network.activations))
    _check_ways(make, run, "device x activation", name, deterministic)


# ------------------------------------------------------------- compiled neuron passes
_NEURON_PASS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_neurons_compiled_pass_gives_its_python_pass(activation, request):
    """Every activation that offers a compiled pass (devsim.activations.CompiledNeuron,
    for executors that run whole windows in compiled code): called on a pass's rows in
    several calls of consecutive rows, then accounted, it leaves the outputs, the state
    and the meter the Python pass leaves."""
    name = request.node.callspec.id
    z = np.random.default_rng(5).normal(0.0, 2.0, (PROBES, 8))
    python, compiled = (activation.build(8, np.random.default_rng(3)) for _ in range(2))
    start = compiled.compiled()
    if start is None:
        record("activations without a compiled pass", [name])
        return
    record("activations with a compiled pass", [name])
    expected = python(z)
    out, events = z.copy(), 0
    for a, b in ((0, 1), (1, B + 3), (B + 3, PROBES)):
        block = np.ascontiguousarray(out[a:b])
        _NEURON_PASS(start.address)(block.ctypes.data, b - a, 8, start.ints.ctypes.data,
                                    start.floats.ctypes.data, start.state.ctypes.data)
        out[a:b] = block
        events += int(start.ints[0])
    start.account(PROBES, events)
    np.testing.assert_array_equal(out, expected)

    def own(neuron):  # what a neuron's pass reads and changes (ints[0]: the events out)
        return neuron.ints[1:], neuron.floats, neuron.state

    reference = own(python.compiled())
    for passed, now, want in zip(own(start), own(compiled.compiled()), reference):
        np.testing.assert_array_equal(passed, want)  # the arrays handed over, advanced
        np.testing.assert_array_equal(now, want)  # the neuron's own, after accounting
    assert vars(compiled.meter) == vars(python.meter)
    assert not np.array_equal(expected, python(z))  # a stateful, random neuron


# ------------------------------------------------------------- compiled activation codes
@njit(cache=True)
def _derivatives(code, z, h, parameter):
    out = np.empty(z.shape)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            out[i, j] = derivative(code, z[i, j], h[i, j], parameter)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_activations_compiled_code_gives_its_python_function(activation, dtype, request):
    """Every activation with a code for compiled passes
    (devsim.activations.apply_in_place, used by the crossbar chain and the compiled
    executors): that code with the activation's parameter gives its in-place function's
    bits, signs of zeros included, and the compiled derivative (from z and the output)
    gives its derivative's bits in float64, where the reference model takes it."""
    name = request.node.callspec.id
    act = activation.build(300, np.random.default_rng(3))
    if act.stateful or act.native is None:
        record("activations without a compiled code", [name.split("-")[-1]])
        return
    record("activations with a compiled code", [name.split("-")[-1]])
    z = np.random.default_rng(0).standard_normal((9, 300)).astype(dtype) * 20
    z[0, :6] = [-0.0, 0.0, np.nan, -np.inf, np.inf, -1e-30]
    expected = act.in_place(z.copy())
    got = z.copy()
    apply_in_place(act.native, got, act.parameter)
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))
    z64 = z.astype(np.float64)[1:]  # the reference model's derivatives are float64
    np.testing.assert_array_equal(
        _derivatives(act.native, z64, act(z64), act.parameter), act.derivative(z64))


# ------------------------------------------------------------- node-noise sources
@pytest.mark.parametrize("source", noise_rows())
def test_noise_source_gives_the_same_bits_for_any_threads_and_calls(source, request):
    x, _ = _probes(WIDTHS[0], 0)
    y = np.random.default_rng(6).uniform(0.0, 1.0, (PROBES, WIDTHS[-1]))

    def make(seed):
        return bench(None, WIDTHS, None, seed, node_noise=source).chip

    def run(chip, a, b):
        return chip.run(Request(x[a:b], y[a:b], noisy=True)).costs

    _check_ways(make, run, "noise source", request.node.callspec.id, False)


# ------------------------------------------------------------- estimator x device
ESTIMATOR_DEVICE = table("estimator x device", [
    pytest.param(p, d.values[0], id=f"{name}/{d.id}")
    for name, p in estimator_variants() if not isinstance(p, ParamError) for d in DEVICES])


@pytest.mark.parametrize("params, device", ESTIMATOR_DEVICE)
def test_every_estimator_runs_on_every_device_it_accepts(params, device, request):
    """On the fewest chip options of ``device`` the estimator accepts: a finite window of
    the declared step cost, the same bits from the same seed; the refusals on the way
    are one line naming a key (an estimator no option of a device satisfies is recorded
    as refusing that device)."""
    name = request.node.callspec.id

    def first_accepted(seed):
        for features in FEATURES:
            lab = chip_bench(device, features, seed=seed)
            try:
                return lab, build(params, lab, seed)
            except ParamError as error:
                check_refusal(error, params)
                record("estimator x device refusals",
                       [f"{name} ({'+'.join(features) or 'no options'})"])
        return None, None

    def run(seed):
        lab, estimator = first_accepted(seed)
        if estimator is None:
            return None
        out = []
        for window in windows(lab.chip, 2):
            steps, before = estimator.window_steps(window), lab.chip.steps
            estimate = Plain(lab.chip).window(estimator, window)
            assert lab.chip.steps - before == steps
            assert np.isfinite(estimate.gradient).all() and np.isfinite(estimate.cost)
            out.append(estimate.gradient)
        return np.concatenate(out)

    first = run(3)
    if first is None:
        return
    np.testing.assert_array_equal(run(3), first)
    record("estimator x device runs", [name])


# ------------------------------------------------------------- issue 25's case
PBIT_SCRIPT = r"""
import sys
from dataclasses import replace

import numpy as np

from devsim.assemble import build
from devsim.network import Network
from devsim.runconfig import load_config

config = load_config(sys.argv[1], ["network.device.preset=crossbar_ideal",
                                   "train.timescales.tau_theta=2048"])
built = build(config, "mtj_pbit_mgd.yaml")
x = built.data.x_train
out = {"pass": built.bench.network.run(x[np.arange(2048) % len(x)]).outputs}
updates = [built.loop.update() for _ in range(2)]
out["updates"] = np.array([[u.cost, u.estimate_norm, u.update_norm] for u in updates])
out["params"] = built.bench.read_params()
# the p-bit layer alone on the same device, 2,048 probes of one input
layer = replace(config.network, layers=config.network.layers[:1])
net = Network(layer, x.shape[1], np.random.default_rng(0), np.random.default_rng(1))
out["pbits"] = net.run(np.repeat(x[:1], 2048, axis=0)).outputs
np.savez(sys.argv[2], **out)
"""


def test_pbit_neurons_on_crossbar_layers_same_bits_at_1_and_2_threads_and_fresh_draws(tmp_path):
    """Issue 25: ``configs/mtj_pbit_mgd.yaml`` on ``crossbar_ideal`` layers, passes and
    MGD windows of 2,048 probes, in processes launched with NUMBA_NUM_THREADS 1 and 2
    (twice): the same outputs, updates and parameters. And the p-bit layer's outputs at
    probes t and t + 1024 (the same input) agree as often as two independent reads do,
    sum_k p_k^2 from each neuron's distribution of outputs over the pass (probes are 80
    ns apart, the junctions' correlation time 5 ns), not as often as reused draws."""
    runs = {}
    for name, n in (("one", 1), ("two", 2), ("two again", 2)):
        env = {**os.environ, "NUMBA_NUM_THREADS": str(n)}
        out = tmp_path / f"{name}.npz"
        runs[name] = (out, subprocess.Popen(
            [sys.executable, "-c", PBIT_SCRIPT, str(ROOT / "configs/mtj_pbit_mgd.yaml"),
             str(out)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True))
    results = {}
    for name, (out, proc) in runs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results[name] = dict(np.load(out))
    for name in ("two", "two again"):
        for key, value in results["one"].items():
            np.testing.assert_array_equal(results[name][key], value, err_msg=f"{name}: {key}")
    pbits = results["two"]["pbits"]
    half = len(pbits) // 2
    agree = (pbits[:half] == pbits[half:]).mean(axis=0)  # per neuron
    levels = np.unique(pbits)
    p = (pbits[:, :, None] == levels).mean(axis=0)  # (neurons, levels)
    expected = (p ** 2).sum(axis=1)
    # standard errors: the agreement of `half` pairs, and the plug-in sum_k p_k^2 of
    # 2 half probes (delta method: 4 (sum p^3 - (sum p^2)^2) / n)
    var = (expected * (1 - expected) / half
           + 4 * ((p ** 3).sum(axis=1) - expected ** 2) / len(pbits))
    se = np.sqrt(var.sum()) / len(expected)
    assert expected.mean() < 0.5  # far from 1, where reused draws would put it
    assert abs(agree.mean() - expected.mean()) < 5 * se, (agree.mean(), expected.mean(), se)

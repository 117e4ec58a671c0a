"""Contract table of the executors: the compiled windows (:mod:`trainer.compiled`) and the
plain ask/tell loop give the same bits, for every combination the compiled executor
covers, at one and two threads; everything else it refuses with its reasons, and the
run goes through the plain loop."""
from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from contracts import ROOT, table
from conftest import chip_of, lab
from devsim import blas
from devsim.activations import ActivationParams, LeakyReLU
from devsim.device import DeviceParams, NoiseSourceParams
from devsim.network import LayerParams, Network, NetworkParams
from devsim.params import ParamError
from devsim.runner import load_config, run
from devsim.trace import read_trace
from devsim.training import EstimatorParams, OptimizerParams, Timescales
from trainer.base import Setup
from trainer.backprop import BackpropParams
from trainer.compiled import (EXECUTORS, OPTIMIZERS, Compiled, CompiledBackprop, CompiledMGD,
                              CompiledNP, CompiledWP)
from trainer.exact_chip import ExactChip
from trainer.executors import Plain, select
from trainer.loop import TrainingLoop
from trainer.mgd import MGD, MGDParams

VARIANTS = {
    "mgd-nodes": MGDParams(target="nodes"),
    "mgd-weights": MGDParams(target="weights", epsilon=0.05),
    "mgd-nodes-analog": MGDParams(target="nodes", mode="analog"),
    "mgd-weights-analog-lowpass": MGDParams(target="weights", mode="analog",
                                            integrator="lowpass", tau_lp=30.0, epsilon=0.05),
    "mgd-nodes-lowpass-clipped": MGDParams(target="nodes", integrator="lowpass",
                                           cost_change_clip=0.002, normalize=False),
    "np": EstimatorParams.members()["np"](sigma=0.02),
    "anp": EstimatorParams.members()["anp"](sigma=0.02),
    "inp": EstimatorParams.members()["inp"](sigma=0.02),
    "wp": EstimatorParams.members()["wp"](sigma=0.01),
    "wp-rademacher": EstimatorParams.members()["wp"](sigma=0.01, perturbation="rademacher"),
    "backprop": BackpropParams(),
    "dnp": EstimatorParams.members()["np"](sigma=0.02, decorrelation_lr=0.05),
    "danp": EstimatorParams.members()["anp"](sigma=0.02, decorrelation_lr=0.05),
    "dinp": EstimatorParams.members()["inp"](sigma=0.02, decorrelation_lr=0.05),
}
"""The estimators' variants the compiled executors cover (``dnp``, ``danp`` and ``dinp``
on chips with decorrelation matrices, which their rule trains)."""
PBIT = ActivationParams.members()["mtj_pbit"](read_samples=4, read_energy=1e-15,
                                              switch_energy=3e-15)
"""p-bit neurons: stateful MTJs, four samples a probe, metered (devices/mtj.py)."""
SCHEDULES = {"constant": {}, "cosine-clipped": dict(schedule="cosine", decay_updates=8,
                                                     final_lr_fraction=0.1, clip_norm=0.3)}
LR = {"sgd": 0.5, "momentum": 0.2, "adam": 0.02}
OPTIMIZER_ROWS = [pytest.param(kind, schedule, id=f"{kind}-{schedule}")
                  for kind in sorted(OptimizerParams.members()) for schedule in SCHEDULES]


def _optimizer(kind, schedule):
    cls = OptimizerParams.members()[kind]
    extra = dict(nesterov=True) if kind == "momentum" and schedule != "constant" else {}
    return cls(lr=LR.get(kind, 0.1), **SCHEDULES[schedule], **extra)


def _network(acts=("relu", "sigmoid"), widths=(6, 5, 3), loss="mse", device=None, seed=3,
             bias=True, **network):
    members = ActivationParams.members()
    layers = tuple(LayerParams(units=w, activation=a if isinstance(a, ActivationParams)
                               else members[a](), bias=bias)
                   for w, a in zip(widths[1:], acts))
    params = NetworkParams(layers=layers, loss=loss,
                           **({"device": device} if device is not None else {}), **network)
    rng = np.random.default_rng(seed)
    return Network(params, widths[0], rng, rng)


def _chip_for(variant, **network):
    """:func:`_network` for ``variant``: with decorrelation matrices where it trains them."""
    decorrelates = getattr(VARIANTS[variant], "decorrelation_lr", 0.0) > 0.0
    return _network(**({"decorrelation": True} if decorrelates else {}), **network)


def _data(n_in, n_out, n=37, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), np.eye(n_out)[rng.integers(0, n_out, n)]


def _loop(network, estimator_params, optimizer, scales, executor, seed=11):
    chip = chip_of(network, network.params.loss)
    x, y = _data(network.shapes[0][1], network.shapes[-1][0])
    estimator = estimator_params.build(Setup(chip, np.random.default_rng(seed), scales,
                                             lab(chip) if estimator_params.outside_the_rule
                                             else None))
    chosen = select(lab(chip), estimator, optimizer, executor)
    return TrainingLoop(chip, x, y, estimator, optimizer.build(), scales,
                        np.random.default_rng(seed + 1), executor=chosen)


def _flat(tree) -> list:
    """Every number of a nested state, in order (arrays as bytes)."""
    if isinstance(tree, np.ndarray):
        return [tree.tobytes()]
    if isinstance(tree, (tuple, list)):
        return [v for item in tree for v in _flat(item)]
    if isinstance(tree, dict):
        return [v for key in sorted(tree) for v in _flat(tree[key])]
    return [repr(tree)]


def _trajectory(loop, stops):
    """Advance the loop to each step in ``stops``; everything it leaves behind."""
    stats = []
    for stop in stops:
        while loop.chip.steps < stop:
            stats += [(s.cost, s.estimate_norm, s.update_norm, s.skipped)
                      for s in loop.advance(stop)]
    est = loop.estimator
    state = ([est.step, est._filter, est._integral] if hasattr(est, "step")
             else [est.rng.random(3)] if hasattr(est, "rng") else [])
    neurons = [act.compiled() for act in lab(loop.chip).network.activations]
    neurons = [(n.ints[1:], n.floats, n.state) for n in neurons if n is not None]
    return dict(params=_flat(lab(loop.chip).state()), neurons=_flat(neurons),
                stats=repr(stats),
                steps=loop.chip.steps, meter=lab(loop.chip).meter(),
                estimator=_flat(state),
                optimizer=_flat(loop.opt_state), stream=loop.stream.next(7)[0].tobytes())


def _both(make, stops, threads=(1,)):
    """The trajectories of the plain loop and of the auto-selected executor (compiled
    where it covers the run), at each thread count."""
    out = []
    for n in threads:
        with threadpool_limits(n):
            before = numba.get_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            try:
                for mode in ("plain", "auto"):
                    loop = make(mode)
                    out.append((mode, type(loop.executor), _trajectory(loop, stops)))
            finally:
                numba.set_num_threads(before)
    return out


def _assert_same(runs):
    reference = runs[0][2]
    for _, _, trajectory in runs[1:]:
        for key, value in reference.items():
            assert trajectory[key] == value, key


# ------------------------------------------------------------------ the covered product
@pytest.mark.parametrize("kind,schedule", table("compiled executor: optimizers", OPTIMIZER_ROWS))
@pytest.mark.parametrize("variant", table("compiled executor: estimators", [
    pytest.param(v, id=v) for v in VARIANTS]))
def test_compiled_windows_equal_the_plain_loop_bit_for_bit(variant, kind, schedule):
    optimizer = _optimizer(kind, schedule)
    scales = Timescales(tau_x=3, tau_p=2, tau_theta=10)
    estimator = VARIANTS[variant]
    runs = _both(lambda mode: _loop(_chip_for(variant), estimator, optimizer, scales, mode),
                 stops=(57, 300, 301))
    compiled = kind in OPTIMIZERS
    expected = (CompiledMGD if variant.startswith("mgd") else
                CompiledBackprop if variant == "backprop" else
                CompiledWP if variant.startswith("wp") else CompiledNP)
    assert runs[1][1] is (expected if compiled else Plain) and runs[0][1] is Plain
    _assert_same(runs)


@pytest.mark.parametrize("variant", ["mgd-nodes", "np", "anp", "inp"])
def test_a_chip_with_intrinsic_node_noise_runs_compiled_with_the_same_bits(variant):
    """The covered estimators inject their own perturbations and never ask for noisy
    passes, so the chip's own node noise never acts: the compiled executor covers such a
    chip with the plain loop's bits, at one and two threads."""
    noise = NoiseSourceParams.members()["gaussian"](std=0.05)
    runs = _both(lambda mode: _loop(_network(node_noise=noise), VARIANTS[variant],
                                    _optimizer("adam", "constant"),
                                    Timescales(tau_x=2, tau_theta=10), mode),
                 stops=(57, 300), threads=(1, 2))
    assert [r[1] for r in runs[:2]] == [Plain, CompiledMGD if variant == "mgd-nodes"
                                        else CompiledNP]
    _assert_same(runs)


@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-weights", "np", "anp", "inp", "wp",
                                     "wp-rademacher", "dnp", "danp", "dinp"])
def test_a_chip_with_decorrelation_matrices_runs_compiled_with_the_same_bits(variant):
    """Every layer takes R_l h: the compiled passes make that product as the chip does,
    and the decorrelation rule of DNP and DANP moves the live R_l by the same kernel as
    the plain loop (R held fixed by the other estimators), at one and two threads; the
    matrices are part of the compared state."""
    def make(mode):
        return _loop(_network(("relu", "sigmoid"), (6, 5, 3), decorrelation=True),
                     VARIANTS[variant], _optimizer("adam", "constant"),
                     Timescales(tau_x=2, tau_p=2, tau_theta=10), mode)

    runs = _both(make, stops=(57, 300), threads=(1, 2))
    assert [issubclass(r[1], Compiled) for r in runs] == [False, True, False, True]
    _assert_same(runs)
    eye = np.concatenate([np.eye(6).ravel(), np.eye(5).ravel()])
    moved = np.frombuffer(runs[1][2]["params"][0], dtype=np.float64)  # sorted: R first
    assert len(moved) == len(eye) and (variant.startswith("d") != np.array_equal(moved, eye))


@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-weights", "np", "anp", "inp", "wp",
                                     "danp"])
def test_a_chip_with_device_neurons_runs_compiled_with_the_same_bits(variant):
    """A hidden layer of p-bit neurons, whose compiled pass
    (:class:`devsim.activations.CompiledNeuron`) the compiled windows call block by
    block: the same outputs, device states, stream positions and meters as the plain
    loop's one call per pass, at one and two threads (windows of 140 probes and more
    cross a block's 128 rows)."""
    def make(mode):
        return _loop(_chip_for(variant, acts=(PBIT, "sigmoid")), VARIANTS[variant],
                     _optimizer("sgd", "constant"), Timescales(tau_x=2, tau_theta=70), mode)

    runs = _both(make, stops=(300, 1500), threads=(1, 2))
    assert [issubclass(r[1], Compiled) for r in runs] == [False, True, False, True]
    _assert_same(runs)
    assert runs[0][2]["neurons"] != _trajectory(make("plain"), (0,))["neurons"]  # moved


class _Poisoned:
    """NumPy for trainer.compiled, whose work arrays come filled with values no result
    may depend on: NaN, or a valid-looking counter (977) for integers."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def _poison(out):
        out.fill(np.nan if out.dtype.kind == "f" else 977)
        return out

    def empty(self, shape, dtype=float):
        return self._poison(np.empty(shape, dtype))

    def empty_like(self, a):
        return self._poison(np.empty_like(a))


@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-nodes-analog",
                                     "mgd-weights-analog-lowpass", "inp", "danp", "wp",
                                     "wp-rademacher", "backprop"])
def test_what_the_work_arrays_held_before_never_matters(variant, monkeypatch):
    """The compiled windows read only what they wrote: with work arrays filled with NaN
    and stray counters, the plain loop's bits."""
    import trainer.compiled
    monkeypatch.setattr(trainer.compiled, "np", _Poisoned())
    runs = _both(lambda mode: _loop(_chip_for(variant), VARIANTS[variant],
                                    _optimizer("adam", "constant"),
                                    Timescales(tau_x=2, tau_p=2, tau_theta=10), mode),
                 stops=(300,))
    assert issubclass(runs[1][1], Compiled)
    _assert_same(runs)


@pytest.mark.parametrize("acts,loss,widths", table("compiled executor: layers and losses", [
    pytest.param(("identity",), "mse", (4, 3), id="one-layer-identity-mse"),
    pytest.param(("sigmoid", "identity"), "cross_entropy", (6, 5, 3), id="sigmoid-identity-ce"),
    pytest.param(("relu", "relu", "sigmoid"), "mse", (7, 6, 5, 2), id="three-layers"),
    pytest.param((LeakyReLU(slope=0.1), "identity"), "cross_entropy", (6, 5, 3),
                 id="leaky-relu-identity-ce"),
    pytest.param(("relu", "sigmoid"), "mse", (6, 5, 1), id="one-output"),  # gemv, dot
]))
def test_compiled_windows_cover_every_compiled_activation_and_loss(acts, loss, widths):
    optimizer = _optimizer("adam", "constant")
    scales = Timescales(tau_x=1, tau_p=1, tau_theta=9)
    for estimator in ("mgd-nodes", "mgd-weights", "anp", "inp", "wp", "backprop"):
        runs = _both(lambda mode: _loop(_network(acts, widths, loss), VARIANTS[estimator],
                                        optimizer, scales, mode), stops=(200,))
        assert issubclass(runs[1][1], Compiled)
        _assert_same(runs)


@pytest.mark.parametrize("tau_theta", [1, 129])
@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-weights", "np", "danp", "backprop"])
def test_one_column_products_are_numpys_matrix_vector_and_dot_products(variant, tau_theta):
    """A layer of one output, or one input under a decorrelation matrix (R h is then a
    one-column product), makes NumPy's matrix-vector products (gemv) and, in a block of
    one row (windows of one sample, or of 129: a block of 128 and one of 1), its dot
    products: compiled windows give the plain loop's bits."""
    decorrelated = variant == "danp"
    widths = (1, 5, 2) if decorrelated else (6, 5, 1)
    runs = _both(lambda mode: _loop(_network(("relu", "sigmoid"), widths,
                                             decorrelation=decorrelated),
                                    VARIANTS[variant], _optimizer("sgd", "constant"),
                                    Timescales(tau_x=1, tau_p=1, tau_theta=tau_theta), mode),
                 stops=(300,))
    assert issubclass(runs[1][1], Compiled)
    _assert_same(runs)


@pytest.mark.parametrize("acts,loss", [(("sigmoid", "sigmoid"), "mse"),
                                       (("relu", "identity"), "cross_entropy"),
                                       ((LeakyReLU(slope=0.2), "sigmoid"), "mse")])
def test_backprop_from_the_chips_recorded_pass_is_the_reference_gradient(acts, loss):
    """On an exact chip reference backprop takes its gradient from the chip's own pass
    (the compiled kernel): the reference model's gradient to rounding."""
    loop = _loop(_network(acts, (6, 5, 3), loss), VARIANTS["backprop"],
                 _optimizer("sgd", "constant"), Timescales(tau_theta=12), "plain")
    window = loop.next_window()
    estimate = loop.executor.window(loop.estimator, window)
    bench = lab(loop.chip)
    reference = bench.reference().gradient(bench.read_params(), window.x, window.y)
    np.testing.assert_allclose(estimate.gradient, reference, rtol=1e-12,
                               atol=1e-15 * np.abs(reference).max())
    assert np.count_nonzero(reference) > len(reference) // 2  # a gradient to compare


@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-weights", "np", "wp", "danp", "inp"])
def test_long_windows_split_over_threads_give_the_same_bits(variant):
    """Windows of 300 probes: the plain loop's chip cuts such calls into row parts run on
    two threads; the compiled executor runs them in one: the same canonical blocks."""
    optimizer = _optimizer("momentum", "constant")
    scales = Timescales(tau_x=1, tau_p=1, tau_theta=150)
    runs = _both(lambda mode: _loop(_chip_for(variant, widths=(6, 9, 3)), VARIANTS[variant],
                                    optimizer, scales, mode), stops=(1500,), threads=(1, 2))
    assert [r[1] is Plain for r in runs] == [True, False, True, False]
    _assert_same(runs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-weights-analog-lowpass", "anp",
                                     "wp-rademacher", "backprop", "dnp", "inp"])
def test_a_skipped_window_ends_the_call_and_the_streams_give_only_what_ran(variant, kind):
    """A learning rate that overflows skips windows: the compiled call stops at each, so
    the runner sees it where the plain loop would, and the sample stream (and the
    estimator's noise stream) is left where the plain loop leaves it; the low-pass
    integral keeps its value from before the non-finite window, and the optimizer counts
    only the updates written (Adam's bias corrections)."""
    optimizer = OptimizerParams.members()[kind](lr=1e100)  # parameters overflow next window
    scales = Timescales(tau_x=2, tau_p=1, tau_theta=10)
    runs = _both(lambda mode: _loop(_chip_for(variant, acts=("identity", "identity")),
                                    VARIANTS[variant], optimizer, scales, mode), stops=(400,))
    assert "True" in runs[0][2]["stats"]  # windows were skipped
    _assert_same(runs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_sample_with_an_infinite_feature_gives_the_plain_loops_bits_under_wp():
    """Weight perturbation's clean rows carry a zero perturbation, which the device adds:
    0 x inf makes such a row's pre-activations NaN where the product alone is +-inf (and
    the sigmoid would hide it). The compiled windows add it too, so the windows that
    draw the sample are skipped either way."""
    def make(mode):
        loop = _loop(_network(("sigmoid", "sigmoid")), VARIANTS["wp"],
                     _optimizer("sgd", "constant"), Timescales(tau_theta=8), mode)
        loop.x[:, 2] = np.where(np.arange(len(loop.x)) == 3, np.inf, loop.x[:, 2])
        return loop
    runs = _both(make, stops=(300,))
    assert "True" in runs[0][2]["stats"] and "False" in runs[0][2]["stats"]
    _assert_same(runs)


def test_gaussian_wp_draws_at_most_noise_bytes_a_call_into_a_kept_array(monkeypatch):
    """Gaussian WP's perturbations are drawn before each compiled call: at most
    NOISE_BYTES of them (a call runs fewer windows on a large network), into a work
    array kept between calls."""
    import trainer.compiled
    loop = _loop(_network(), VARIANTS["wp"], _optimizer("sgd", "constant"),
                 Timescales(tau_theta=8), "auto")
    P = loop.estimator.n_params
    monkeypatch.setattr(trainer.compiled, "NOISE_BYTES", 8 * 8 * P * 3 + 5)
    assert len(loop.advance(10 ** 6)) == 3
    kept = loop.executor._work["noise"]
    assert kept.shape == (3, 8, P)
    assert len(loop.advance(10 ** 6)) == 3 and loop.executor._work["noise"] is kept
    monkeypatch.setattr(trainer.compiled, "NOISE_BYTES", 8)  # less than a window's
    assert len(loop.advance(10 ** 6)) == 1


@pytest.mark.parametrize("variant,passes", [("np", 1), ("inp", 2)])
def test_node_perturbation_draws_at_most_noise_bytes_a_call(variant, passes, monkeypatch):
    """NP's noise (one noisy pass; INP: one per layer, here two) is drawn before each
    compiled call, at most NOISE_BYTES of it: a call runs fewer windows on a large
    network, with the bits of the plain loop."""
    import trainer.compiled

    def make(mode):
        return _loop(_network(), VARIANTS[variant], _optimizer("sgd", "constant"),
                     Timescales(tau_theta=8), mode)

    K = make("plain").estimator.n_nodes
    monkeypatch.setattr(trainer.compiled, "NOISE_BYTES", 8 * passes * 8 * K * 3 + 5)
    loop = make("auto")
    assert len(loop.advance(10 ** 6)) == 3
    assert loop.chip.steps == 3 * (1 + passes) * 8
    monkeypatch.setattr(trainer.compiled, "NOISE_BYTES", 8)  # less than a window's
    assert len(loop.advance(10 ** 6)) == 1
    _assert_same(_both(make, stops=(500,)))


def test_a_whole_run_writes_the_same_trace_either_way(tmp_path):
    sets = ["train.steps=30000", "train.eval_every=10000", "trace.log_every=2000",
            "trace.snapshot_every=6000", "train.optimizer={type: adam, lr: 0.01}"]
    traces = {}
    for mode in ("plain", "auto"):
        config = load_config(ROOT / "configs/quickstart.yaml", sets + [f"train.executor={mode}"])
        run(config, out=tmp_path / f"{mode}.h5")
        traces[mode] = read_trace(tmp_path / f"{mode}.h5")
    for group in ("scalars", "evals", "snapshots"):
        plain, auto = getattr(traces["plain"], group), getattr(traces["auto"], group)
        assert set(plain) == set(auto)
        for key in plain:
            if key != "wall_time":
                np.testing.assert_array_equal(plain[key], auto[key], err_msg=key)


# ------------------------------------------------------------------ every registered row
def _estimator_rows():
    rows = []
    for kind, cls in sorted(EstimatorParams.members().items()):
        rows.append(pytest.param(kind, cls(), id=kind))
    return table("executor rows: estimators", rows)


def _device_rows():
    return table("executor rows: devices", [pytest.param(kind, cls(), id=kind) for kind, cls
                                            in sorted(DeviceParams.members().items())])


@pytest.mark.parametrize("optimizer_kind", table("executor rows: optimizers", [
    pytest.param(k, id=k) for k in sorted(OptimizerParams.members())]))
@pytest.mark.parametrize("device_kind,device", _device_rows())
@pytest.mark.parametrize("estimator_kind,estimator", _estimator_rows())
def test_every_estimator_device_and_optimizer_row(estimator_kind, estimator, device_kind,
                                                  device, optimizer_kind):
    """Each (estimator x device x optimizer) of the registries: the executor ``auto``
    picks, and, where it is the compiled one, the same bits as the plain loop at one and
    two threads; where the estimator cannot run on the device, a one-line ParamError."""
    optimizer = _optimizer(optimizer_kind, "constant")
    scales = Timescales(tau_x=1, tau_p=1, tau_theta=8)
    acts = ("relu", "identity") if device.integer_io else ("sigmoid", "sigmoid")

    def make(mode):
        return _loop(_network(acts, device=device), estimator, optimizer, scales, mode)

    try:
        loop = make("auto")
    except ParamError as exc:  # e.g. QZO on a float chip, DNP without decorrelation
        assert "\n" not in str(exc) and str(exc)
        return
    if isinstance(loop.executor, Plain):
        assert all(e.refusals(lab(loop.chip), loop.estimator, optimizer) for e in EXECUTORS)
        return
    _assert_same(_both(make, stops=(120,), threads=(1, 2)))


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("change,reason", [
    (dict(acts=("tanh", "sigmoid")), "layer 0 activation without compiled code"),
    (dict(device=DeviceParams.members()["crossbar"]()),
     "layers that are not all exact float arrays with a bias (the ideal device)"),
    (dict(estimator=MGDParams(perturbation="walsh")), "perturbation 'walsh' (needs 'code')"),
    (dict(estimator=MGDParams(cost_noise=0.01)), "cost_noise (a NumPy stream per window)"),
    (dict(bias=False), "layers that are not all exact float arrays with a bias (the ideal "
                       "device)"),
    (dict(estimator=EstimatorParams.members()["inp"](passes="noisy_noisy")),
     "passes 'noisy_noisy' (needs 'clean_noisy')"),
    (dict(estimator=EstimatorParams.members()["np"](perturbation="rademacher")),
     "perturbation 'rademacher' (needs 'gaussian')"),
    (dict(estimator=BackpropParams(), network=dict(decorrelation=True)),
     "decorrelation matrices (backprop through them is the reference model's)"),
    (dict(estimator=BackpropParams(), acts=(PBIT, "sigmoid")),
     "layer 0 device neuron (backprop through it is the reference model's)"),
])
def test_what_the_compiled_executor_refuses_goes_through_the_plain_loop(change, reason):
    network = _network(change.get("acts", ("relu", "sigmoid")), change.get("widths", (6, 5, 3)),
                       device=change.get("device"), bias=change.get("bias", True),
                       **change.get("network", {}))
    estimator = change.get("estimator", MGDParams())
    loop = _loop(network, estimator, _optimizer("sgd", "constant"), Timescales(), "auto")
    assert isinstance(loop.executor, Plain)
    executor = (CompiledMGD if isinstance(estimator, MGDParams) else
                CompiledBackprop if isinstance(estimator, BackpropParams) else CompiledNP)
    assert reason in executor.refusals(lab(loop.chip), loop.estimator,
                                       _optimizer("sgd", "constant"))
    assert reason in loop.executor.reasons  # what devsim run reports
    with pytest.raises(ValueError, match="the compiled executor does not cover"):
        executor(lab(loop.chip), loop.estimator, _optimizer("sgd", "constant"))


def test_select_says_why_windows_run_on_the_plain_loop():
    """The plain loop select returns holds why: the mode asked for it, or no compiled
    executor runs the estimator's type (a plugin's), or that executor's refusals; a
    covered run gets the compiled executor."""
    optimizer = _optimizer("sgd", "constant")
    loop = _loop(_network(), MGDParams(), optimizer, Timescales(), "plain")
    assert loop.executor.reasons == ("train.executor: plain",)
    bench = lab(loop.chip)
    other = select(bench, SimpleNamespace(), optimizer)
    assert isinstance(other, Plain)
    assert other.reasons == ("estimator SimpleNamespace (no compiled executor runs it)",)
    assert isinstance(select(bench, loop.estimator, optimizer), CompiledMGD)
    tanh = _loop(_network(("tanh", "sigmoid")), MGDParams(), optimizer, Timescales(), "auto")
    assert tanh.executor.reasons == ("layer 0 activation without compiled code",)


def test_an_optimizer_without_compiled_steps_goes_through_the_plain_loop():
    """The kernels apply SGD, momentum and Adam; another kind (a plugin's), or none, is
    named among the refusals."""
    loop = _loop(_network(), MGDParams(), _optimizer("sgd", "constant"), Timescales(), "auto")
    for optimizer, shown in ((SimpleNamespace(kind="lion"), "'lion'"), (None, "None")):
        assert CompiledMGD.refusals(lab(loop.chip), loop.estimator, optimizer) == [
            f"optimizer {shown} (needs one of sgd, momentum, adam)"]


def test_the_exact_chip_refuses_what_its_kernels_cannot_run(monkeypatch):
    """ExactChip names each reason a chip's arithmetic is out of the kernels' reach (a
    device other than the ideal one, missing BLAS entry points) and will not be built
    for such a chip."""
    crossbar = lab(chip_of(_network(device=DeviceParams.members()["crossbar"]()), "mse"))
    reason = "layers that are not all exact float arrays with a bias (the ideal device)"
    assert ExactChip.refusals(crossbar) == [reason]
    with pytest.raises(ValueError, match=r"^the chip is not one compiled kernels run: "
                                         + re.escape(reason) + "$"):
        ExactChip(crossbar)
    ideal = lab(chip_of(_network(), "mse"))
    assert ExactChip.refusals(ideal) == []
    monkeypatch.setattr(blas, "AVAILABLE", False)
    assert ExactChip.refusals(ideal) == ["NumPy's BLAS entry points (not found)"]


def test_a_stateful_activation_needs_a_compiled_pass_even_with_a_code():
    """A stateful activation is never applied by its function code (it must see the
    probes in order, with its state): without a compiled pass of its own the chip is
    refused."""
    ideal = lab(chip_of(_network(), "mse"))
    act = ideal.network.activations[0]
    assert act.native is not None and ExactChip.refusals(ideal) == []
    act.stateful = True
    assert ExactChip.refusals(ideal) == ["layer 0 activation without compiled code"]


@pytest.mark.parametrize("change", [dict(decorrelation=True), dict(acts=(PBIT, "sigmoid"))],
                         ids=["decorrelation", "device-neuron"])
def test_backprop_through_decorrelation_or_device_neurons_is_the_reference_models(change):
    """Backprop's gradient passes through R and through a p-bit's mean response, which the
    reference model has and the compiled kernel does not: the plain loop takes it from
    the reference model, and the exact chip's kernel refuses such a chip."""
    loop = _loop(_network(**change), VARIANTS["backprop"], _optimizer("sgd", "constant"),
                 Timescales(tau_theta=12), "auto")
    assert isinstance(loop.executor, Plain)
    window = loop.next_window()
    estimate = loop.executor.window(loop.estimator, window)
    bench = lab(loop.chip)
    reference = bench.reference().gradient(bench.read_params(), window.x, window.y)
    np.testing.assert_array_equal(estimate.gradient, reference)
    with pytest.raises(ValueError, match="does not pass through decorrelation matrices or "
                                         "device neurons"):
        ExactChip(bench).backprop(window.x, window.y, None)


def test_a_window_on_its_own_is_the_plain_loops():
    """Outside a training loop (no optimizer to apply) the compiled executor's window is
    the ask/tell loop's."""
    network = _network()
    loops = [_loop(copy.deepcopy(network), MGDParams(), _optimizer("sgd", "constant"),
                   Timescales(tau_theta=12), mode) for mode in ("plain", "auto")]
    window = loops[0].next_window()
    estimates = [loop.executor.window(loop.estimator, window) for loop in loops]
    np.testing.assert_array_equal(estimates[0].gradient, estimates[1].gradient)
    assert estimates[0].cost == estimates[1].cost


def test_advancing_in_any_chunks_gives_the_same_bits():
    scales = Timescales(tau_x=2, tau_p=3, tau_theta=7)
    results = []
    for stops in ((1000,), (13, 14, 500, 777, 1000), tuple(range(50, 1001, 50))):
        loop = _loop(_network(), MGDParams(), _optimizer("adam", "cosine-clipped"), scales,
                     "auto")
        results.append(_trajectory(loop, stops))
    for r in results[1:]:
        for key in ("params", "optimizer", "estimator", "steps", "stream"):
            assert r[key] == results[0][key], key


@pytest.mark.parametrize("tau_theta", [1, 3])
def test_update_is_one_window_on_either_executor(tau_theta):
    """``update()`` runs exactly one window, even of one step (analog MGD takes no
    baseline probes), where the compiled executor would run many per call."""
    increments = {}
    for mode in ("plain", "auto"):
        loop = _loop(_network(), MGDParams(mode="analog"), _optimizer("sgd", "constant"),
                     Timescales(tau_theta=tau_theta), mode)
        assert isinstance(loop.executor, Compiled) == (mode == "auto")
        increments[mode] = []
        for _ in range(3):
            steps = loop.chip.steps
            loop.update()
            increments[mode].append(loop.chip.steps - steps)
    assert increments["plain"] == increments["auto"] == [tau_theta] * 3


def test_an_executor_without_its_window_says_so():
    from trainer.executors import Executor
    chip = chip_of(_network(), "mse")
    with pytest.raises(NotImplementedError):
        Executor(chip).window(MGDParams().build(Setup(chip, np.random.default_rng(0),
                                                      Timescales(), None)), None)


@pytest.mark.parametrize("variant", ["mgd-nodes", "mgd-nodes-analog", "np"])
def test_advance_stops_at_the_first_window_that_reaches_the_bound(variant):
    """Discrete MGD takes a baseline probe per new sample (tau_x = 3 here, so windows differ
    in length): one ``advance(until)`` of the compiled executor runs the windows the plain
    loop needs, one by one, to reach ``until``; the last of them reaches it."""
    scales = Timescales(tau_x=3, tau_theta=5)
    for until in (1, 7, 40, 133):
        loops = [_loop(_network(), VARIANTS[variant], _optimizer("sgd", "constant"), scales,
                       mode) for mode in ("plain", "auto")]
        plain, compiled = loops
        assert isinstance(compiled.executor, Compiled)
        before = []
        while plain.chip.steps < until:
            before.append(plain.chip.steps)
            plain.advance(until)
        stats = compiled.advance(until)
        assert len(stats) == len(before) and compiled.chip.steps == plain.chip.steps
        assert before[-1] < until <= compiled.chip.steps


def test_a_compiled_executor_without_its_parts_says_so():
    """A subclass must say what it refuses of an estimator, how many probes its windows
    take and how it runs them."""
    class Incomplete(Compiled):
        estimator_type = MGD
    loop = _loop(_network(), MGDParams(), _optimizer("sgd", "constant"), Timescales(), "plain")
    with pytest.raises(NotImplementedError):
        Incomplete.refusals(lab(loop.chip), loop.estimator, _optimizer("sgd", "constant"))
    for method, args in ((Compiled._probes, (loop, 1, 8)),
                         (Compiled._run, (loop, None, None, None, None, None))):
        with pytest.raises(NotImplementedError):
            method(None, *args)

"""Contract table of the gradient estimators: every registered estimator (plugins
included) in its default configuration and its variants (:func:`contracts.estimator_variants`),
each on the first chip it accepts, checked for what the training loop relies on.

- an estimate is a finite vector of the chip's parameter layout and a finite cost;
- a window costs exactly :meth:`~trainer.base.Estimator.window_steps` hardware steps;
- the same seed gives the same bits, another seed other bits (an estimator outside the
  rule reads exact gradients: the same bits for any seed);
- a chip or configuration an estimator cannot run on is refused with a one-line
  :class:`~devsim.params.ParamError` naming one of its keys;
- on a linear layer with the mse cost, the mean estimate over many independent windows
  is the exact gradient (or the closed form of what the method is documented to
  estimate), within 5 standard errors from the windows' spread, run until that spread
  would reveal a bias of a few per cent of the gradient (int8 QZO's noisy weight
  differences: one of the gradient's own size).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from contracts import (FEATURES, build, check_refusal, chip_bench, device_rows,
                       estimator_variants, record, table, windows)
from devsim.activations import ActivationParams
from devsim.hardware import Request
from devsim.params import ParamError
from trainer.base import EstimatorParams, Window
from trainer.executors import Plain

VARIANTS = estimator_variants()
BUILT = table("estimators", [pytest.param(p, id=name) for name, p in VARIANTS
                             if not isinstance(p, ParamError)])
INVALID = [pytest.param(name, p, id=name) for name, p in VARIANTS if isinstance(p, ParamError)]
DEVICES = sorted((row.values[0] for row in device_rows()),
                 key=lambda d: d.kind != "ideal")  # the ideal device first
def supported(params, widths=(4, 5, 3), activations=None, seed=0):
    """(bench, features, estimator) on the first chip ``params`` accepts: devices in the
    registry's order with the ideal device first, fewest chip options first. Refusals on
    the way are checked and recorded."""
    for device in DEVICES:
        for features in FEATURES:
            lab = chip_bench(device, features, widths, activations, seed)
            try:
                return lab, features, build(params, lab, seed)
            except ParamError as error:
                check_refusal(error, params)
                record("estimator refusals",
                       [f"{_name(params)} on {_chip_name(device, features)}"])
    pytest.fail(f"no chip accepts {params}")


def _name(params):
    return next(name for name, p in VARIANTS if p == params)


def _chip_name(device, features):
    return "+".join([device.kind, *features])


# ------------------------------------------------------------------ contract rows
@pytest.mark.parametrize("params", BUILT)
def test_estimates_are_finite_parameter_vectors_at_their_declared_step_cost(params):
    lab, _, estimator = supported(params)
    chip = lab.chip
    for window in windows(chip, 2):
        expected_steps = estimator.window_steps(window)
        before = chip.steps
        estimate = Plain(chip).window(estimator, window)
        assert chip.steps - before == expected_steps
        assert estimate.gradient.shape == (chip.n_params,)
        assert np.isfinite(estimate.gradient).all() and math.isfinite(estimate.cost)


@pytest.mark.parametrize("params", BUILT)
def test_same_seed_same_bits_other_seed_other_bits(params):
    def run(seed):
        lab, _, estimator = supported(params, seed=seed)
        return np.concatenate([Plain(lab.chip).window(estimator, w).gradient
                               for w in windows(lab.chip, 2)])

    first = run(1)
    np.testing.assert_array_equal(run(1), first)
    if params.outside_the_rule:  # exact gradients: nothing random to seed
        np.testing.assert_array_equal(run(2), first)
    else:
        assert not np.array_equal(run(2), first)


@pytest.mark.parametrize("name, error", INVALID)
def test_configurations_the_schema_refuses_are_one_line_naming_their_key(name, error):
    kind = name.split("[")[0]
    check_refusal(error, EstimatorParams.members()[kind]())
    record("estimator refusals", [f"{name} (any chip)"])


# ------------------------------------------------------------------ unbiasedness
CHUNK, MAX_WINDOWS = 50, 400
"""Windows are run in chunks until the mean's standard error is below 5 % of the
expected value (most rows: one chunk), or at most this many."""
LINEAR = (3, 2)
Z = 5.0
"""Tolerance in standard errors per component: with ~8 components in each of ~50 rows,
a false failure at a fixed seed has probability about 2e-4."""


def _cycle(channels: int) -> int:
    """Steps over which every periodic MGD code of K = ``channels`` channels completes
    whole cycles: walsh, the power of two above K; frequency, 2 (K + 1); time, two
    sweeps of K (the second of opposite sign)."""
    return math.lcm(1 << int(channels).bit_length(), 2 * (channels + 1), 2 * channels)


def _mgd_closed_form(params) -> bool:
    """Analog mode with periodic codes (successive steps correlated through the filter)
    and clipped cost changes have no closed-form expectation. Nor have walsh codes on
    weights: the product of three Walsh rows is the row of their XOR, so over a cycle
    the cost's quadratic part theta^T H theta / 2 leaks into channel i through every
    pair j, k with r_j XOR r_k = r_i, an O(eps) bias where the Hessian couples channels
    (weights of one node; on nodes of a linear layer with mse it is diagonal)."""
    if params.perturbation == "walsh" and params.target == "weights":
        return False  # see the note below
    return not params.cost_change_clip and (params.mode == "discrete"
                                            or params.perturbation in ("code", "ternary"))


def _mgd_step_weights(params, window, channels):
    """What each step contributes to MGD's expected estimate, in units of that step's
    gradient, on a quadratic cost with zero-mean symmetric codes (the cost's quadratic
    part is even in the code and drops out): the step's product C~ theta~ / eps^2
    averages to dC/dtheta / K, times 1 with a measured baseline (discrete) or
    a = tau_hp / (tau_hp + 1) through the high-pass (analog; 0 on a sample's first step,
    where the filter is reset); the window sums the steps (low-pass: weighted
    (1 - beta) beta^(T-1-t)), and ``normalize`` rescales by K/T (low-pass: by K)."""
    steps = len(window.x)
    if params.mode == "discrete":
        per_step = np.ones(steps)
    else:
        per_step = np.where(window.new_sample, 0.0, params.tau_hp / (params.tau_hp + 1.0))
    if params.integrator == "window":
        return per_step / channels * (channels / steps if params.normalize else 1.0)
    beta = params.tau_lp / (params.tau_lp + 1.0)
    weights = (1.0 - beta) * beta ** np.arange(steps - 1, -1, -1.0)
    return weights * per_step / channels * (channels if params.normalize else 1.0)


def _node_perturbation_closed_form(params) -> bool:
    """ANP and INP with a clean pass and bernoulli noise: da carries the noise's mean,
    which biases the estimate along it; bernoulli noise with p != 1/2 has a third
    central moment. Neither has a closed form here."""
    return params.perturbation != "bernoulli" or (params.p == 0.5 and (
        params.kind == "np" or params.passes == "noisy_noisy"))


def _node_perturbation_expectation(params, exact_at, n_nodes):
    """NP, ANP, INP on a linear layer with mse (Hessian a multiple of the identity):
    zero-mean symmetric noise gives the gradient; bernoulli noise of mean m (p = 1/2,
    no third central moment) gives the gradient at pre-activations shifted by m (NP
    subtracts the mean from its noise but the noisy pass still runs at a + m). ANP and
    INP scale by the measured change da, which is zero in a draw where every perturbed
    node drew the same value twice (two noisy passes of discrete noise, probability q^N
    with q = p^2 + (1 - p)^2 per node): their estimate is then 0, so it averages to
    (1 - q^N) times the gradient."""
    law = params.perturbation
    shift = params.offset + params.sigma * params.p if law == "bernoulli" else 0.0
    factor = 1.0
    if params.kind != "np" and params.passes == "noisy_noisy" and law in ("rademacher",
                                                                           "bernoulli"):
        q = 0.5 if law == "rademacher" else params.p ** 2 + (1.0 - params.p) ** 2
        factor = 1.0 - q ** n_nodes
    return factor * exact_at(shift)


def _signs(n: int) -> np.ndarray:
    """All 2^n vectors of n signs (2^n, n)."""
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0


def _qzo_expectation(params, lab, window):
    """QZO's expectation by a second implementation: the mean of the same zeroth-order
    differences over every Rademacher direction (enumerated here, not drawn by the
    chip's in-kernel generator), run through the chip's plain perturbation ports in whole
    LSBs, with the scale correction n / (n + d - 1); on one linear layer (every output
    unit active)."""
    chip, ports = lab.chip, lab.chip.capabilities.integer
    starts = window.new_sample.copy()
    starts[0] = True
    x, y = window.x[starts], window.y[starts]
    clean = chip.run(Request(x, y, record=True))
    n_out, n_in = chip.layer_shapes[0]
    central = params.difference == "central"
    if params.node_from is None:
        d = chip.n_params
        u = _signs(d)
        draws = len(u)
        mu = np.where(np.arange(d) < n_out * n_in, params.mu_weight, params.mu_bias)
        step = u * mu * ports.param_lsb

        def mean_cost(sign):
            return chip.run(Request(np.repeat(x, draws, axis=0), np.repeat(y, draws, axis=0),
                                    weight_perturbation=np.tile(sign * step, (len(x), 1))
                                    )).costs.reshape(len(x), draws).mean(axis=0)

        change = ((mean_cost(1) - mean_cost(-1)) / 2 if central
                  else mean_cost(1) - clean.costs.mean())
        g = change @ u / (draws * mu)
        if params.scale_correction:
            g *= params.queries / (params.queries + d - 1)
        return g / ports.param_lsb
    u = np.broadcast_to(_signs(n_out), (len(x), 2 ** n_out, n_out))
    draws = 2 ** n_out
    step = (params.mu_node * u * ports.node_lsb).reshape(-1, n_out)

    def costs(sign):
        return chip.run(Request(np.repeat(x, draws, axis=0), np.repeat(y, draws, axis=0),
                                node_perturbation=sign * step)).costs.reshape(len(x), draws)

    change = (costs(1) - costs(-1)) / 2 if central else costs(1) - clean.costs[:, None]
    g_nodes = np.einsum("bq,bqk->bk", change, u) / (draws * params.mu_node)
    if params.scale_correction:
        g_nodes *= params.queries / (params.queries + n_out - 1)
    g_nodes /= ports.node_lsb
    return np.concatenate([(g_nodes.T @ clean.inputs[0]).ravel(), g_nodes.sum(axis=0)]) / len(x)


def _exact_at(lab, window, shift=0.0, step_weights=None):
    """The exact gradient of the window's mean cost (``step_weights``: the sum of each
    step's gradient times its weight), at pre-activations shifted by ``shift`` (every
    bias shifted)."""
    p = lab.read_params().copy()
    for (n_out, _), end in zip(lab.chip.layer_shapes, lab.chip.param_offsets[1:]):
        p[end - n_out:end] += shift
    if step_weights is None:
        return lab.reference().gradient(p, window.x, window.y)
    sample = np.cumsum(window.new_sample) - 1
    return sum(step_weights[sample == s].sum()
               * lab.reference().gradient(p, window.x[sample == s][:1], window.y[sample == s][:1])
               for s in range(sample[-1] + 1))


def expectation(params):
    """``f(lab, window) -> expected estimate`` of this configuration on a linear
    layer with mse, or None where the method has no closed form there. Every kind not
    named here (plugins included) is held to the exact gradient."""
    kind = params.kind
    if kind == "mgd":
        return _mgd_closed_form(params) and (lambda lab, window: _exact_at(
            lab, window, step_weights=_mgd_step_weights(
                params, window, lab.chip.n_nodes if params.target == "nodes"
                else lab.chip.n_params)))
    if kind in ("np", "anp", "inp"):
        return _node_perturbation_closed_form(params) and (
            lambda lab, window: _node_perturbation_expectation(
                params, lambda shift: _exact_at(lab, window, shift), lab.chip.n_nodes))
    if kind == "qzo":
        return lambda lab, window: _qzo_expectation(params, lab, window)
    return lambda lab, window: _exact_at(lab, window)


UNBIASED = table("estimator expectations", [row for row in BUILT if expectation(row.values[0])])


@pytest.mark.parametrize("params", UNBIASED)
def test_mean_estimate_on_a_linear_layer_is_its_closed_form(params):
    """Windows of the same two samples, each held a whole number of perturbation
    cycles, each window on a fresh chip (same weights) with a fresh estimator of its own
    seed: the residuals estimate - expectation average to zero."""
    identity = [ActivationParams.members()["identity"]()]
    lab, features, _ = supported(params, LINEAR, identity)
    expected_of = expectation(params)
    hold = math.lcm(_cycle(lab.chip.n_nodes), _cycle(lab.chip.n_params))
    rng = np.random.default_rng(11)
    x, y = rng.uniform(-1.0, 1.0, (2, LINEAR[0])), rng.uniform(0.0, 1.0, (2, LINEAR[1]))
    window = Window(np.repeat(x, hold, axis=0), np.repeat(y, hold, axis=0),
                    np.arange(2 * hold) % hold == 0)
    device = lab.network_params.device
    assert device.without_nonidealities() == device  # a deterministic layer: the same
    expected = expected_of(lab, window)             # expectation on every fresh chip
    residuals = []
    while len(residuals) < MAX_WINDOWS:
        for k in range(len(residuals), len(residuals) + CHUNK):
            lab = chip_bench(device, features, LINEAR, identity, seed=k)
            estimate = Plain(lab.chip).window(build(params, lab, 1000 + k), window)
            residuals.append(estimate.gradient - expected)
        se = np.std(residuals, axis=0, ddof=1) / np.sqrt(len(residuals))
        power = np.linalg.norm(se) / np.linalg.norm(expected)
        if power < 0.05:
            break
    bias = np.mean(residuals, axis=0)
    floor = 1e-9 * np.abs(expected).max()  # float rounding of exact estimators
    assert np.all(np.abs(bias) <= Z * se + floor), \
        f"bias / standard error per component: {np.round(bias / np.maximum(se, 1e-300), 1)}"
    # the table can see a bias: one the size of the expected value would fail (most rows:
    # one of a few per cent of it; int8 QZO's weight differences are the noisiest)
    assert power < 0.2, power

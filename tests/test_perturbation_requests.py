"""What the node- and weight-perturbation estimators ask the chip for: which nodes or
parameters each pass perturbs and by which law, whether the chip's own noise acts, how
many steps a window takes, and which pass's cost is reported (trainer/node_perturbation.py,
trainer/weight_perturbation.py)."""
import dataclasses

import numpy as np
import pytest

from conftest import build_estimator, make_hardware, run_window
from devices.noise import GaussianNoiseParams
from devsim import crng
from devsim.params import ParamError
from trainer.base import Window
from trainer.node_perturbation import ANPParams, INPParams, NPParams
from trainer.weight_perturbation import WPParams


def window_of(rng, batch, n_in, n_out):
    return Window(rng.normal(size=(batch, n_in)), rng.random((batch, n_out)),
                  np.ones(batch, bool))


@pytest.mark.parametrize("params", [
    NPParams(), NPParams(passes="noisy_noisy", draws=2), ANPParams(draws=3),
    ANPParams(passes="noisy_noisy"), INPParams(), INPParams(passes="noisy_noisy", draws=2),
    ANPParams(perturbation="device"), ANPParams(perturbation="device", passes="noisy_noisy"),
], ids=lambda p: f"{p.kind}-{p.perturbation}-{p.passes}-{p.draws}")
def test_node_window_steps_is_what_the_window_runs(params):
    # B probes per pass: one shared clean pass (clean_noisy), then per draw (and, for
    # INP, per layer of the 3 here) one noisy pass, or two with noisy_noisy.
    hw = make_hardware((4, 3, 3, 2), seed=1, node_noise=GaussianNoiseParams(std=0.01))
    window = window_of(np.random.default_rng(2), 5, 4, 2)
    est = build_estimator(params, hw, 3)
    steps = hw.steps
    run_window(est, hw, window)
    clean = params.passes == "clean_noisy"
    noisy = params.draws * (3 if params.kind == "inp" else 1) * (1 if clean else 2)
    assert est.window_steps(window) == hw.steps - steps == 5 * (int(clean) + noisy)


@pytest.mark.parametrize("passes", ["clean_noisy", "noisy_noisy"])
def test_inp_passes_perturb_one_layer_each_and_np_every_layer(passes):
    # On a 4-3-3-2 network: INP's noisy passes perturb layers 0, 1, 2 in turn, only
    # their own nodes; NP's and ANP's every node. A clean pass has no perturbation.
    hw = make_hardware((4, 3, 3, 2), seed=2)
    batch, offsets = 6, hw.node_offsets
    window = window_of(np.random.default_rng(3), batch, 4, 2)
    for params, layers in ((INPParams(passes=passes), [0, 1, 2]),
                           (NPParams(passes=passes), [None]),
                           (ANPParams(passes=passes), [None])):
        (request,), _, _ = run_window(build_estimator(params, hw, 4), hw, window)
        rows = request.node_perturbation.reshape(-1, batch, hw.n_nodes)
        noisy_rows = rows[1:] if passes == "clean_noisy" else rows
        if passes == "clean_noisy":
            assert not rows[0].any()
        expected = [layer for layer in layers for _ in range(1 if passes == "clean_noisy"
                                                                else 2)]
        assert len(noisy_rows) == len(expected)
        for block, layer in zip(noisy_rows, expected):
            inside = (np.zeros(hw.n_nodes, bool) if layer is not None
                      else np.ones(hw.n_nodes, bool))
            if layer is not None:
                inside[offsets[layer]:offsets[layer + 1]] = True
            assert np.all(block[:, inside] != 0) and not block[:, ~inside].any(), \
                (params.kind, layer)
        assert not request.noisy


def test_device_noise_runs_noisy_passes_and_injects_nothing():
    hw = make_hardware((4, 3, 2), seed=3, node_noise=GaussianNoiseParams(std=0.02))
    window = window_of(np.random.default_rng(4), 5, 4, 2)
    for passes, flags in (("clean_noisy", [False, True]), ("noisy_noisy", [True])):
        requests, _, _ = run_window(
            build_estimator(ANPParams(perturbation="device", passes=passes), hw, 5), hw, window)
        assert [r.noisy for r in requests] == flags
        assert all(r.node_perturbation is None for r in requests)


@pytest.mark.parametrize("params", [NPParams(), ANPParams(passes="noisy_noisy"),
                                    INPParams(passes="noisy_noisy"),
                                    ANPParams(perturbation="device", passes="noisy_noisy")],
                         ids=lambda p: f"{p.kind}-{p.perturbation}-{p.passes}")
def test_reported_cost_is_the_first_passes_mean(params):
    # The clean pass where there is one, else the first noisy pass (of the first draw).
    hw = make_hardware((4, 3, 2), seed=4, node_noise=GaussianNoiseParams(std=0.05))
    window = window_of(np.random.default_rng(6), 7, 4, 2)
    _, results, estimate = run_window(build_estimator(params, hw, 7), hw, window)
    costs = results[0].costs
    assert estimate.cost == costs[:7].mean()
    assert estimate.cost != costs[7:14].mean()


def test_weight_perturbation_laws_and_steps():
    # Rademacher: every entry exactly +-sigma; Gaussian: mean 0 and variance sigma^2
    # (n = 8 x 15 x 40 draws; the sample variance's relative standard error is
    # sqrt(2 / n), the tolerance five of those). A window is a clean pass and a moved
    # one: 2 B steps.
    hw = make_hardware((4, 3), seed=5)
    window = window_of(np.random.default_rng(7), 8, 4, 3)
    sigma = 0.05
    draws = {}
    for law in ("rademacher", "gaussian"):
        est = build_estimator(WPParams(perturbation=law, sigma=sigma), hw, 8)
        blocks = []
        for _ in range(40):
            steps = hw.steps
            (request,), _, _ = run_window(est, hw, window)
            assert est.window_steps(window) == hw.steps - steps == 16
            assert not request.weight_perturbation[:8].any()
            blocks.append(request.weight_perturbation[8:])
        draws[law] = np.concatenate(blocks).ravel()
    assert np.all(np.abs(draws["rademacher"]) == sigma)
    assert abs(np.mean(draws["rademacher"] > 0) - 0.5) < 5 * 0.5 / np.sqrt(4800)
    gauss = draws["gaussian"]
    n = len(gauss)
    assert abs(gauss.mean()) < 5 * sigma / np.sqrt(n)
    assert gauss.var() == pytest.approx(sigma ** 2, rel=5 * np.sqrt(2 / n))
    assert len(np.unique(np.abs(gauss))) > n // 2


def test_weight_perturbation_signs_are_the_counter_based_stream_row_after_row():
    """Rademacher WP draws row r's sign of parameter k as sign r P + k of its counter-based
    stream (so compiled windows can make them where they use them): the chunks of
    successive windows are one sequence, equal to crng's NumPy twin."""
    hw = make_hardware((4, 3), seed=5)
    est = build_estimator(WPParams(perturbation="rademacher", sigma=0.05), hw, 8)
    P = hw.n_params
    pieces = np.concatenate([est.draw(3), est.draw(1), est.draw(4)])
    assert est.rows == 8
    expected = 0.05 * crng.sign_np(est.key, np.arange(8 * P, dtype=np.uint64)).reshape(8, P)
    assert pieces.tobytes() == expected.tobytes()
    seed = int(np.random.default_rng(8).integers(2 ** 63))  # the stream's first draw
    assert est.key == crng.stream_key_np(seed, 0)
    other = build_estimator(WPParams(perturbation="rademacher", sigma=0.05), hw, 9)
    assert other.key != est.key


def test_weight_perturbation_needs_the_weight_port():
    hw = make_hardware((3, 2))
    hw.capabilities = dataclasses.replace(hw.capabilities, ports=frozenset({"nodes"}))
    with pytest.raises(ParamError, match="no 'weights' port"):
        build_estimator(WPParams(), hw, 0)


def _synapse_sums(hw, signal, inputs):
    """Each layer's dW = signal_l^T x_l and db = sum_t signal_l, flat (dense layers)."""
    offsets = hw.node_offsets
    parts = []
    for layer, x in enumerate(inputs):
        s = signal[:, offsets[layer]:offsets[layer + 1]]
        parts += [(s.T @ x).ravel(), s.sum(axis=0)]
    return np.concatenate(parts)


@pytest.mark.parametrize("params", [
    NPParams(draws=2), NPParams(passes="noisy_noisy", draws=2),
    ANPParams(passes="noisy_noisy", draws=2), ANPParams(draws=3)],
    ids=lambda p: f"{p.kind}-{p.passes}-{p.draws}")
def test_node_estimates_of_several_draws_recomputed_from_the_passes(params):
    # Per draw, the pair (clean, noisy d) or (noisy 2d, noisy 2d + 1); NP's node signal
    # dC (eps - E eps) / v or dC (eps2 - eps1) / (2 v), ANP's dC n da / |da|^2; the
    # synapse sums with the pair's first-pass inputs; the mean over draws and probes.
    hw = make_hardware((4, 3, 2), seed=8)
    batch = 5
    window = window_of(np.random.default_rng(9), batch, 4, 2)
    (request,), (result,), estimate = run_window(build_estimator(params, hw, 10), hw, window)
    n_pass = len(result.costs) // batch
    costs = result.costs.reshape(n_pass, batch)
    eps = request.node_perturbation.reshape(n_pass, batch, hw.n_nodes)
    acts = np.concatenate(result.preactivations, axis=1).reshape(n_pass, batch, hw.n_nodes)
    inputs = [[x[k * batch:(k + 1) * batch] for x in result.inputs] for k in range(n_pass)]
    clean = params.passes == "clean_noisy"
    total = np.zeros(hw.n_params)
    for d in range(params.draws):
        a, b = (0, 1 + d) if clean else (2 * d, 2 * d + 1)
        d_cost = (costs[b] - costs[a])[:, None]
        if params.kind == "np":
            signal = d_cost * ((eps[b] - eps[a]) / (1 if clean else 2)) / params.sigma ** 2
        else:
            da = acts[b] - acts[a]
            signal = d_cost * hw.n_nodes * da / (da ** 2).sum(axis=1, keepdims=True)
        total += _synapse_sums(hw, signal, inputs[a])
    np.testing.assert_allclose(estimate.gradient, total / (params.draws * batch), rtol=1e-10,
                               atol=1e-14)
    assert estimate.cost == costs[0].mean()

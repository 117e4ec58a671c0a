"""MGD windows recomputed from the chip's costs: the analog high-pass estimate equals the
filter's difference equation applied to the costs of the same codes, node by node and
window by window; the declared step count is what a window runs (trainer/mgd.py)."""
import numpy as np
import pytest

from conftest import Identity, build_estimator, estimate, make_bench
from trainer.base import Window
from trainer.mgd import MGDParams


def two_sample_window(rng, steps, n_in, n_out, switch):
    """``steps`` steps of one sample, then another from step ``switch`` on."""
    x = np.repeat(rng.normal(size=(2, n_in)), [switch, steps - switch], axis=0)
    y = np.repeat(rng.random((2, n_out)), [switch, steps - switch], axis=0)
    new = np.zeros(steps, bool)
    new[[0, switch]] = True
    return Window(x, y, new)


def highpassed(costs, new_sample, a, state):
    """C~_n = a (C~_{n-1} + C_n - C_{n-1}), 0 at a new sample; ``state`` = [C, C~] before."""
    out = np.empty(len(costs))
    prev_c, prev_out = state
    for t, (c, reset) in enumerate(zip(costs, new_sample)):
        prev_out = 0.0 if reset else a * (prev_out + c - prev_c)
        prev_c, out[t] = c, prev_out
    return out, [prev_c, prev_out]


def test_analog_weight_estimate_is_the_high_passed_cost_times_the_code():
    # Weight target: G = (K / T) sum_t C~_t theta_t / eps^2 with C~ the first-order
    # high-pass (a = tau_hp / (tau_hp + 1)) of the costs the chip reports for the codes
    # theta_t; the filter's state carries over to the next window.
    bench = make_bench((3, 2), activations=[Identity()], seed=4)
    hw = bench.chip
    rng = np.random.default_rng(5)
    tau_hp, eps, T = 2.5, 0.3, 12
    est = build_estimator(MGDParams(target="weights", mode="analog", tau_hp=tau_hp,
                                    epsilon=eps), hw, 1)
    codes = est.perturbation.at_steps(0, 2 * T, 1)
    state = [0.0, 0.0]
    for w in range(2):
        window = two_sample_window(rng, T, 3, 2, switch=5)
        if w == 1:
            window.new_sample[0] = False      # the second window continues a sample
        theta = codes[w * T:(w + 1) * T]
        costs = hw.cost(window.x, window.y, weight_perturbation=theta)
        change, state = highpassed(costs, window.new_sample, tau_hp / (tau_hp + 1), state)
        expected = hw.n_params / T * change @ theta / eps ** 2
        got = estimate(est, hw, window)
        np.testing.assert_allclose(got.gradient, expected, rtol=1e-10, atol=1e-14)
        assert got.cost == pytest.approx(costs.mean(), rel=1e-12)


def test_analog_node_estimate_is_the_high_passed_cost_times_code_and_input():
    # Node target: each layer's weights get (K / T) sum_t C~_t theta_t x_t^T / eps^2
    # with x_t that layer's input at step t (its local signal), biases the same sum
    # without x.
    bench = make_bench((3, 4, 2), seed=6)
    hw = bench.chip
    rng = np.random.default_rng(7)
    tau_hp, eps, T = 1.6, 0.2, 10
    est = build_estimator(MGDParams(target="nodes", mode="analog", tau_hp=tau_hp,
                                    epsilon=eps), hw, 2)
    theta = est.perturbation.at_steps(0, T, 1)
    window = two_sample_window(rng, T, 3, 2, switch=4)
    probe = hw.probe(window.x, window.y, node_perturbation=theta)
    change, _ = highpassed(probe.costs, window.new_sample, tau_hp / (tau_hp + 1), [0.0, 0.0])
    signal = hw.n_nodes / T * change[:, None] * theta / eps ** 2
    parts = []
    for layer, x in enumerate(probe.inputs):
        g = signal[:, hw.node_offsets[layer]:hw.node_offsets[layer + 1]]
        parts += [(g.T @ x).ravel(), g.sum(axis=0)]
    np.testing.assert_allclose(estimate(est, hw, window).gradient, np.concatenate(parts),
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["discrete", "analog"])
def test_window_steps_is_what_the_window_runs(mode):
    # Discrete: T perturbed probes plus one baseline per new sample and one at the
    # window's start (its sample may continue from the last window); analog: T probes.
    bench = make_bench((3, 2), seed=8)
    hw = bench.chip
    rng = np.random.default_rng(9)
    est = build_estimator(MGDParams(target="nodes", mode=mode), hw, 3)
    for new, baselines in (([0, 3, 6], 3), ([4], 2)):
        window = Window(rng.normal(size=(9, 3)), rng.random((9, 2)), np.isin(np.arange(9), new))
        steps = hw.steps
        estimate(est, hw, window)
        assert est.window_steps(window) == hw.steps - steps == 9 + (
            baselines if mode == "discrete" else 0)

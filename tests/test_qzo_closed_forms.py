"""QZO estimates against closed forms: exact node estimates on a one-output int8 layer,
the central-difference weight estimate's exact expectation, the declared step count, and
independent weight and node streams (trainer/qzo.py)."""
from __future__ import annotations

import numpy as np

from conftest import build_estimator, estimate, lab, run_window
from test_qzo import batch, exact_weight_expectation, quantized_hardware
from trainer.base import Window
from trainer.qzo import QZOParams, weight_directions


def one_output_chip(seed=5):
    """An int8 (4, 3, 1) network and five inputs whose outputs lie within 100 LSBs of
    the middle of the calibrated int8 range (255 LSBs wide), so +-5 LSBs never clamp."""
    hw, _, x = quantized_hardware((4, 3, 1), seed=seed)
    out = lab(hw).outputs(x)[:, 0]
    middle = (out.max() + out.min()) / 2
    inside = np.abs(out - middle) < 100 * hw.capabilities.integer.node_lsb[-1]
    assert inside.sum() >= 5
    return hw, x[inside][:5]


def node_estimates_one_by_one(hw, x, y, **kw):
    """The output layer's bias estimates of single-sample windows (= each sample's node
    estimate g_b, the weights' being g_b times the layer input)."""
    est = build_estimator(QZOParams(node_from=1, train_layers=(1,), **kw), hw, 2)
    span = slice(hw.param_offsets[1], hw.param_offsets[2])
    grads = np.array([estimate(est, hw, batch(x[b:b + 1], y[b:b + 1])).gradient[span]
                      for b in range(len(x))])
    return grads[:, :-1], grads[:, -1]


def test_central_node_estimate_on_one_output_is_the_exact_mse_gradient():
    # One output unit, identity, mse: L(o + s) = (o + s - y)^2 with s = +-mu LSBs, so
    # [L(+) - L(-)] / 2 u / (mu lsb) = 2 (o - y) for every sign u: exact, and the
    # weight estimate is 2 (o - y) times the layer's input.
    hw, x = one_output_chip()
    y = np.linspace(-0.4, 0.5, len(x))[:, None]
    out = lab(hw).outputs(x)
    weights, bias = node_estimates_one_by_one(hw, x, y, queries=3, mu_node=5,
                                              difference="central")
    exact = 2.0 * (out[:, 0] - y[:, 0])
    assert np.allclose(bias, exact, rtol=1e-9, atol=1e-12)
    assert np.allclose(weights, exact[:, None] * hw.probe(x, y).inputs[1], rtol=1e-9,
                       atol=1e-12)


def test_forward_node_estimate_on_one_output_is_exact_up_to_the_mean_sign():
    # Forward differences: L(o + mu lsb u) - L(o) = 2 mu lsb u (o - y) + (mu lsb)^2, so
    # g = 2 (o - y) + mu lsb mean_q(u_q): off the exact gradient by k / n times mu lsb
    # with k an odd integer in [-n, n] (n = 3 queries).
    hw, x = one_output_chip()
    y = np.linspace(0.5, -0.3, len(x))[:, None]
    out = lab(hw).outputs(x)
    lsb, mu, n = hw.capabilities.integer.node_lsb[-1], 4, 3
    _, bias = node_estimates_one_by_one(hw, x, y, queries=n, mu_node=mu)
    k = (bias - 2.0 * (out[:, 0] - y[:, 0])) / (mu * lsb) * n
    assert np.allclose(k, np.rint(k), atol=1e-6), k
    assert set(np.rint(k).astype(int)) <= {-3, -1, 1, 3}


def test_central_weight_estimate_expectation_is_exact():
    # The (2, 3) output layer has d = 8: the expectation over all 256 directions is
    # exact. N = 400 estimates of n = 4 directions: per component the mean lies within
    # 4.5 standard errors (false failure about 5e-5 over 8 components; fixed seeds).
    hw, _, x = quantized_hardware((4, 3, 2), seed=2)
    x = x[:4]
    y = np.random.default_rng(6).uniform(-1, 1, (4, 2))
    mu_w, mu_b, n, runs = 2, 60, 4, 400
    exact = exact_weight_expectation(hw, 1, x, y, mu_w, mu_b, difference="central")
    span = slice(hw.param_offsets[1], hw.param_offsets[2])
    est = build_estimator(QZOParams(queries=n, mu_weight=mu_w, mu_bias=mu_b,
                                    train_layers=(1,), scale_correction=False,
                                    difference="central"), hw, 1)
    samples = np.array([estimate(est, hw, batch(x, y)).gradient[span] for _ in range(runs)])
    samples *= hw.capabilities.integer.param_lsb[span]
    mean, sem = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(mean - exact) <= 4.5 * sem), (mean, exact, sem)
    assert np.linalg.norm(exact) > 10 * np.linalg.norm(sem)


def test_window_steps_is_what_the_window_runs():
    # Declared before the window runs: B clean probes, then B n (forward) or 2 B n
    # (central) per trained layer; B counts new samples only (tau_x = 2 here).
    hw, _, x = quantized_hardware((4, 3, 2))
    rng = np.random.default_rng(9)
    x, y = np.repeat(x[:5], 2, axis=0), np.repeat(rng.uniform(-1, 1, (5, 2)), 2, axis=0)
    window = Window(x, y, np.tile([True, False], 5))
    for kw in ({"difference": "forward"}, {"difference": "central"},
               {"node_from": 1, "difference": "central"}, {"node_from": 0},
               {"train_layers": (1,), "queries": 3}):
        est = build_estimator(QZOParams(**kw), hw, 0)
        steps = hw.steps
        estimate(est, hw, window)
        per_query = 2 if kw.get("difference") == "central" else 1
        trained = len(kw.get("train_layers", (0, 1)))
        queries = kw.get("queries", 10)
        assert est.window_steps(window) == hw.steps - steps == 5 * (
            1 + queries * per_query * trained), kw


def test_weight_and_node_directions_are_independent_streams():
    # Layer 0 by weight perturbation, layer 1 by node perturbation in one window: the
    # signs the chip is asked to apply to each come from different streams, so they
    # agree about half the time (m pairs: within 4.5 sqrt(m) / 2 of m / 2).
    hw, _, x = quantized_hardware((4, 3, 2), seed=3)
    y = np.random.default_rng(1).uniform(-1, 1, (8, 2))
    est = build_estimator(QZOParams(queries=10, node_from=1, mu_node=1), hw, 7)
    est.start(batch(x[:8], y))
    requests = []
    while (request := est.ask()) is not None:
        requests.append(request)
        est.tell(hw.run(request))
    seeded = next(r.seeded for r in requests if r.seeded is not None)
    weights = weight_directions(seeded.key, seeded.first, seeded.count,
                                hw.layer_shapes[0]).ravel()
    node = next(r.node_perturbation for r in requests if r.node_perturbation is not None)
    node_signs = np.sign(node).ravel()      # both output units are identity: all active
    m = min(len(weights), len(node_signs))
    agree = np.count_nonzero(weights[:m] == node_signs[:m])
    assert abs(agree - m / 2) <= 4.5 * np.sqrt(m) / 2, (agree, m)


def node_requests(hw, params, x, y):
    """Every request of one window of ``params`` on ``hw``, its results and the estimate."""
    return run_window(build_estimator(params, hw, 4), hw, batch(x, y))


def test_node_directions_skip_the_units_a_relu_holds_at_zero():
    # A hidden ReLU unit at zero does not pass a perturbation on, so its direction is
    # zero: per sample, exactly the units whose clean output (the next layer's input) is
    # zero get no perturbation in any of the n queries.
    hw, _, x = quantized_hardware((4, 3, 3, 2), seed=4)     # layer 0 of three
    y = np.random.default_rng(2).uniform(-1, 1, (16, 2))
    n = 5
    requests, results, _ = node_requests(
        hw, QZOParams(node_from=0, train_layers=(0,), queries=n, mu_node=2), x[:16], y)
    clean_outputs = results[0].inputs[1]
    step = next(r.node_perturbation for r in requests if r.node_perturbation is not None)
    step = step[:, :3].reshape(16, n, 3)
    held = clean_outputs == 0
    assert held.any() and not held.all()
    assert np.all((step == 0) == held[:, None, :])


def test_node_scale_correction_is_n_over_n_plus_active_units_minus_one():
    # The same directions (same seed) with and without the correction: on the identity
    # output layer both units are always active, so every node estimate, and with it
    # the layer's weight estimate, is scaled by n / (n + 2 - 1).
    hw, _, x = quantized_hardware((4, 3, 2), seed=6)
    y = np.random.default_rng(3).uniform(-1, 1, (8, 2))
    n = 3
    span = slice(hw.param_offsets[1], hw.param_offsets[2])
    estimates = [node_requests(hw, QZOParams(node_from=1, train_layers=(1,), queries=n,
                                             scale_correction=on), x[:8], y)[2].gradient[span]
                 for on in (False, True)]
    assert np.linalg.norm(estimates[0]) > 0
    np.testing.assert_allclose(estimates[1], estimates[0] * n / (n + 1), rtol=1e-12)


def test_node_directions_are_never_replayed_by_a_later_window():
    # A window of 2 samples, then one of 8 (its directions 4x as many): were the later
    # window to reuse the earlier one's counters, the earlier sign sequence (20 signs)
    # would reappear in it as a run; by chance that has probability below 61 / 2^20.
    hw, _, x = quantized_hardware((4, 3, 2), seed=7)
    y = np.random.default_rng(4).uniform(-1, 1, (10, 2))
    est = build_estimator(QZOParams(node_from=1, train_layers=(1,), queries=5), hw, 9)
    signs = []
    for rows in (slice(0, 2), slice(2, 10)):
        est.start(batch(x[rows], y[rows]))
        steps = []                         # the + step, and the - step where central
        while (request := est.ask()) is not None:
            if request.node_perturbation is not None:
                steps.append(request.node_perturbation)
            est.tell(hw.run(request))
        signs.append(np.sign(steps[0]).ravel())
    first, later = signs
    assert len(first) == 20 and len(later) == 80 and np.all(first != 0)
    runs = np.lib.stride_tricks.sliding_window_view(later, len(first))
    assert not np.any(np.all(runs == first, axis=1))

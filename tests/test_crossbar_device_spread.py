"""Device-to-device spread of a crossbar's devices against its declared laws: bounds
(g_min_dtod, g_max_dtod), pulse steps and asymmetry (dw_min_dtod, up_down_dtod, clipped
at +-0.99), aihwkit's PCM drift exponents (both clips), stuck-at-random conductances
inside each device's own range, and exact reads of the programmed weights whatever
g_min (devices/crossbar_conductance.py). Tolerances: five standard errors of the
statistic for the sample size (mean sigma / sqrt(n), standard deviation sigma /
sqrt(2 (n - 1)))."""
from math import erf, exp, pi, sqrt

import numpy as np

from devices.crossbar import CrossbarParams
from devices.ideal import IdealParams


def build(w, b, seed=1, **kw):
    return CrossbarParams(**kw).build(w, b, np.random.default_rng(seed))


def assert_mean_std(values, mean, std):
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / np.sqrt(n), (values.mean(), mean)
    assert abs(values.std(ddof=1) / std - 1) < 5 / np.sqrt(2 * (n - 1)), (values.std(), std)


def test_bounds_spread_around_g_min_and_g_max():
    g_min, g_max, s_min, s_max = 2.0, 22.0, 0.1, 0.05
    cells = build(np.zeros((60, 99)), np.zeros(60), g_min=g_min, g_max=g_max,
                  g_min_dtod=s_min, g_max_dtod=s_max).cells
    g_range = g_max - g_min
    for lo, hi in ((cells.lo_pos, cells.hi_pos), (cells.lo_neg, cells.hi_neg)):
        assert_mean_std(lo.ravel() * g_range + g_min, g_min, s_min * g_min)
        assert_mean_std(hi.ravel() * g_range + g_min, g_max, s_max * g_max)


def test_pulse_steps_and_asymmetry_spread_and_clip():
    dw, s_dw, ud, s_ud = 0.01, 0.2, 0.3, 0.1
    cells = build(np.zeros((60, 99)), np.zeros(60), dw_min=dw, dw_min_dtod=s_dw,
                  up_down=ud, up_down_dtod=s_ud).cells
    k = 1.0                                                   # differential, w_max = 1
    for up, down in ((cells.up_pos, cells.down_pos), (cells.up_neg, cells.down_neg)):
        step, asym = (up + down) / 2, (up - down) / (up + down)
        assert_mean_std(step.ravel() / (dw / k), 1.0, s_dw)  # max(., 0) is 5 sigma away
        assert_mean_std(asym.ravel(), ud, s_ud)
    clipped = build(np.zeros((20, 49)), np.zeros(20), dw_min=dw, up_down=0.9,
                    up_down_dtod=0.2).cells
    asym = (clipped.up_pos - clipped.down_pos) / (clipped.up_pos + clipped.down_pos)
    assert np.isclose(asym.max(), 0.99, rtol=0, atol=1e-12) and asym.min() > 0.9 - 5 * 0.2
    assert np.mean(np.isclose(asym, 0.99, rtol=0, atol=1e-12)) > 0.2   # P(z > 0.45) = 0.33
    clipped = build(np.zeros((20, 49)), np.zeros(20), dw_min=dw, up_down=-0.9,
                    up_down_dtod=0.2).cells
    asym = (clipped.up_neg - clipped.down_neg) / (clipped.up_neg + clipped.down_neg)
    assert np.isclose(asym.min(), -0.99, rtol=0, atol=1e-12) and asym.max() < -0.9 + 5 * 0.2


def folded_normal_mean(mu, sigma):
    """E|X| for X ~ N(mu, sigma^2)."""
    phi = 0.5 * (1 + erf(-mu / sigma / sqrt(2)))
    return sigma * sqrt(2 / pi) * exp(-mu ** 2 / (2 * sigma ** 2)) + mu * (1 - 2 * phi)


def test_pcm_drift_exponents_follow_the_clipped_fit():
    # G+ programmed to g/g_max = 0.5: mean clip(0.0107 + 0.0244) = 0.049, spread clip to
    # 0.008; at 0.004 (and G- near 0): 0.1 and 0.045, both at their upper clips.
    g_max = 25.0
    for g_rel, mu, sigma in ((0.5, 0.049, 0.008), (0.004, 0.1, 0.045)):
        xbar = build(np.full((60, 99), g_rel), np.full(60, g_rel), g_max=g_max,
                     drift_model="pcm")
        nu = xbar.cells.nu_pos.ravel()
        assert abs(nu.mean() - folded_normal_mean(mu, sigma)) < 5 * sigma / np.sqrt(nu.size)
        assert abs(nu.std(ddof=1) / sigma - 1) < 0.05      # folding: below 1 % of sigma


def test_stuck_at_random_conductances_lie_uniformly_in_each_devices_range():
    xbar = build(np.zeros((60, 99)), np.zeros(60), stuck_at_random_prob=1.0,
                 g_min_dtod=0.2, g_max_dtod=0.1, g_min=2.0, g_max=22.0)
    cells = xbar.cells
    for u, lo, hi in ((cells.u_pos, cells.lo_pos, cells.hi_pos),
                      (cells.u_neg, cells.lo_neg, cells.hi_neg)):
        where = ((u - lo) / (hi - lo)).ravel()
        assert where.min() >= 0.0 and where.max() <= 1.0
        assert_mean_std(where, 0.5, sqrt(1 / 12))


def test_reads_are_the_programmed_weights_whatever_g_min():
    # No drift, 1/f noise or IR drop: a read is the programmed weight exactly, not a
    # difference of conductances offset by g_min.
    rng = np.random.default_rng(3)
    w, b = rng.uniform(-0.99, 0.99, (9, 14)), rng.uniform(-0.99, 0.99, 9)  # all 53 bits
    x = rng.uniform(-1, 1, (6, 14))
    xbar = build(w, b, g_min=5.0, g_max=25.0)
    ideal = IdealParams().build(w, b, None)
    np.testing.assert_array_equal(xbar.read(), ideal.read())
    np.testing.assert_array_equal(xbar.forward(x), ideal.forward(x))

"""Crossbar reads against closed forms where the existing tables leave gaps: read noise
alone (no column noise to lift the read-out) over many row tiles, each with its own
stream; proportional read noise on a reference column shared across row tiles; drift
compensation at any time after programming; ``without_nonidealities`` and wide float64
layers equal to the ideal device (devices/crossbar.py)."""
import numpy as np
import pytest

from devices.crossbar import CrossbarParams
from devices.ideal import IdealParams


def build(w, b, seed=1, **kw):
    return CrossbarParams(**kw).build(w, b, np.random.default_rng(seed))


def test_read_noise_alone_over_six_row_tiles_has_independent_tiles():
    # 50 inputs + the bias row in tiles of 10 rows: six tiles, each read through its
    # own noise stream. Differential pairs: variance 2 sigma^2 (|x|^2 + 1), whatever
    # the tiling, if the tiles' draws are independent (shared draws would add their
    # covariances). The sample variance of n normals has relative SE sqrt(2 / (n - 1)).
    rng = np.random.default_rng(2)
    w, b = rng.uniform(-0.5, 0.5, (4, 50)), rng.uniform(-0.5, 0.5, 4)
    x1 = np.tile(rng.uniform(0.5, 1.0, 10), 5)           # the same pattern in every tile
    sigma, n = 0.02, 20_000
    xbar = build(w, b, read_noise=sigma, tile_rows=10)
    assert len(xbar._row_tiles) == 6
    y = xbar.forward(np.tile(x1, (n, 1)))
    want = 2 * sigma ** 2 * (x1 @ x1 + 1.0)
    np.testing.assert_allclose(y.mean(axis=0), x1 @ w.T + b, atol=5 * np.sqrt(want / n))
    np.testing.assert_allclose(y.var(axis=0, ddof=1), want, rtol=5 * np.sqrt(2 / (n - 1)))


def test_column_noise_alone_has_its_variance():
    rng = np.random.default_rng(8)
    w, b = rng.uniform(-0.5, 0.5, (5, 12)), rng.uniform(-0.5, 0.5, 5)
    x1, n, out_noise = rng.uniform(-1, 1, 12), 20_000, 0.05
    y = build(w, b, out_noise=out_noise).forward(np.tile(x1, (n, 1)))
    np.testing.assert_allclose(y.var(axis=0, ddof=1), out_noise ** 2,
                               rtol=5 * np.sqrt(2 / (n - 1)))
    np.testing.assert_allclose(y.mean(axis=0), x1 @ w.T + b, atol=5 * out_noise / np.sqrt(n))


def test_proportional_read_noise_with_a_reference_column_across_row_tiles():
    # Reference mapping: G+ = g0 + 1/2 + w / (2 w_max), the reference g0 + 1/2, both with
    # read noise sigma G (weight units: k = 2 w_max). Each output's variance is
    # (k sigma)^2 sum_i (G+_i^2 + Gref_i^2) x_i^2; two outputs of one array share the
    # reference term as their covariance (SE about sqrt((var^2 + cov^2) / n)).
    rng = np.random.default_rng(3)
    w, b = rng.uniform(-0.8, 0.8, (3, 24)), rng.uniform(-0.8, 0.8, 3)
    x1 = rng.uniform(-1.0, 1.0, 24)
    sigma, n, g_min, g_max = 0.03, 20_000, 2.0, 22.0
    xbar = build(w, b, mapping="reference", read_noise=sigma, read_noise_model="proportional",
                 g_min=g_min, g_max=g_max, tile_rows=8)
    y = xbar.forward(np.tile(x1, (n, 1)))
    g0, k = g_min / (g_max - g_min), 2.0
    aug, xa = np.concatenate([w, b[:, None]], axis=1), np.append(x1, 1.0)
    gp, gref = g0 + 0.5 + aug / k, np.full(aug.shape[1], g0 + 0.5)
    shared = (k * sigma) ** 2 * (gref ** 2 @ xa ** 2)
    want = (k * sigma) ** 2 * (gp ** 2 @ xa ** 2) + shared
    np.testing.assert_allclose(y.var(axis=0, ddof=1), want, rtol=5 * np.sqrt(2 / (n - 1)))
    cov = np.cov(y.T)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert abs(cov[i, j] - shared) < 5 * np.sqrt((want[i] * want[j] + shared ** 2) / n)


@pytest.mark.parametrize("t", [0.5, 1.0, 3e3])
def test_drift_compensation_restores_the_weights_at_any_time_after_programming(t):
    rng = np.random.default_rng(4)
    w, b = rng.uniform(0.2, 0.9, (6, 9)), np.full(6, 0.5)
    x = rng.uniform(0, 1, (5, 9))
    drifted = build(w, b, drift_nu=0.1, t_inference_s=t, drift_t0_s=0.2)
    compensated = build(w, b, drift_nu=0.1, t_inference_s=t, drift_t0_s=0.2,
                        drift_compensation=True)
    # G (t + t0 / t0)^-nu: every weight shrinks by the same factor, which one global
    # gain undoes exactly (up to rounding)
    factor = ((t + 0.2) / 0.2) ** -0.1
    np.testing.assert_allclose(drifted.forward(x), factor * (x @ w.T + b), rtol=1e-12)
    np.testing.assert_allclose(compensated.forward(x), x @ w.T + b, rtol=1e-12)


def test_without_nonidealities_is_the_ideal_device():
    rng = np.random.default_rng(5)
    w, b = rng.uniform(-0.9, 0.9, (7, 20)), rng.uniform(-0.9, 0.9, 7)
    x = rng.uniform(-1, 1, (9, 20))
    node, wp = rng.normal(size=(9, 7)), rng.normal(scale=0.01, size=(9, 7 * 21))
    noisy = CrossbarParams(
        g_max_dtod=0.1, g_min_dtod=0.1, stuck_at_gmin_prob=0.01, stuck_at_gmax_prob=0.01,
        stuck_at_random_prob=0.01, bits_per_cell=4, prog_noise=0.05, read_noise=0.05,
        read_noise_1f_scale=1.0, drift_nu=0.05, drift_nu_dtod=0.01, t_inference_s=100.0,
        drift_compensation=True, input_range=1.0, dac_bits=6, output_range=5.0, adc_bits=8,
        adc_stochastic_rounding=True, out_noise=0.01, wire_resistance_ohm=1.0,
        precision="float32")
    clean = noisy.without_nonidealities().build(w, b, np.random.default_rng(6))
    ideal = IdealParams().build(w, b, None)
    for args in [(x,), (x, node, wp)]:
        np.testing.assert_array_equal(clean.forward(*args), ideal.forward(*args))
    np.testing.assert_array_equal(clean.read(), ideal.read())
    clean.set_time(1e4)                      # no drift either, however long after
    np.testing.assert_array_equal(clean.forward(x, node, wp), ideal.forward(x, node, wp))


@pytest.mark.parametrize("n_out", [31, 32, 64])
def test_wide_float64_layers_reproduce_the_ideal_products_bit_for_bit(n_out):
    rng = np.random.default_rng(7)
    w, b = rng.uniform(-1, 1, (n_out, 37)), rng.uniform(-1, 1, n_out)
    x = rng.uniform(-1, 1, (64, 37))
    np.testing.assert_array_equal(build(w, b).forward(x),
                                  IdealParams().build(w, b, None).forward(x))

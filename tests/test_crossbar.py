"""The analog crossbar device: kernels against NumPy twins, physics against closed forms.

Statistical checks use fixed seeds and tolerances derived from the sample size; each
says how. "5 sigma" bounds make a false failure (for a correct model) a < 1e-6 event.
"""
import copy
from pathlib import Path

import numba
import numpy as np
import pytest
import yaml

from devsim.device import DeviceParams
from devices import crossbar
from devices.crossbar import CrossbarParams
from devices.crossbar_periphery import (add_tile_perturbation, add_tile_perturbation_np,
                                        dac_kernel, dac_np, quant_step, readout_np,
                                        readout_rows)
from devices.crossbar_writes import pulse_kernel, pulse_np
from devsim.crng import ziggurat_normal as normal
from devsim.crng import ziggurat_normal_np as normal_np
from devices.ideal import IdealParams
from devsim.config import from_data
from devsim.params import ParamError

PRESETS = Path(__file__).resolve().parents[1] / "devices" / "presets"


def layer(n_out=12, n_in=30, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, (n_out, n_in)), rng.uniform(-scale, scale, n_out)


def build(w, b, seed=1, **kw):
    return CrossbarParams(**kw).build(w, b, np.random.default_rng(seed))


# ---------------------------------------------------------------- kernels vs twins
def test_normal_matches_twin_and_is_standard_normal():
    from math import erfc, sqrt
    key = np.uint64(0x1234_5678_9ABC_DEF0)
    index = np.arange(200_000, dtype=np.uint64)

    @numba.njit
    def many(key, index, out):
        for i in range(index.size):
            out[i] = normal(key, index[i])

    z = np.empty(index.size)
    many(key, index, z)
    np.testing.assert_array_equal(z, normal_np(key, index))
    n = z.size  # mean SE 1/sqrt(n), variance SE sqrt(2/n), 4th moment SE sqrt(96/n)
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(z ** 4) - 3) < 5 * np.sqrt(96 / n)
    for cut in (1.0, 2.0, 3.0, 3.6541528853610088):  # the last is where the ziggurat's tail starts
        p = erfc(cut / sqrt(2))  # P(|z| > cut); binomial SE sqrt(p (1 - p) / n)
        assert abs(np.mean(np.abs(z) > cut) - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(n)


def test_dac_kernel_matches_twin():
    x = np.random.default_rng(0).uniform(-2, 2, (17, 23))
    no_tiles, no_sums = np.zeros(1, np.int64), np.zeros((0, 0))
    for bound, step, dtype in [(1.0, quant_step(1.0, 5), np.float64), (0.0, 0.0, np.float32),
                               (1.5, 0.0, np.float64), (1.0, quant_step(1.0, 7), np.float32),
                               (0.0, quant_step(2.0, 6), np.float32)]:
        out = np.empty(x.shape, dtype=dtype)
        dac_kernel(x, bound, step, out, no_tiles, no_sums)
        np.testing.assert_array_equal(out, dac_np(x, bound, step, dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dac_row_squares_per_tile_match_twin(dtype):
    x = np.random.default_rng(5).normal(size=(9, 23))
    # one tile; three; a last tile holding only the bias row (its sum is the bias's 1)
    for starts in ([0, 23], [0, 7, 14, 23], [0, 23, 23]):
        starts = np.array(starts, dtype=np.int64)
        out, sums = np.empty(x.shape, dtype=dtype), np.empty((len(starts) - 1, 9))
        dac_kernel(x, 1.5, quant_step(1.5, 6), out, starts, sums)
        want_out, want_sums = dac_np(x, 1.5, quant_step(1.5, 6), dtype, starts)
        np.testing.assert_array_equal(out, want_out)
        np.testing.assert_allclose(sums, want_sums, rtol=1e-13)
    assert sums[-1].tolist() == [1.0] * 9


def test_tile_perturbation_matches_twin():
    rng = np.random.default_rng(1)
    n_out, n_in, t = 5, 13, 7
    x = rng.normal(size=(t, n_in))
    pert = rng.normal(size=(t, n_out * n_in + n_out))
    for i0, i1, bias in [(0, n_in, True), (3, 9, False), (9, n_in, True)]:
        a, b = np.zeros((t, n_out)), np.zeros((t, n_out))
        add_tile_perturbation(x, pert, n_out, i0, i1, bias, a)
        add_tile_perturbation_np(x, pert, n_out, i0, i1, bias, b)
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["const_adc", "tj_shared_stochastic", "nothing_but_adc"])
def test_readout_matches_twin_and_any_split_of_the_probes(dtype, case):
    rng = np.random.default_rng(2)
    t, n = 41, 9
    acc = rng.normal(size=(t, n)).astype(dtype)
    empty, empty2 = np.zeros(0), np.zeros((0, 0))
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    key, key_round = np.uint64(11), np.uint64(12)
    # (row_sq, var_scale, var_tj, out_var, shared_var), then the rest after base, first
    if case == "const_adc":
        per_probe = (rng.random(t), 0.3, empty2, 0.01, empty2)
        rest = (0.25, 2.0, False)
        base = np.uint64(5)
    elif case == "tj_shared_stochastic":
        per_probe = (empty, 0.0, rng.random((t, n)), 0.0, rng.random((t, 3)))
        rest = (0.1, 1.0, True)
        base = np.uint64(999)
    else:
        per_probe = (empty, 0.0, empty2, 0.0, empty2)
        rest = (0.5, 1.5, False)
        base = np.uint64(0)

    def rows(a, k):  # probes k, k + 1, ... of every per-probe argument
        return a[k:] if isinstance(a, np.ndarray) and a.shape[0] == t else a

    fixed = (group, 3, key, key_round, base)
    for accumulate, bias in ((False, empty), (True, rng.normal(size=n).astype(dtype))):
        start = rng.normal(size=(t, n)).astype(dtype)  # out and bias in the array's precision
        a, b, c, d = start.copy(), start.copy(), start.copy(), start.copy()
        readout_rows(acc, bias, a, accumulate, *per_probe, *fixed, 0, *rest, 0, t)
        readout_np(acc, bias, b, accumulate, *per_probe, *fixed, 0, *rest)
        for t0, t1 in ((0, 17), (17, 30), (30, t)):  # one call's rows in three parts
            readout_rows(acc, bias, c, accumulate, *per_probe, *fixed, 0, *rest, t0, t1)
        # a part handed over as its own arrays, starting at probe 17 of the call
        d[:17] = a[:17]
        readout_rows(acc[17:], bias, d[17:], accumulate, *(rows(v, 17) for v in per_probe),
                     *fixed, 17, *rest, 0, t - 17)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)


@pytest.mark.parametrize("differential", [True, False])
@pytest.mark.parametrize("stochastic", [True, False])
def test_pulse_kernel_matches_twin(differential, stochastic):
    rng = np.random.default_rng(3)
    n = 200
    request = rng.normal(0, 4, n)
    lo = rng.uniform(0, 0.1, (2, n))
    hi = rng.uniform(0.8, 1.0, (2, n))
    state = [rng.uniform(lo[i], hi[i]) for i in range(2)]
    stuck = (rng.random((2, n)) < 0.1).astype(np.int8)
    steps = rng.uniform(0.01, 0.03, (4, n))
    outs = []
    for fn in (pulse_kernel, pulse_np):
        u_pos, u_neg = state[0].copy(), state[1].copy()
        counts = np.zeros(n, dtype=np.int64)
        fn(request, u_pos, u_neg, lo[0], hi[0], lo[1], hi[1], stuck[0], stuck[1], *steps,
           differential, 0.3, True, stochastic, 6, np.uint64(21), np.uint64(22),
           np.uint64(77), counts)
        outs.append((u_pos, u_neg, counts))
    for got, want in zip(*outs):
        np.testing.assert_array_equal(got, want)
    assert outs[0][2].max() == 6  # the cap applied


# ---------------------------------------------------------------- exactness
def test_all_off_equals_ideal_device_exactly():
    w, b = layer(10, 40)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (25, 40))
    node = rng.normal(size=(25, 10))
    wp = rng.normal(scale=0.01, size=(25, 410))
    xbar = build(w, b)  # defaults: every non-ideality off, w_max = 1
    ideal = IdealParams().build(w, b, None)
    for args in [(x,), (x, node), (x, None, wp), (x, node, wp)]:
        np.testing.assert_array_equal(xbar.forward(*args), ideal.forward(*args))
    delta = rng.normal(scale=0.05, size=410)
    xbar.write(delta)
    ideal.write(delta)
    np.testing.assert_array_equal(xbar.read(), ideal.read())
    np.testing.assert_array_equal(xbar.forward(x, node, wp), ideal.forward(x, node, wp))


def test_ideal_preset_in_a_network_equals_ideal_network():
    from devsim.network import LayerParams, Network, NetworkParams
    preset = from_data(DeviceParams, yaml.safe_load((PRESETS / "crossbar_ideal.yaml").read_text()))
    outs = []
    for device in (preset, IdealParams()):
        params = NetworkParams(layers=(LayerParams(units=16), LayerParams(units=4)),
                               device=device)
        net = Network(params, 9, np.random.default_rng(5), np.random.default_rng(6))
        x = np.random.default_rng(7).random((30, 9))
        outs.append(net.run(x, np.random.default_rng(8).normal(size=(30, 20))).outputs)
    np.testing.assert_array_equal(*outs)


def test_float32_array_returns_float32_and_network_output_is_float64():
    """A float32 array keeps float32 pre-activations (activations run in float32), equal
    to the float64 array's within float32 rounding; the network hands the loss float64."""
    from devsim.network import LayerParams, Network, NetworkParams
    x = np.random.default_rng(7).random((30, 9))
    nets = {}
    for precision in ("float32", "float64"):
        params = NetworkParams(layers=(LayerParams(units=16), LayerParams(units=4)),
                               device=CrossbarParams(precision=precision))
        nets[precision] = Network(params, 9, np.random.default_rng(5), np.random.default_rng(6))
    run32, run64 = (nets[p].run(x, record=True) for p in ("float32", "float64"))
    assert [a.dtype for a in run32.preactivations] == [np.float32, np.float32]
    assert run32.outputs.dtype == run64.outputs.dtype == np.float64
    # |w| <= 1, 10 inputs of at most 1 per sum: float32 rounding below 1e-5 absolute
    np.testing.assert_allclose(run32.outputs, run64.outputs, atol=1e-5, rtol=0)
    again = nets["float32"].run(x).outputs  # the scratch buffers are reused, not shared
    np.testing.assert_array_equal(again, run32.outputs)


def test_tiling_equals_untiled_ideal_mvm():
    w, b = layer(20, 130)
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (15, 130))
    node = rng.normal(size=(15, 20))
    wp = rng.normal(scale=0.01, size=(15, 20 * 131))
    tiled = build(w, b, tile_rows=50, tile_cols=7)
    assert len(tiled._row_tiles) == 3 and tiled._n_groups == 3
    want = x @ w.T + b + node + np.einsum("tji,ti->tj", wp[:, :2600].reshape(15, 20, 130), x) \
        + wp[:, 2600:]
    np.testing.assert_allclose(tiled.forward(x, node, wp), want, rtol=1e-12, atol=1e-12)


def test_tiles_each_have_their_own_adc():
    w, b = layer(6, 100)
    x = np.random.default_rng(10).uniform(0, 1, (8, 100))
    rng_, bits = 3.0, 5
    xbar = build(w, b, tile_rows=40, adc_bits=bits, output_range=rng_)
    step = quant_step(rng_, bits)
    want = np.zeros((8, 6))
    for r0 in range(0, 101, 40):  # rows 0-39, 40-79, 80-100 (bias row last)
        part = x[:, r0:r0 + 40] @ w[:, r0:r0 + 40].T + (b if r0 == 80 else 0.0)
        want += np.rint(np.clip(part, -rng_, rng_) / step) * step
    np.testing.assert_allclose(xbar.forward(x), want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- periphery
def test_dac_step_and_clipping():
    w, b = layer()
    x = np.random.default_rng(11).uniform(-1.5, 1.5, (20, 30))
    xbar = build(w, b, dac_bits=5, input_range=1.0)
    step = 2.0 / (2 ** 5 - 2)  # 31 levels over [-1, 1]
    xq = np.rint(np.clip(x, -1, 1) / step) * step
    assert np.allclose(xq / step, np.rint(xq / step)) and np.abs(xq).max() <= 1.0
    np.testing.assert_array_equal(xbar.forward(x), IdealParams().build(w, b, None).forward(xq))


def test_adc_step_clipping_and_node_perturbation_before_adc():
    w, b = layer()
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (20, 30))
    node = rng.normal(size=(20, 12))
    xbar = build(w, b, adc_bits=4, output_range=2.0)
    step = 2 * 2.0 / (2 ** 4 - 2)  # 15 levels over [-2, 2]
    ideal = x @ w.T + b + node
    got = xbar.forward(x, node)
    np.testing.assert_array_equal(got, np.rint(np.clip(ideal, -2, 2) / step) * step)
    assert len(np.unique(got)) <= 15


def test_adc_stochastic_rounding_is_unbiased():
    w, b = layer(4, 10)
    n = 20_000
    x = np.tile(np.random.default_rng(13).uniform(-1, 1, (1, 10)), (n, 1))
    step = quant_step(4.0, 6)
    got = build(w, b, adc_bits=6, output_range=4.0, adc_stochastic_rounding=True).forward(x)
    exact = x[0] @ w.T + b
    assert np.allclose(got / step, np.rint(got / step))  # on the grid
    # each output is one of two grid values, variance <= step^2 / 4: SE <= step / (2 sqrt(n))
    assert np.all(np.abs(got.mean(axis=0) - exact) < 5 * step / (2 * np.sqrt(n)))


# ---------------------------------------------------------------- read noise
@pytest.mark.parametrize("mapping", ["differential", "reference"])
def test_read_noise_variance_matches_closed_form(mapping):
    w, b = layer(8, 30, scale=0.5)
    n = 20_000
    x1 = np.random.default_rng(14).uniform(-1, 1, 30)
    sigma, out_noise = 0.02, 0.01
    xbar = build(w, b, mapping=mapping, read_noise=sigma, out_noise=out_noise)
    y = xbar.forward(np.tile(x1, (n, 1)))
    k = 1.0 if mapping == "differential" else 2.0  # weight per unit of conductance range
    devices = 2  # G+ and G-, or the device and its reference
    want = devices * (k * sigma) ** 2 * (x1 @ x1 + 1.0) + out_noise ** 2  # bias row at 1
    np.testing.assert_allclose(y.mean(axis=0), x1 @ w.T + b,
                               atol=5 * np.sqrt(want / n))
    # sample variance of n Gaussians has relative SE sqrt(2 / (n - 1))
    np.testing.assert_allclose(y.var(axis=0, ddof=1), want, rtol=5 * np.sqrt(2 / (n - 1)))
    cov = np.cov(y.T)[0, 1]
    shared = (k * sigma) ** 2 * (x1 @ x1 + 1.0) if mapping == "reference" else 0.0
    # covariance SE ~ sqrt((var^2 + cov^2) / n)
    assert abs(cov - shared) < 5 * np.sqrt((want ** 2 + shared ** 2) / n)


def test_proportional_read_noise_variance():
    w, b = layer(6, 20, scale=0.6)
    n = 20_000
    x1 = np.random.default_rng(15).uniform(-1, 1, 20)
    g_min, g_max, sigma = 5.0, 25.0, 0.05
    xbar = build(w, b, read_noise=sigma, read_noise_model="proportional", g_min=g_min,
                 g_max=g_max)
    y = xbar.forward(np.tile(x1, (n, 1)))
    aug = np.concatenate([w, b[:, None]], axis=1)
    g0 = g_min / (g_max - g_min)  # conductances in units of the range
    gp, gn = g0 + np.maximum(aug, 0), g0 + np.maximum(-aug, 0)
    want = sigma ** 2 * ((gp ** 2 + gn ** 2) @ np.append(x1 ** 2, 1.0))
    np.testing.assert_allclose(y.var(axis=0, ddof=1), want, rtol=5 * np.sqrt(2 / (n - 1)))


def test_arrays_built_from_one_generator_read_on_streams_of_their_own():
    """Each array draws its seed from the generator it is built with: sixty arrays
    built in turn from one generator, with the same (zero) weights, read sixty different
    noises (a seed drawn from a small range would repeat among them)."""
    rng, params = np.random.default_rng(0), CrossbarParams(read_noise=0.05)
    reads = {params.build(np.zeros((4, 3)), np.zeros(4), rng).forward(np.ones((1, 3))).tobytes()
             for _ in range(60)}
    assert len(reads) == 60


def test_every_row_tile_reads_and_rounds_on_streams_of_its_own():
    """Nine row tiles with stochastic ADC rounding: the read and rounding streams of
    every tile, and the array's pulse streams, are all different keys."""
    w, b = layer(5, 35)  # 36 rows of 4: nine tiles
    xbar = build(w, b, tile_rows=4, read_noise=0.02, adc_bits=8, output_range=4.0,
                 adc_stochastic_rounding=True)
    pulses = [xbar._keys[s] for s in (crossbar._STREAM_PULSE, crossbar._STREAM_PULSE_ROUND)]
    keys = [int(k) for pair in xbar._tile_keys for k in pair] + [int(k) for k in pulses]
    assert len(xbar._tile_keys) == 9 and len(set(keys)) == len(keys) == 18 + 2


def test_noise_independent_per_probe_and_of_thread_count():
    # weights and inputs on dyadic grids: every product sum is exact, so the BLAS
    # rounding (which may change with how rows are split) cannot differ either
    rng = np.random.default_rng(16)
    w, b = rng.integers(-8, 9, (64, 50)) / 32, rng.integers(-8, 9, 64) / 32
    x = rng.integers(-16, 17, (600, 50)) / 16  # 600 probes: split across threads
    params = dict(read_noise=0.05, adc_bits=8, output_range=5.0, adc_stochastic_rounding=True)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = build(w, b, **params).forward(x)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        many = build(w, b, **params).forward(x)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, many)
    # two identical probes get different noise
    same = build(w, b, **params).forward(np.tile(x[:1], (2, 1)))
    assert not np.array_equal(same[0], same[1])



@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_forward_into_a_kept_array_equals_a_fresh_one(precision):
    rng = np.random.default_rng(17)
    w, b = rng.integers(-8, 9, (64, 50)) / 32, rng.integers(-8, 9, 64) / 32
    x = rng.integers(-16, 17, (600, 50)) / 16  # split across threads where there are two
    params = dict(read_noise=0.05, dac_bits=6, input_range=1.0, adc_bits=8,
                  output_range=5.0, precision=precision)
    fresh = build(w, b, **params).forward(x)
    kept = np.full((600, 64), np.nan, dtype=precision)
    got = build(w, b, **params).forward(x, out=kept)
    assert got is kept
    np.testing.assert_array_equal(kept, fresh)
    # an array that cannot hold the result is left alone
    for wrong in (np.zeros((600, 63), precision), np.zeros((64, 600), precision).T,
                  np.zeros((600, 64), np.float16)):
        before = wrong.copy()
        got = build(w, b, **params).forward(x, out=wrong)
        assert got is not wrong and np.array_equal(wrong, before)
        np.testing.assert_array_equal(got, fresh)

# ---------------------------------------------------------------- programming
def test_levels_quantize_conductances():
    w, b = layer(20, 40, scale=1.2)
    bits = 3
    xbar = build(w, b, bits_per_cell=bits)
    got = xbar.read()
    levels = 2 ** bits - 1  # each device on a multiple of 1/7 of the range
    assert np.allclose(got * levels, np.rint(got * levels), atol=1e-12)
    want = np.clip(np.concatenate([w.ravel(), b]), -1, 1)
    assert np.abs(got - want).max() <= 0.5 / levels + 1e-12


@pytest.mark.parametrize("model", ["constant", "proportional", "pcm"])
def test_programming_noise_sigma(model):
    xbar = build(*layer(2, 2), g_min=2.0, g_max=25.0, prog_noise=0.03 if model != "pcm" else 1.0,
                 prog_noise_model=model)
    n = 40_000
    target = np.full(n, 0.4)  # mid-range: clipping at the bounds is > 5 sigma away
    bounds = (np.zeros(n), np.ones(n))
    u = xbar.cells.programmed(target, *bounds, (np.zeros(n, dtype=np.int8), np.zeros(n)))
    g = 2.0 + 23.0 * 0.4  # uS
    want = {"constant": 0.03, "proportional": 0.03 * g / 23.0,
            "pcm": (0.26348 + 1.9650 * g / 25 - 1.1731 * (g / 25) ** 2) / 23.0}[model]
    assert abs(u.std(ddof=1) / want - 1) < 5 * np.sqrt(1 / (2 * (n - 1)))
    assert abs(u.mean() - 0.4) < 5 * want / np.sqrt(n)


def test_programming_noise_is_clipped_to_each_devices_own_range():
    """Program-and-verify leaves a device inside its own [g_min, g_max] (in range units
    [lo, hi], spread device to device): the clipped target plus its noise, bounded, from
    the array's generator in order."""
    xbar = build(*layer(2, 2), prog_noise=0.3, g_min_dtod=0.2, g_max_dtod=0.1)
    cells, n = xbar.cells, 20_000
    rng = np.random.default_rng(4)
    lo, hi = rng.uniform(-0.05, 0.05, n), rng.uniform(0.85, 1.0, n)
    target = rng.uniform(-0.5, 1.5, n)
    no_faults = (np.zeros(n, dtype=np.int8), np.zeros(n))
    draws = copy.deepcopy(cells.rng)
    u = cells.programmed(target, lo, hi, no_faults)
    want = np.clip(target, 0.0, 1.0) + 0.3 * draws.standard_normal(n)
    np.testing.assert_array_equal(u, np.minimum(np.maximum(want, lo), hi))
    assert (u == hi).mean() > 0.1 and (u == lo).mean() > 0.1  # both bounds act


@pytest.mark.parametrize("moved", ["every weight", "some weights"])
def test_program_and_verify_draws_noise_for_the_moved_devices_in_row_major_order(moved):
    """A write of dw_min 0 re-programs the pairs of the weights it changes, G- then G+,
    each with one programming-noise draw per device in row-major order (an update that
    moves every weight takes them as views, a partial one through its mask: the same
    draws), from the array's generator; the other devices keep their conductances."""
    n_out, n_in, sigma = 7, 9, 0.02
    xbar = build(*layer(n_out, n_in), prog_noise=sigma)
    cells = xbar.cells
    delta = np.random.default_rng(5).uniform(-0.2, 0.2, n_out * (n_in + 1))
    if moved == "some weights":
        delta[::3] = 0.0
    d = np.concatenate([delta[:n_out * n_in].reshape(n_out, n_in), delta[n_out * n_in:, None]],
                       axis=1)
    mask = d != 0
    target = cells.programmed_weights() + d
    u_pos, u_neg = cells.u_pos.copy(), cells.u_neg.copy()
    draws = copy.deepcopy(cells.rng)
    for u, part in ((u_neg, np.maximum(-target, 0.0)), (u_pos, np.maximum(target, 0.0))):
        clean = np.clip(part[mask] / xbar.params.w_max, 0.0, 1.0)
        u[mask] = np.clip(clean + sigma * draws.standard_normal(clean.size), 0.0, 1.0)
    xbar.write(delta)
    np.testing.assert_array_equal(cells.u_neg, u_neg)
    np.testing.assert_array_equal(cells.u_pos, u_pos)
    assert cells.rng.bit_generator.state == draws.bit_generator.state
    assert xbar.meter.pulses == 2 * np.count_nonzero(mask)


def test_stuck_fractions_and_stuck_devices_do_not_move():
    n_out, n_in = 150, 199
    probs = dict(stuck_at_gmin_prob=0.05, stuck_at_gmax_prob=0.03, stuck_at_random_prob=0.02)
    xbar = build(np.zeros((n_out, n_in)), np.zeros(n_out), **probs)
    codes = np.concatenate([c.ravel() for c in xbar.stuck])
    n = codes.size
    for code, p in zip((1, 2, 3), probs.values()):
        assert abs(np.mean(codes == code) - p) < 5 * np.sqrt(p * (1 - p) / n)  # binomial SE
    pos, neg = (c[:, :n_in] for c in xbar.stuck)  # (n_out, n_in + 1): drop the bias row
    w = xbar.read()[: n_out * n_in].reshape(n_out, n_in)
    # programmed to 0: a G+ stuck at g_max with a working G- reads as +w_max
    np.testing.assert_array_equal(w[(pos == 2) & (neg == 0)], 1.0)
    np.testing.assert_array_equal(w[(pos == 1) & (neg == 0)], 0.0)
    xbar.write(np.full(n_out * n_in + n_out, 0.5))
    w2 = xbar.read()[: n_out * n_in].reshape(n_out, n_in)
    np.testing.assert_array_equal(w2[(pos == 2) & (neg == 2)], w[(pos == 2) & (neg == 2)])
    np.testing.assert_array_equal(w2[(pos == 0) & (neg == 0)], 0.5)


# ---------------------------------------------------------------- reads over time
def test_drift_exponent_recovered_by_fit_and_compensated():
    n_out, n_in = 40, 49
    rng = np.random.default_rng(17)
    w = rng.uniform(0.2, 0.9, (n_out, n_in))
    nu, nu_dtod, t0 = 0.06, 0.01, 20.0
    xbar = build(w, np.full(n_out, 0.5), drift_nu=nu, drift_nu_dtod=nu_dtod, drift_t0_s=t0)
    times = np.array([0.0, 10.0, 100.0, 1e3, 1e4, 1e5])
    logs = []
    for t in times:
        xbar.set_time(t)
        logs.append(np.log(xbar.read()))
    slope = np.polyfit(np.log((times + t0) / t0), np.array(logs), 1)[0]
    fitted = -slope  # one exponent per weight (g_min = 0: G- = 0 does not drift)
    m = fitted.size
    assert abs(fitted.mean() - nu) < 5 * nu_dtod / np.sqrt(m)
    assert abs(fitted.std(ddof=1) / nu_dtod - 1) < 5 * np.sqrt(1 / (2 * (m - 1)))
    # without spread, global compensation undoes drift exactly (up to rounding)
    flat = build(w, np.full(n_out, 0.5), drift_nu=nu, t_inference_s=1e4,
                 drift_compensation=True)
    x = rng.uniform(0, 1, (5, n_in))
    np.testing.assert_allclose(flat.forward(x), x @ w.T + 0.5, rtol=1e-12)


@pytest.mark.parametrize("t, t_read", [(1e3, 250e-9), (0.0, 10.0)])
def test_accumulated_1f_noise_spread(t, t_read):
    """aihwkit's accumulated 1/f spread, sqrt(log((t + t0 + t_read) / (2 t_read))); a
    read time of the order of t0 makes t_read's part of the sum show."""
    n_out, n_in = 100, 199
    g_rel = 0.5
    xbar = build(np.full((n_out, n_in), g_rel), np.full(n_out, g_rel), read_noise_1f_scale=1.0,
                 t_inference_s=t, drift_t0_s=20.0, t_read_s=t_read)
    w = xbar.read()
    q_s = min(0.0088 / g_rel ** 0.65, 0.2)
    want = g_rel * q_s * np.sqrt(np.log((t + 20.0 + t_read) / (2 * t_read)))
    # G- = 0 stays 0 (clipped at zero): the spread is that of G+ alone
    n = w.size
    assert abs(w.std(ddof=1) / want - 1) < 5 * np.sqrt(1 / (2 * (n - 1)))


@pytest.mark.parametrize("r", [2.0, 0.5])  # ohm per segment
def test_ir_drop_first_order_attenuation(r):
    n_out, n_in = 3, 4
    w = np.full((n_out, n_in), 0.5)
    b = np.zeros(n_out)
    g_max = 100.0
    xbar = build(w, b, wire_resistance_ohm=r, g_max=g_max)
    got = xbar.read()[: n_out * n_in].reshape(n_out, n_in)
    # row: G+ = 50 uS, G- = 0, side by side: positions 0..5 = [50, 0, 50, 0, 50, 0] uS
    row = np.tile([0.5 * g_max * 1e-6, 0.0], n_out)
    volts = [1.0 - r * sum(row[s:].sum() for s in range(c + 1)) for c in range(row.size)]
    want = 0.5 * np.array(volts[0::2])  # weight = w * attenuation of its G+ device
    np.testing.assert_allclose(got, np.tile(want, (n_in, 1)).T, rtol=1e-12)
    assert np.all(np.diff(want) < 0)  # further from the driver, less voltage



def test_ir_drop_with_a_reference_column_per_array():
    """``reference`` mapping: each row of an array holds its columns' G+ devices, then the
    array's reference device (mid-range) last; every column's weight reads
    2 w_max (G+ a_c - G_ref a_ref) in range units, with the first-order attenuations of
    that array's row (two arrays here: columns {0, 1} and {2})."""
    n_out, n_in, r, g_max = 3, 4, 2.0, 100.0
    w = np.array([0.5, -0.25, 0.75])[:, None] * np.ones((n_out, n_in))
    xbar = build(w, np.zeros(n_out), wire_resistance_ohm=r, g_max=g_max, mapping="reference",
                 tile_cols=2)
    got = xbar.read()[: n_out * n_in].reshape(n_out, n_in)
    want = np.empty(n_out)
    for cols in ([0, 1], [2]):
        u = np.append(0.5 + w[cols, 0] / 2.0, 0.5)       # G+ of the columns, then G_ref
        row = u * g_max * 1e-6
        a = np.array([1.0 - r * sum(row[s:].sum() for s in range(c + 1))
                      for c in range(row.size)])
        want[cols] = 2.0 * (u[:-1] * a[:-1] - u[-1] * a[-1])
    np.testing.assert_allclose(got, np.tile(want, (n_in, 1)).T, rtol=1e-12)
    assert np.all(np.abs(want - w[:, 0]) > 1e-4)    # the drop is visible

# ---------------------------------------------------------------- writes
def test_soft_bound_step_shrinkage_and_asymmetry():
    n_out, n_in = 10, 20
    w = np.random.default_rng(18).uniform(-0.8, 0.8, (n_out, n_in))
    dw, ud = 0.01, 0.2
    common = dict(mapping="reference", dw_min=dw, up_down=ud, pulse_rounding="nearest")
    flat = np.concatenate([w.ravel(), np.zeros(n_out)])
    u = 0.5 + flat / 2.0  # device conductance in range units (w_max = 1, reference at 0.5)
    up = build(w, np.zeros(n_out), **common)
    up.write(np.full(flat.size, dw))  # one potentiating pulse each
    # a step of the device is dw/2 * (1 + ud) * (1 - u); the weight moves twice that
    np.testing.assert_allclose(up.read() - flat, dw * (1 + ud) * (1 - u), rtol=1e-9)
    down = build(w, np.zeros(n_out), **common)
    down.write(np.full(flat.size, -dw))
    np.testing.assert_allclose(down.read() - flat, -dw * (1 - ud) * u, rtol=1e-9)
    hard = build(w, np.zeros(n_out), soft_bounds=False, **common)
    hard.write(np.full(flat.size, 3 * dw))  # three constant steps
    np.testing.assert_allclose(hard.read() - flat, 3 * dw * (1 + ud), rtol=1e-9)
    hard.write(np.full(flat.size, 1000 * dw))  # capped at max_pulses, clipped at g_max
    np.testing.assert_allclose(hard.read(), np.minimum(flat + 258 * dw * (1 + ud), 1.0),
                               rtol=1e-9)


def test_differential_pulses_cross_zero():
    w = np.full((1, 1), 0.03)
    xbar = build(w, np.zeros(1), dw_min=0.01, soft_bounds=False, pulse_rounding="nearest")
    xbar.write(np.array([-0.06, 0.0]))  # 3 pulses off G+, then 3 onto G-
    np.testing.assert_allclose(xbar.read()[0], -0.03, atol=1e-12)
    xbar.write(np.array([0.05, 0.0]))
    np.testing.assert_allclose(xbar.read()[0], 0.02, atol=1e-12)


def test_pulse_counting_time_and_energy():
    n_out, n_in = 30, 40
    dw = 0.001
    kw = dict(dw_min=dw, max_pulses=1000, pulse_time_s=1e-8, pulse_energy_j=2e-12)
    rng = np.random.default_rng(19)
    w = rng.uniform(-0.3, 0.3, (n_out, n_in))
    request = rng.integers(-20, 20, n_out * n_in + n_out) * dw + 0.3 * dw
    nearest = build(w, np.zeros(n_out), pulse_rounding="nearest", **kw)
    nearest.write(request)
    counts = np.rint(np.abs(request) / dw)
    assert nearest.meter.pulses == counts.sum()
    assert nearest.meter.energy_j == pytest.approx(counts.sum() * 2e-12, rel=1e-12, abs=0)
    per_cell = np.concatenate([counts[:-n_out].reshape(n_out, n_in), counts[-n_out:, None]], 1)
    # rows written one after another, the cells of a row in parallel
    rounds = per_cell.max(axis=0).sum()
    assert nearest.meter.time_s == pytest.approx(rounds * 1e-8, rel=1e-12, abs=0)
    stochastic = build(w, np.zeros(n_out), **kw)
    small = np.full(n_out * n_in + n_out, 0.37 * dw)
    for _ in range(160):  # 160 writes x 1230 cells: Bernoulli(0.37) pulse counts
        stochastic.write(small)
    n = 160 * small.size
    assert abs(stochastic.meter.pulses / n - 0.37) < 5 * np.sqrt(0.37 * 0.63 / n)


def test_mixed_precision_writes_whole_thresholds_and_keeps_the_rest():
    """update_threshold: devices move only in whole thresholds; what was requested is
    always on the devices plus in the accumulator (no update lost, none invented)."""
    w, b = layer(8, 10)
    step = 0.01
    rng = np.random.default_rng(3)
    xbar = build(w, b, update_threshold=step)  # program-and-verify, no noise, continuous
    start = xbar.read()
    requested = np.zeros_like(start)
    writes = 0
    for _ in range(25):
        delta = rng.normal(scale=0.004, size=start.size)
        before = xbar.read()
        xbar.write(delta)
        requested += delta
        moved = xbar.read() - before
        np.testing.assert_allclose(moved / step, np.rint(moved / step), atol=1e-9)
        writes += np.count_nonzero(np.abs(moved) > step / 2)
        assert np.abs(xbar.pending()).max() < step
        np.testing.assert_allclose(xbar.read() - start + xbar.pending(), requested, atol=1e-12)
    assert 0 < writes < 25 * start.size  # some cells written, far from every request
    assert xbar.meter.pulses == 2 * writes  # program-and-verify: one per device of a pair
    # pulsed writes with the threshold one pulse: each transfer is whole pulses (the
    # devices may clip at their bounds, so count what left the accumulator)
    pulsed = build(w, b, update_threshold=step, dw_min=step, soft_bounds=False,
                   pulse_rounding="nearest", max_pulses=1000)
    transferred = 0.0
    for _ in range(25):
        delta = rng.normal(scale=0.004, size=start.size)
        before = pulsed.pending()
        pulsed.write(delta)
        transfer = before + delta - pulsed.pending()
        np.testing.assert_allclose(transfer / step, np.rint(transfer / step), atol=1e-9)
        transferred += np.rint(np.abs(transfer) / step).sum()
    assert pulsed.meter.pulses == transferred > 0


@pytest.mark.parametrize("mapping, cells", [
    ("reference", 11 * (8 + 2)),  # 11 rows x (8 devices + a reference column per array of 5)
    ("differential", 11 * 2 * 8),  # 11 rows x a pair per output
])
def test_read_meter(mapping, cells):
    w, b = layer(8, 10)
    xbar = build(w, b, mapping=mapping, tile_rows=4, tile_cols=5, mvm_time_s=1e-7,
                 cell_read_energy_j=1e-15, adc_energy_j=1e-12)
    xbar.forward(np.zeros((7, 10)))
    assert xbar.meter.reads == 7
    assert xbar.meter.time_s == pytest.approx(7e-7, rel=1e-12, abs=0)
    want = 7 * (cells * 1e-15 + 8 * 3 * 1e-12)  # joules: approx's default abs=1e-12 is too loose
    assert xbar.meter.energy_j == pytest.approx(want, rel=1e-12, abs=0)


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, path", [
    (dict(g_min=-1.0), "g_min"), (dict(g_max=0.0), "g_max"), (dict(g_min=30.0), "g_max"),
    (dict(mapping="single"), "mapping"), (dict(tile_rows=0), "tile_rows"),
    (dict(stuck_at_gmax_prob=1.5), "stuck_at_gmax_prob"),
    (dict(stuck_at_gmin_prob=0.6, stuck_at_gmax_prob=0.6), "stuck_at_random_prob"),
    (dict(read_noise=-0.1), "read_noise"), (dict(prog_noise_model="x"), "prog_noise_model"),
    (dict(dac_bits=1, input_range=1.0), "dac_bits"), (dict(dac_bits=8), "input_range"),
    (dict(adc_bits=8), "output_range"), (dict(output_range=0.0), "output_range"),
    (dict(up_down=1.0), "up_down"), (dict(max_pulses=0), "max_pulses"),
    (dict(drift_t0_s=0.0), "drift_t0_s"), (dict(precision="float16"), "precision"),
    (dict(pcm_prog_coeffs=()), "pcm_prog_coeffs"), (dict(t_inference_s=float("nan")),
                                                     "t_inference_s"),
])
def test_invalid_params_rejected_with_path(kwargs, path):
    with pytest.raises(ParamError) as err:
        CrossbarParams(**kwargs)
    assert err.value.path[0] == path


def test_every_field_documented_with_unit_where_physical():
    import ast
    import inspect
    import devices.crossbar as mod
    tree = ast.parse(inspect.getsource(mod.CrossbarParams))
    body = tree.body[0].body
    documented = {stmt.target.id for stmt, nxt in zip(body, body[1:])
                  if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                  and isinstance(nxt.value, ast.Constant)}
    from dataclasses import fields
    names = {f.name for f in fields(CrossbarParams)}
    assert names == documented
    units = {f.name: f.metadata.get("unit") for f in fields(CrossbarParams) if f.metadata}
    for name in ("g_min", "g_max", "t_read_s", "drift_t0_s", "t_inference_s", "mvm_time_s",
                 "cell_read_energy_j", "pulse_energy_j", "wire_resistance_ohm"):
        assert units[name], name


@pytest.mark.parametrize("name", ["ideal", "pcm", "reram"])
def test_presets_load_round_trip_and_run(name):
    text = (PRESETS / f"crossbar_{name}.yaml").read_text()
    assert text.startswith("#") and "type: crossbar" in text
    params = from_data(DeviceParams, yaml.safe_load(text))
    assert isinstance(params, CrossbarParams)
    again = from_data(DeviceParams, yaml.safe_load(yaml.safe_dump(params.to_dict())))
    assert again == params
    w, b = layer(20, 50, scale=0.2)
    xbar = params.build(w, b, np.random.default_rng(20))
    x = np.random.default_rng(21).uniform(0, 1, (64, 50))
    y = xbar.forward(x)
    assert y.shape == (64, 20) and np.all(np.isfinite(y))
    # a noisy array still computes the layer: error well below the signal
    assert np.std(y - (x @ w.T + b)) < 0.5 * np.std(x @ w.T + b)
    xbar.write(np.full(w.size + b.size, 0.01))
    assert xbar.meter.pulses > 0


def test_hardware_set_time_moves_drifting_layers():
    """Drift through the bench (the experimenter sets the clock): g(t) = g (t/t0)^-nu."""
    from devices.crossbar import CrossbarParams
    from devsim.activations import Identity
    from devsim.bench import Bench
    from devsim.network import LayerParams, Network, NetworkParams

    rng = np.random.default_rng(0)
    layers = (LayerParams(units=3, activation=Identity(), device=CrossbarParams(drift_nu=0.1)),)
    bench = Bench(Network(NetworkParams(layers=layers), 4, rng, rng), "mse")
    x = rng.normal(size=(5, 4))
    before = bench.outputs(x)
    assert bench.set_time(1e4) == 1
    after = bench.outputs(x)
    # conductances drift by ((t + t0) / t0)^-nu, t0 = drift_t0_s = 20 s
    np.testing.assert_allclose(after, before * ((1e4 + 20.0) / 20.0) ** -0.1, rtol=1e-12)


@pytest.mark.parametrize("preset, expected", [(None, "passive"), ("active", "active")])
def test_importing_devices_lets_idle_openmp_threads_sleep_unless_told_otherwise(preset, expected):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, devices; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == expected


def test_hardware_set_time_moves_drifting_conv_layers():
    """Convolutions unrolled onto drifting crossbars take the bench's clock too: with
    identity activations and zero biases the network is homogeneous, so its outputs
    scale by the drift factor once per layer with parameters (max pooling commutes with
    a positive factor)."""
    from devices.crossbar import CrossbarParams
    from devsim.bench import Bench
    from devsim.config import from_data
    from devsim.network import Network, NetworkParams

    rng = np.random.default_rng(1)
    params = from_data(NetworkParams, {
        "input_shape": [5, 5, 2], "device": {"type": "crossbar", "drift_nu": 0.1},
        "layers": [{"type": "conv2d", "channels": 3, "activation": "identity"},
                   {"type": "max_pool", "pool": [2, 2], "padding": "same"},
                   {"type": "depthwise_conv2d", "depth_multiplier": 2,
                    "activation": "identity"},
                   "flatten", {"units": 4, "activation": "identity"}]})
    assert isinstance(params.device, CrossbarParams)
    bench = Bench(Network(params, 50, rng, rng), "mse")
    x = rng.normal(size=(6, 50))
    before = bench.outputs(x)
    assert bench.set_time(1e4) == 3
    np.testing.assert_allclose(bench.outputs(x), before * ((1e4 + 20.0) / 20.0) ** -0.3,
                               rtol=1e-12)

"""Telegraph sMTJ model (devices/mtj.py): kernels against NumPy twins, statistics against
closed forms of the two-state Markov chain, and the neuron and noise source in a network.

Statistical tests use fixed seeds; each states how its tolerance follows from the sample
size. Most use 5 standard errors, so a correct model fails one check with probability
about 6e-7.
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from devices import mtj
from devsim.device import NoiseSourceParams
from devsim import config, crng
from devsim.activations import ActivationParams, Identity
from devsim.hardware import Hardware
from devsim.network import LayerParams, Network, NetworkParams
from devsim.params import ParamError

PRESETS = Path(__file__).resolve().parents[1] / "devices" / "presets"


def _array(n, seed=0, current=0.0, **fields):
    return mtj.MTJParams(**fields).build_array(n, np.random.default_rng(seed), current)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _run_lengths(m):
    """Lengths of the complete runs of +1 and of -1 in each column of ``m`` (T, n);
    the first and last run of a column are censored and left out."""
    plus, minus = [], []
    for col in m.T:
        edges = np.flatnonzero(np.diff(col)) + 1
        lengths = np.diff(edges)
        values = col[edges[:-1]]
        plus.append(lengths[values > 0])
        minus.append(lengths[values < 0])
    return np.concatenate(plus), np.concatenate(minus)


# ------------------------------------------------------------------ closed forms
def test_leave_probabilities_are_the_exact_two_state_transition():
    x = np.linspace(-3.0, 3.0, 13)
    delta, log_rate0 = 2.5, np.log(0.3)
    p_plus, p_minus = mtj.leave_probabilities_np(x, delta, log_rate0)
    k_plus = np.exp(log_rate0 - delta * (1 + x))  # k+ dt
    k_minus = np.exp(log_rate0 - delta * (1 - x))
    # one-step correlation exp(-K dt) and occupancy sigmoid(2 delta x), both exact
    # (1 - p+ - p- cancels to within a few ulp of 1: hence atol)
    np.testing.assert_allclose(1 - p_plus - p_minus, np.exp(-(k_plus + k_minus)),
                               rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(p_minus / (p_plus + p_minus), 1 / (1 + np.exp(-2 * delta * x)),
                               rtol=1e-12)
    for xi, pp, pm in zip(x, p_plus, p_minus):  # the scalar kernel agrees with its twin
        assert mtj.leave_probabilities(xi, delta, log_rate0) == pytest.approx((pp, pm), rel=1e-14)
    # dt << tau: the first-passage form 1 - exp(-dt/tau); relative difference below K dt
    p_plus, _ = mtj.leave_probabilities_np(0.2, 3.0, np.log(1e-3))
    k_sum = 1e-3 * (np.exp(-3.0 * 1.2) + np.exp(-3.0 * 0.8))
    assert abs(p_plus / -np.expm1(-1e-3 * np.exp(-3.6)) - 1) < k_sum
    # extreme rates stay finite and in [0, 1]
    p_plus, p_minus = mtj.leave_probabilities_np(np.array([-400.0, 0.0, 400.0]), 40.0, 30.0)
    assert np.all(np.isfinite(p_plus) & np.isfinite(p_minus))
    assert np.all((p_plus >= 0) & (p_plus <= 1) & (p_minus >= 0) & (p_minus <= 1))


# --------------------------------------------------------- kernels against twins
def test_integer_threshold_is_the_float_comparison():
    key = crng.stream_key_np(5, 1)
    draws = np.arange(20000, dtype=np.uint64)
    uniform = crng.uniform_np(key, draws)
    edges = uniform[:50]  # p exactly equal to a draw (strict comparison), and just above
    for p in np.concatenate([[0.0, 1.0, 2.0**-53, 0.0809], edges, edges + 1e-17]):
        kernel = (crng.bits_np(key, draws) >> np.uint64(11)) < mtj.threshold(p)
        np.testing.assert_array_equal(kernel, uniform < p)


def _spread(**extra):
    return dict(delta=2.0, dt=2e-9, delta_dtod=0.2, ic0_dtod=0.2, offset_dtod=5e-6, **extra)


@pytest.mark.parametrize("n", [1, 7, 600])  # single device, one block, blocks + remainder
def test_kernels_match_numpy_twins_bit_for_bit(n):
    a, b = _array(n, 3, **_spread()), _array(n, 3, **_spread())
    current = np.random.default_rng(4).normal(0.0, 30e-6, (60, n))
    ref = np.empty((60, n))
    switches = mtj.telegraph_drive_np(b.state, current, b.offset, b.ic0, b.delta, b.log_rate0,
                                      3, b.key, 0, ref)
    state = a.state.copy()
    np.testing.assert_array_equal(a.drive(current, 3), ref)
    np.testing.assert_array_equal(a.state, b.state)
    assert switches > 0
    out = np.empty_like(ref)  # the parallel kernel, which arrays use for large calls only
    assert mtj.telegraph_drive(state, current, a.offset, a.ic0, a.delta, a.log_rate0, 3,
                               a.key, 0, out) == switches
    np.testing.assert_array_equal(out, ref)
    p_plus, p_minus = b.leave_probabilities(8e-6)
    ref = np.empty((200, n))
    switches = mtj.telegraph_hold_np(b.state, p_plus, p_minus, b.key, 180, ref)
    state = a.state.copy()
    np.testing.assert_array_equal(a.hold(8e-6, 200), ref)
    np.testing.assert_array_equal(a.state, b.state)
    out = np.empty_like(ref)
    assert mtj.telegraph_hold(state, p_plus, p_minus, a.key, 180, out) == switches
    np.testing.assert_array_equal(out, ref)


def test_hold_is_drive_at_constant_current():
    for n in (1, 20, 300):  # the single-device kernel, one block, two blocks
        a, b = _array(n, 5, **_spread()), _array(n, 5, **_spread())
        np.testing.assert_array_equal(a.hold(3e-6, 100), b.drive(np.full((100, n), 3e-6)))


def test_drive_rejects_a_current_of_the_wrong_width():
    with pytest.raises(ValueError, match="expected"):
        _array(5).drive(np.zeros((3, 6)))


def test_device_to_device_spread_has_the_requested_statistics():
    n = 4000
    a = _array(n, 1, delta=3.0, ic0=40e-6, delta_dtod=0.2, ic0_dtod=0.1, offset_dtod=2e-6)
    # sample sd of n normals: relative SE 1/sqrt(2n); sample mean: SE sd/sqrt(n)
    for values, sd in ((np.log(a.delta / 3.0), 0.2), (np.log(a.ic0 / 40e-6), 0.1),
                       (a.offset, 2e-6)):
        assert abs(values.std(ddof=1) / sd - 1) < 5 / np.sqrt(2 * n)
        assert abs(values.mean()) < 5 * sd / np.sqrt(n)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs at least 2 Numba threads to compare thread counts")
def test_results_do_not_depend_on_thread_count():
    n = 700  # 3 blocks of devices
    a = _array(n, 9, **_spread())
    current = np.random.default_rng(1).normal(0.0, 30e-6, (40, n))
    p_plus, p_minus = a.leave_probabilities(1e-6)
    outputs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            state, drive, hold = a.state.copy(), np.empty((40, n)), np.empty((300, n))
            mtj.telegraph_drive(state, current, a.offset, a.ic0, a.delta, a.log_rate0, 2,
                                a.key, 0, drive)
            mtj.telegraph_hold(state, p_plus, p_minus, a.key, 80, hold)
            outputs.append((drive, hold, state))
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*outputs):
        np.testing.assert_array_equal(one, two)


# -------------------------------------------------- continuity and determinism
def test_state_carries_across_calls():
    whole, split = _array(30, 2, **_spread()), _array(30, 2, **_spread())
    np.testing.assert_array_equal(whole.hold(0.0, 500),
                                  np.vstack([split.hold(0.0, 170), split.hold(0.0, 330)]))
    current = np.random.default_rng(0).normal(0.0, 20e-6, (50, 30))
    np.testing.assert_array_equal(whole.drive(current, 2),
                                  np.vstack([split.drive(current[:20], 2),
                                             split.drive(current[20:], 2)]))
    for shared in (False, True):
        params = mtj.MTJTelegraphNoiseParams(amplitude=1.0, read_noise=0.1, shared=shared)
        one, two = (params.build(7, np.random.default_rng(8)) for _ in range(2))
        np.testing.assert_array_equal(one.sample(90), np.vstack([two.sample(40), two.sample(50)]))


def test_same_seed_same_samples_other_seed_other_samples():
    params = mtj.MTJTelegraphNoiseParams(amplitude=1.0, read_noise=0.1, **_spread())
    first, again, other = (params.build(50, np.random.default_rng(s)).sample(200)
                           for s in (11, 11, 12))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    neuron = mtj.MTJNeuronParams(**_spread())
    z = np.random.default_rng(0).normal(size=(100, 12))
    first, again, other = (neuron.build(12, np.random.default_rng(s))(z) for s in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# ------------------------------------------------------------- the statistics
def test_dwell_times_are_exponential_with_the_neel_brown_means():
    delta, x, tau0, dt = 3.0, 0.2, 1e-9, 1e-10  # K dt = 0.0118
    ic0 = 50e-6
    a = _array(200, 1, current=x * ic0, delta=delta, tau0=tau0, dt=dt, ic0=ic0)
    plus, minus = _run_lengths(a.hold(x * ic0, 20000))
    p_plus, p_minus = mtj.leave_probabilities_np(x, delta, np.log(dt / tau0))
    k_dt = dt / tau0 * (np.exp(-delta * (1 + x)) + np.exp(-delta * (1 - x)))
    for runs, p, tau in ((plus, p_plus, tau0 * np.exp(delta * (1 + x))),
                         (minus, p_minus, tau0 * np.exp(delta * (1 - x)))):
        assert runs.size > 3000
        # runs of a Markov chain are independent geometric(p): mean 1/p, sd sqrt(1-p)/p
        se = np.sqrt(1 - p) / p / np.sqrt(runs.size)
        assert abs(runs.mean() - 1 / p) < 5 * se
        # in seconds the mean is tau (1 + O(K dt)): 5 SE plus the discretisation K dt
        assert abs(dt * runs.mean() / tau - 1) < 5 * se * p + k_dt
        # exponential shape: P(L > k) = (1 - p)^k, each a binomial fraction of the runs
        for k in (0.5 / p, 1 / p, 2 / p, 3 / p):
            survival = (1 - p) ** np.floor(k)
            sd = np.sqrt(survival * (1 - survival) / runs.size)
            assert abs(np.mean(runs > np.floor(k)) - survival) < 5 * sd


def test_time_averaged_state_follows_tanh_of_current_per_device():
    n, steps = 64, 20000
    current = np.linspace(-40e-6, 40e-6, n)
    fields = dict(delta=2.0, dt=1e-9, delta_dtod=0.2, ic0_dtod=0.2, offset_dtod=5e-6)
    a = _array(n, 6, current=current, **fields)  # starts in equilibrium: no burn-in
    average = a.hold(current, steps).mean(axis=0)
    mu = np.tanh(a.delta * (current - a.offset) / a.ic0)  # each device's own parameters
    p_plus, p_minus = a.leave_probabilities(current)
    rho = 1 - p_plus - p_minus
    # variance of a stationary two-state chain's time average: (1 - mu^2)(1 + rho)/(1 - rho)/N
    se = np.sqrt((1 - mu**2) * (1 + rho) / (1 - rho) / steps)
    assert np.all(np.abs(average - mu) < 5 * se + 1e-12)
    assert average[0] < -0.9 and average[-1] > 0.9  # the sweep spans the sigmoid


def test_autocorrelation_time_is_the_inverse_sum_of_rates():
    delta, x, tau0, dt, ic0 = 2.0, 0.3, 1e-9, 1e-9, 50e-6
    n, steps = 100, 20000
    a = _array(n, 7, current=x * ic0, delta=delta, tau0=tau0, dt=dt, ic0=ic0)
    m = a.hold(x * ic0, steps)
    tau_c = 1 / (np.exp(-delta * (1 + x)) / tau0 + np.exp(-delta * (1 - x)) / tau0)
    centred = m - m.mean(axis=0)
    var = np.mean(centred**2, axis=0)
    rho = np.exp(-dt / tau_c)
    for lag in (1, 2, 5, 10):
        per_device = np.mean(centred[lag:] * centred[:-lag], axis=0) / var
        # 5 SE between devices, plus the O((1+rho)/(1-rho)/N) bias of centring on the
        # sample mean
        se = per_device.std(ddof=1) / np.sqrt(n)
        bias = (1 + rho) / (1 - rho) / steps
        assert abs(per_device.mean() - np.exp(-lag * dt / tau_c)) < 5 * se + bias


# --------------------------------------------------------------- p-bit neuron
def test_pbit_frequencies_match_sigmoid_within_binomial_tolerance():
    z = np.linspace(-4.0, 4.0, 9)
    params = mtj.MTJNeuronParams(delta=2.0, dt=1e-7, gain=1.5)
    neuron = params.build(z.size, np.random.default_rng(2))
    x = z * params.gain / (2 * params.delta)
    p_plus, p_minus = mtj.leave_probabilities_np(x, params.delta, np.log(params.dt / params.tau0))
    assert np.all(1 - p_plus - p_minus < 1e-9)  # successive samples independent: binomial
    probes = 4000
    y = neuron(np.tile(z, (probes, 1)))
    assert set(np.unique(y)) <= {0.0, 1.0}
    p = _sigmoid(params.gain * z)
    assert np.all(np.abs(y.sum(axis=0) - probes * p) < 5 * np.sqrt(probes * p * (1 - p)) + 1e-9)
    np.testing.assert_allclose(neuron.mean(z), p)
    bipolar = params.replace(levels="bipolar").build(z.size, np.random.default_rng(2))
    np.testing.assert_array_equal(bipolar(np.tile(z, (probes, 1))), 2 * y - 1)


def test_read_window_mean_and_variance_follow_the_correlation_time():
    window, probes, n = 8, 5000, 40
    params = mtj.MTJNeuronParams(delta=2.0, dt=0.5e-9, read_samples=window)
    neuron = params.build(n, np.random.default_rng(5))
    z = 0.8
    y = neuron(np.full((probes, n), z))[100:]  # 800 samples of burn-in, >> tau_c
    x = z / (2 * params.delta)
    p_plus, p_minus = mtj.leave_probabilities_np(x, params.delta, np.log(params.dt / params.tau0))
    rho = 1 - p_plus - p_minus
    mu = np.tanh(params.delta * x)
    k = np.arange(1, window)
    var_m = (1 - mu**2) / window**2 * (window + 2 * np.sum((window - k) * rho**k))
    # binary output y = (1 + mean m) / 2; 5 SE between the n independent neurons
    means, variances = y.mean(axis=0), y.var(axis=0, ddof=1)
    assert abs(means.mean() - (1 + mu) / 2) < 5 * means.std(ddof=1) / np.sqrt(n)
    assert abs(variances.mean() - var_m / 4) < 5 * variances.std(ddof=1) / np.sqrt(n)
    assert 0.3 < rho < 0.9  # the window is correlated: the test tells rho = 0 apart


# --------------------------------------------------------------- noise source
def test_koenders_preset_reproduces_the_simulated_smtj():
    params = config.load(PRESETS / "mtj_koenders_simulated.yaml", NoiseSourceParams)
    assert isinstance(params, mtj.MTJTelegraphNoiseParams) and not params.shared
    source = params.build(50, np.random.default_rng(0))
    # calibration: the exact per-sample flip probability at zero bias is their 0.0809
    p_plus, p_minus = source.array.leave_probabilities(params.bias)
    np.testing.assert_allclose(np.concatenate([p_plus, p_minus]), 0.0809, rtol=1e-5)
    start = source.array.state.copy()
    v = np.vstack([source.sample(4000), source.sample(4000)])
    # read noise (0.91 mV) is 6.5 sd below the level half-gap (5.93 mV): sign recovers m
    m = np.sign(v - params.mean)
    flips = np.diff(np.vstack([start, m]), axis=0) != 0
    # symmetric rates: flips are iid Bernoulli(0.0809) whatever the state
    assert abs(flips.mean() - 0.0809) < 5 * np.sqrt(0.0809 * 0.9191 / flips.size)
    residual = v - params.mean - params.amplitude * m
    assert abs(residual.mean()) < 5 * params.read_noise / np.sqrt(residual.size)
    # sample sd of N Gaussians has relative SE 1/sqrt(2N)
    assert abs(residual.std() / params.read_noise - 1) < 5 / np.sqrt(2 * residual.size)


def test_shared_mode_time_multiplexes_one_device_over_the_nodes():
    params = config.load(PRESETS / "mtj_koenders_simulated.yaml", NoiseSourceParams)
    n_nodes, probes = 20, 2000
    for shared, flip_rate in ((True, 0.0809), (False, 0.5)):
        source = params.replace(shared=shared).build(n_nodes, np.random.default_rng(1))
        v = np.vstack([source.sample(probes), source.sample(probes)])
        # read row after row, successive values come from one chain only in shared mode;
        # across independent symmetric nodes they agree half the time
        m = np.sign(v - params.mean).ravel()
        flips = np.diff(m) != 0
        assert abs(flips.mean() - flip_rate) < 5 * np.sqrt(flip_rate * (1 - flip_rate) / flips.size)
        assert source.meter.reads == 2 * probes * n_nodes
        assert source.array.n == (1 if shared else n_nodes)


def test_meter_counts_reads_time_and_energy():
    params = mtj.MTJTelegraphNoiseParams(amplitude=1.0, dt=2e-9, read_energy=1e-15,
                                         switch_energy=3e-15)
    source = params.build(10, np.random.default_rng(4))
    start = source.array.state.copy()
    m = source.sample(300)
    switches = np.count_nonzero(np.diff(np.vstack([start, m]), axis=0))
    assert source.meter.reads == 3000
    assert source.meter.time_s == pytest.approx(300 * 2e-9)
    assert source.meter.energy_j == pytest.approx(3000 * 1e-15 + switches * 3e-15)
    neuron = mtj.MTJNeuronParams(dt=2e-9, read_samples=4, read_energy=1e-15).build(
        10, np.random.default_rng(4))
    neuron(np.zeros((300, 10)))
    assert neuron.meter.reads == 300 * 4 * 10
    assert neuron.meter.time_s == pytest.approx(300 * 4 * 2e-9)
    assert neuron.meter.energy_j == pytest.approx(12000 * 1e-15)


def test_a_forked_neuron_reads_a_stream_of_its_own_from_its_first_sample():
    """A fork (a network copy for evaluation) starts in the neuron's present states and
    reads from sample 0 of its own key; the neuron's stream goes on where it was. Both
    against the NumPy twin of the drive."""
    neuron = mtj.MTJNeuronParams(read_samples=3, gain=2.0, delta_dtod=0.1).build(
        6, np.random.default_rng(8))
    z = np.random.default_rng(9).normal(0.0, 1.5, (40, 6))
    neuron(z)
    fork = neuron.forked(2)
    a = neuron.array

    def twin(key, start):
        out = np.empty(z.shape)
        mtj.telegraph_drive_np(a.state.copy(), z * neuron._amps, a.offset, a.ic0, a.delta,
                               a.log_rate0, 3, key, start, out)
        return 0.5 * (1.0 + out)

    assert fork.array.key != a.key
    expected_fork, expected = twin(fork.array.key, 0), twin(a.key, 40 * 3)
    np.testing.assert_array_equal(fork(z), expected_fork)
    np.testing.assert_array_equal(neuron(z), expected)


# ------------------------------------------------------------ in the machine
_NETWORK_YAML = """
layers:
  - {units: 6, activation: {type: mtj_pbit, delta: 2.0, dt: 1.0e-7}}
  - {units: 3, activation: identity}
node_noise: {type: mtj_telegraph, mean: 0.5, amplitude: 0.25, read_noise: 0.0}
"""


def test_network_with_mtj_noise_and_pbit_neurons_through_hardware():
    params = config.loads(_NETWORK_YAML, NetworkParams)
    assert isinstance(params.layers[0].activation, mtj.MTJNeuronParams)
    rng = np.random.default_rng(0)
    hardware = Hardware(Network(params, 4, np.random.default_rng(1), np.random.default_rng(2)),
                        params.loss)
    x, y = rng.normal(size=(500, 4)), rng.normal(size=(500, 3))
    noisy = hardware.probe(x, y, noisy=True)
    assert noisy.costs.shape == (500,) and np.all(np.isfinite(noisy.costs))
    assert set(np.unique(noisy.inputs[1])) == {0.0, 1.0}  # p-bit layer outputs
    # the first layer's pre-activation differs from a clean pass by the telegraph level only
    clean = hardware.probe(x, y)
    shift = noisy.preactivations[0] - clean.preactivations[0]
    level = np.where(shift > 0.5, 0.75, 0.25)
    np.testing.assert_allclose(shift, level, atol=1e-12)
    assert 0.2 < np.mean(level == 0.75) < 0.8
    assert hardware.steps == 1000


def test_mtj_noise_alone_on_an_ideal_linear_layer():
    params = NetworkParams(layers=(LayerParams(units=5, activation=Identity()),),
                           node_noise=mtj.MTJTelegraphNoiseParams(amplitude=0.1, read_noise=0.01))
    hardware = Hardware(Network(params, 3, np.random.default_rng(0), np.random.default_rng(1)),
                        "mse")
    x = np.random.default_rng(2).normal(size=(200, 3))
    probe = hardware.probe(x, np.zeros((200, 5)), noisy=True)
    clean = hardware.probe(x, np.zeros((200, 5)))
    shift = probe.preactivations[0] - clean.preactivations[0]
    # |shift| = 0.1 +- 0.01 N(0,1): far from zero in 10 sd
    assert np.all(np.abs(np.abs(shift) - 0.1) < 0.06)


# ------------------------------------------------------------------ the schema
@pytest.mark.parametrize("cls, field, value", [
    (mtj.MTJParams, "delta", 0.0), (mtj.MTJParams, "tau0", -1e-9),
    (mtj.MTJParams, "ic0", 0.0), (mtj.MTJParams, "dt", 0.0),
    (mtj.MTJParams, "delta_dtod", -0.1), (mtj.MTJParams, "offset_dtod", -1e-6),
    (mtj.MTJParams, "read_energy", -1.0), (mtj.MTJParams, "switch_energy", -1.0),
    (mtj.MTJNeuronParams, "gain", 0.0), (mtj.MTJNeuronParams, "read_samples", 0),
    (mtj.MTJNeuronParams, "levels", "ternary"),
    (mtj.MTJTelegraphNoiseParams, "amplitude", -0.1),
    (mtj.MTJTelegraphNoiseParams, "read_noise", -0.1),
    (mtj.MTJTelegraphNoiseParams, "delta", float("nan")),
])
def test_invalid_parameters_are_rejected(cls, field, value):
    with pytest.raises(ParamError) as err:
        cls(**{field: value})
    assert err.value.path == (field,)


@pytest.mark.parametrize("family, params", [
    (ActivationParams, mtj.MTJNeuronParams(read_samples=4, levels="bipolar", delta_dtod=0.1)),
    (NoiseSourceParams, mtj.MTJTelegraphNoiseParams(shared=True, bias=1e-6, ic0_dtod=0.2)),
])
def test_yaml_round_trip(family, params):
    assert config.loads(config.dump(params), family) == params


def test_presets_load_and_build():
    neuron = config.load(PRESETS / "mtj_pbit_schnitzspan2023.yaml", ActivationParams)
    assert isinstance(neuron, mtj.MTJNeuronParams)
    # 10 ns dwell at zero current, 5 ns correlation time, as the preset's source states
    assert neuron.tau0 * np.exp(neuron.delta) == pytest.approx(10e-9, rel=1e-5)
    assert neuron.build(3, np.random.default_rng(0))(np.zeros((5, 3))).shape == (5, 3)

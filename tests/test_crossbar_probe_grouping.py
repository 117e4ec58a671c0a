"""Crossbar reads do not depend on how probes are grouped into calls, down to calls of one
probe (per-device and shared reference noise, one output), and pulsed writes near the
devices' floors equal their NumPy twin (devices/crossbar_periphery.py,
devices/crossbar_writes.py)."""
import numpy as np
import pytest

from devices.crossbar import CrossbarParams
from devices.crossbar_writes import pulse_kernel, pulse_np


@pytest.mark.parametrize("n_out, device", [
    (6, dict(read_noise=0.05, read_noise_model="proportional", g_min=2.0, g_max=22.0)),
    (6, dict(read_noise=0.05, read_noise_model="proportional", mapping="reference",
             tile_rows=4, tile_cols=4)),
    (1, dict(out_noise=0.05)),
    (1, dict(read_noise=0.03, adc_bits=8, output_range=4.0, adc_stochastic_rounding=True)),
], ids=["proportional", "reference-tiles", "one-output", "one-output-adc"])
def test_calls_of_one_probe_equal_one_call(n_out, device):
    # weights and inputs on dyadic grids keep the products exact whichever BLAS call
    # (matrix-vector for one probe) makes them; the per-device variances are products
    # too, of any rounding, hence the 1e-12 tolerance (a lost noise term is 1e-2)
    rng = np.random.default_rng(1)
    w, b = rng.integers(-25, 26, (n_out, 10)) / 32, rng.integers(-25, 26, n_out) / 32
    x = rng.integers(-16, 17, (7, 10)) / 16
    whole = CrossbarParams(**device).build(w, b, np.random.default_rng(2))
    single = CrossbarParams(**device).build(w, b, np.random.default_rng(2))
    together = whole.forward(x)
    apart = np.concatenate([single.forward(x[t:t + 1]) for t in range(7)])
    np.testing.assert_allclose(apart, together, rtol=1e-12, atol=1e-12)
    assert np.abs(together - (x @ w.T + b)).max() > 0          # noisy: the noise agrees


def test_one_output_with_column_noise_keeps_its_bias():
    rng = np.random.default_rng(3)
    w, b = rng.uniform(-0.8, 0.8, (1, 10)), np.array([0.7])
    x1, n = rng.uniform(-1, 1, 10), 20_000
    y = CrossbarParams(out_noise=0.05).build(w, b, np.random.default_rng(4)).forward(
        np.tile(x1, (n, 1)))
    assert abs(y.mean() - (x1 @ w[0] + 0.7)) < 5 * 0.05 / np.sqrt(n)


@pytest.mark.parametrize("differential", [True, False])
def test_pulses_near_the_floors_equal_the_twin(differential):
    # Every device within half a step of its own floor (bounds spread from 0): the
    # choice between carrier and partner is made at the floor.
    rng = np.random.default_rng(5)
    n = 400
    request = rng.choice([-3.0, -1.0, 1.0, 2.0], n)
    lo = rng.uniform(0.05, 0.2, (2, n))
    hi = rng.uniform(0.8, 1.0, (2, n))
    steps = rng.uniform(0.01, 0.03, (4, n))            # up_pos, down_pos, up_neg, down_neg
    state = [lo[0] + rng.uniform(0, 1, n) * steps[1], lo[1] + rng.uniform(0, 1, n) * steps[3]]
    stuck = np.zeros((2, n), dtype=np.int8)
    outs = []
    for fn in (pulse_kernel, pulse_np):
        u_pos, u_neg = state[0].copy(), state[1].copy()
        counts = np.zeros(n, dtype=np.int64)
        fn(request, u_pos, u_neg, lo[0], hi[0], lo[1], hi[1], stuck[0], stuck[1], *steps,
           differential, 0.2, True, False, 6, np.uint64(3), np.uint64(4), np.uint64(5),
           counts)
        outs.append((u_pos, u_neg, counts))
    for got, want in zip(*outs):
        np.testing.assert_array_equal(got, want)
    assert np.any(outs[0][0] != state[0]) and (not differential or np.any(outs[0][1] != state[1]))

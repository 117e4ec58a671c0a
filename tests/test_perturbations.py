"""Perturbation sequences: RMS scaling, orthogonality/averaging, determinism from the seed."""
import numpy as np
import pytest

from devsim import crng
from devsim.dense import column_sums
from trainer.perturbations import (KINDS, Perturbation, correlate_codes, rademacher_codes,
                                   rademacher_codes_np)

PERIODIC = ("walsh", "frequency", "time")


@pytest.mark.parametrize("kind", PERIODIC)
@pytest.mark.parametrize("K", [1, 7, 16, 33])
def test_periodic_codes_are_exactly_orthogonal_over_a_cycle(kind, K):
    eps = 0.3
    p = Perturbation(kind, K, eps, seed=5)
    for start in (0, 3 * p.cycle):  # any whole cycle, sign-flipped ones included
        codes = p.codes(np.arange(start, start + p.cycle))
        # sum_c theta_i theta_j = cycle * eps^2 / K * delta_ij (RMS eps/sqrt(K) each)
        np.testing.assert_allclose(codes.T @ codes, p.cycle * eps ** 2 / K * np.eye(K),
                                   atol=1e-12)
        if kind != "time":  # non-constant rows and harmonics carry no DC part
            np.testing.assert_allclose(codes.sum(axis=0), 0.0, atol=1e-12)


def test_walsh_is_hadamard_rows_flipped_each_cycle():
    p = Perturbation("walsh", 5, 1.0, seed=2)
    assert p.cycle == 8
    codes = p.codes(np.arange(16)) * np.sqrt(5)
    assert set(np.unique(codes)) == {-1.0, 1.0}
    np.testing.assert_array_equal(codes[8:], -codes[:8])
    # Sylvester Hadamard matrix of order 8 by Kronecker products: an independent build
    h = np.array([[1.0]])
    for _ in range(3):
        h = np.block([[h, h], [h, -h]])
    assert len({tuple(col) for col in codes[:8].T}) == 5
    for col in codes[:8].T:  # every channel follows a distinct non-constant row
        assert any(np.array_equal(col, row) for row in h[1:])


def test_frequency_codes_are_shuffled_harmonics_with_sqrt2_amplitude():
    K, eps = 6, 0.5
    p = Perturbation("frequency", K, eps, seed=3)
    codes = p.codes(np.arange(p.cycle))
    np.testing.assert_allclose(np.abs(codes).max(axis=0), np.sqrt(2) * eps / np.sqrt(K),
                               rtol=0.1)  # peaks of a sampled sine reach within 10 %
    spectrum = np.abs(np.fft.rfft(codes, axis=0))
    assert sorted(spectrum.argmax(axis=0)) == list(range(1, K + 1))
    assert not np.array_equal(spectrum.argmax(axis=0), np.arange(1, K + 1))  # shuffled


def test_frequency_phases_are_uniform_over_the_whole_turn():
    """At code 0 channel k is sqrt(2) rms sin(phi_k): with phases uniform on [0, 2 pi)
    half of the K values are negative (binomial, tolerance 5 standard deviations) and
    their mean square is rms^2 (2 sin^2 has variance 1/2: 5 standard errors)."""
    K = 400
    p = Perturbation("frequency", K, 1.0, seed=9)
    start = p.codes(np.array([0]))[0]
    assert abs((start < 0).sum() - K / 2) < 5 * np.sqrt(K / 4)
    assert abs((start ** 2).mean() / p.rms ** 2 - 1.0) < 5 * np.sqrt(1 / (2 * K))


def test_time_codes_visit_every_channel_once_per_sweep_with_amplitude_eps():
    K, eps = 9, 0.2
    p = Perturbation("time", K, eps, seed=4)
    codes = p.codes(np.arange(2 * K))
    assert np.all((codes != 0).sum(axis=1) == 1)
    np.testing.assert_allclose(np.abs(codes).sum(axis=1), eps)
    first = np.abs(codes[:K]).argmax(axis=1)
    assert sorted(first) == list(range(K)) and not np.array_equal(first, np.arange(K))
    np.testing.assert_array_equal(codes[K:], -codes[:K])


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_ternary_sparsity_and_rms(sparsity):
    K, eps, n = 50, 0.4, 4000
    codes = Perturbation("ternary", K, eps, seed=6, sparsity=sparsity).codes(np.arange(n))
    # zeros are Bernoulli(sparsity) over n*K entries: tolerance 5 standard errors
    zero = (codes == 0).mean()
    assert abs(zero - sparsity) < 5 * np.sqrt(sparsity * (1 - sparsity) / (n * K)) + 1e-12
    # mean square is exactly eps^2/K times (nonzero fraction)/(1 - sparsity)
    np.testing.assert_allclose((codes ** 2).mean(), eps ** 2 / K * (1 - zero) / (1 - sparsity))
    nonzero = codes[codes != 0]
    assert abs(np.sign(nonzero).mean()) < 5 / np.sqrt(len(nonzero))  # signs balanced


@pytest.mark.parametrize("kind", ("code", "ternary"))
def test_random_codes_average_to_the_identity(kind):
    """E[theta theta^T] = eps^2/K I: the empirical second moment over n codes has entries
    of standard deviation about (eps^2/K)/sqrt(n (1 - sparsity)) off the diagonal."""
    K, eps, n = 20, 1.0, 20000
    p = Perturbation(kind, K, eps, seed=8, sparsity=0.5)
    assert p.cycle == 0  # no period: orthogonal only on average
    codes = p.codes(np.arange(n))
    m = codes.T @ codes / n * K / eps ** 2
    off = m[~np.eye(K, dtype=bool)]
    assert np.abs(off).max() < 5 * np.sqrt(2 / n)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=5 * np.sqrt(2 / n))


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_chunking_and_hold(kind):
    K, tau_p = 12, 3
    a = Perturbation(kind, K, 0.1, seed=9)
    b = Perturbation(kind, K, 0.1, seed=9)
    whole = a.at_steps(5, 100, tau_p)
    parts = np.vstack([b.at_steps(5, 37, tau_p), b.at_steps(42, 63, tau_p)])
    np.testing.assert_array_equal(whole, parts)  # same seed, any chunking: same codes
    np.testing.assert_array_equal(whole, a.codes((5 + np.arange(100)) // tau_p))
    other = Perturbation(kind, K, 0.1, seed=10).at_steps(5, 100, tau_p)
    assert not np.array_equal(whole, other)
    # RMS per channel eps/sqrt(K): exact for the periodic kinds over whole cycles
    if kind in PERIODIC:
        cycle = a.codes(np.arange(a.cycle))
        np.testing.assert_allclose(np.sqrt((cycle ** 2).mean(axis=0)), 0.1 / np.sqrt(K))


def test_code_kernel_matches_twin_and_generic_path():
    key = crng.stream_key_np(11, 0)
    K, steps, tau_p, amp = 70, 40, 4, 0.3 / np.sqrt(70)
    out = np.empty((steps, K))
    rademacher_codes(key, 3, tau_p, amp, out)
    np.testing.assert_array_equal(out, rademacher_codes_np(key, 3, steps, tau_p, K, amp))
    p = Perturbation("code", K, 0.3, seed=11)
    np.testing.assert_array_equal(out, p.codes((3 + np.arange(steps)) // tau_p))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 0.3)  # eps is the L2 norm


@pytest.mark.parametrize("steps, K, tau_p", [(5, 13, 1), (7, 4097, 3), (40, 2048 + 64, 2)])
def test_code_correlation_is_the_column_sums_of_the_written_codes(steps, K, tau_p):
    """correlate_codes gives column_sums of amplitude_t * code_t bit for bit (tiles,
    whole and partial words, codes held over tau_p steps), from zero."""
    key, first_step = crng.stream_key_np(5, 0), 17
    codes = np.empty((steps, K))
    rademacher_codes(key, first_step, tau_p, 1.0, codes)
    amplitudes = np.random.default_rng(K).normal(size=steps) * 1e-3
    expected = np.empty(K)
    column_sums(amplitudes[:, None] * codes, expected)
    counters = (first_step + np.arange(steps)) // tau_p * K
    out = np.full(K, np.nan)
    correlate_codes(key, counters, amplitudes, out)
    np.testing.assert_array_equal(out, expected)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown perturbation"):
        Perturbation("gaussian", 3, 0.1, 0)
    with pytest.raises(ValueError, match="sparsity"):
        Perturbation("ternary", 3, 0.1, 0, sparsity=1.0)

"""The intrinsic node-noise sources against their laws: Gaussian mean and standard
deviation, Bernoulli's two values and the frequency of the upper one, fresh draws per
call; and the documented defaults (devices/noise.py). Tolerances are five standard
errors of the n = 200,000 samples."""
import numpy as np
import pytest

from devices.noise import BernoulliNoiseParams, GaussianNoiseParams

N = 200_000


def test_gaussian_noise_has_its_mean_and_standard_deviation():
    draws = GaussianNoiseParams(std=0.3, mean=0.2).build(4, np.random.default_rng(0)) \
        .sample(N // 4)
    assert draws.shape == (N // 4, 4)
    assert abs(draws.mean() - 0.2) < 5 * 0.3 / np.sqrt(N)
    assert draws.std() == pytest.approx(0.3, rel=5 / np.sqrt(2 * N))


def test_bernoulli_noise_takes_its_two_values_with_probability_p():
    source = BernoulliNoiseParams(amplitude=0.5, p=0.3, offset=-0.1).build(
        5, np.random.default_rng(1))
    draws = source.sample(N // 5)
    assert set(np.unique(draws)) == {-0.1, -0.1 + 0.5}
    ones = np.mean(draws > 0)
    assert abs(ones - 0.3) < 5 * np.sqrt(0.3 * 0.7 / N)
    assert not np.array_equal(source.sample(3), source.sample(3))   # fresh draws


def test_defaults_are_the_documented_ones():
    assert (GaussianNoiseParams().std, GaussianNoiseParams().mean) == (0.01, 0.0)
    b = BernoulliNoiseParams()
    assert (b.amplitude, b.p, b.offset) == (0.0125, 0.5, 0.0)

"""Helpers checked by hand: the bit parity behind Walsh codes (large codes included),
and the decorrelation rule's off-diagonal correlation and step (trainer/perturbations.py,
trainer/decorrelation.py)."""
import numpy as np
import pytest

from devsim import blas
from trainer.decorrelation import decorrelation_deltas, offdiagonal_correlation
from trainer.perturbations import Perturbation, _parity


def test_parity_of_64_bit_words_counts_their_set_bits():
    rng = np.random.default_rng(0)
    words = np.concatenate([rng.integers(0, 2 ** 63, 2000, dtype=np.uint64) * np.uint64(2)
                            + rng.integers(0, 2, 2000, dtype=np.uint64),
                            np.uint64(1) << np.arange(64, dtype=np.uint64)])
    expected = [bin(int(w)).count("1") % 2 for w in words]
    np.testing.assert_array_equal(_parity(words), expected)


def test_walsh_codes_of_many_channels_are_orthogonal_over_a_cycle():
    # K = 600 channels: order-1024 Hadamard rows, whose column indices need ten bits.
    p = Perturbation("walsh", 600, 1.0, seed=3)
    assert p.cycle == 1024
    codes = p.codes(np.arange(p.cycle)) * np.sqrt(600)
    np.testing.assert_array_equal(codes.T @ codes, 1024 * np.eye(600))


def test_offdiagonal_correlation_is_the_batch_mean_outer_product_without_diagonal():
    z = np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 2.0]])
    c = offdiagonal_correlation(z)
    expected = np.array([[0.0, -0.5, 3.0], [-0.5, 0.0, -1.0], [3.0, -1.0, 0.0]])
    np.testing.assert_allclose(c, expected, rtol=1e-15)


@pytest.mark.parametrize("kernel", [True, False], ids=["blas-kernel", "numpy"])
def test_decorrelation_step_and_layer_count(kernel, monkeypatch):
    """The compiled kernel on NumPy's BLAS, or NumPy where its entry points are not found
    (devsim.blas.AVAILABLE): -lr offdiag(<z z^T>) R either way."""
    monkeypatch.setattr(blas, "AVAILABLE", kernel)
    rng = np.random.default_rng(1)
    z = [rng.normal(size=(5, 3)), rng.normal(size=(5, 2))]
    r = [rng.normal(size=(3, 3)), rng.normal(size=(2, 2))]
    for delta, zl, rl in zip(decorrelation_deltas(z, r, 0.1), z, r):
        c = zl.T @ zl / 5
        np.fill_diagonal(c, 0.0)
        np.testing.assert_allclose(delta, -0.1 * c @ rl, rtol=1e-12)
    with pytest.raises(ValueError):
        decorrelation_deltas(z, r[:1], 0.1)      # one matrix per layer's input

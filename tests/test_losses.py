"""Per-probe costs and their gradients against closed forms (devsim/losses.py)."""
import numpy as np
import pytest

from devsim.losses import (LOSSES, cross_entropy, loss_function, loss_gradient, loss_rows,
                           mse)


def test_mse_by_hand():
    out = np.array([[1.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    y = np.array([[0.0, 2.0, 1.0], [0.5, -0.5, 0.5]])
    np.testing.assert_allclose(mse(out, y), [(1 + 0 + 1) / 3, (0 + 1 + 0) / 3], rtol=1e-15)


def test_cross_entropy_by_hand_and_shift_invariant():
    out = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])   # softmax (1/4, 3/4), (1/2, 1/2)
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cross_entropy(out, y), [np.log(4 / 3), np.log(2.0)],
                               rtol=1e-12)
    soft = np.array([[0.25, 0.75]])                          # soft targets weigh each term
    np.testing.assert_allclose(cross_entropy(out[:1], soft),
                               -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rtol=1e-12)


@pytest.mark.parametrize("top", [0, 1, 2])
def test_cross_entropy_of_huge_logits_wherever_the_largest_is(top):
    """Softmax is shifted by the row's largest logit, wherever it sits: logits of 1000
    would overflow exp() otherwise. Closed forms: -log softmax is 0 at the top logit
    (to double precision) and 1000 at the others."""
    out = np.zeros((3, 3))
    out[:, top] = 1000.0
    y = np.eye(3)
    want = np.where(np.arange(3) == top, 0.0, 1000.0)
    np.testing.assert_allclose(cross_entropy(out, y), want, rtol=1e-15, atol=1e-15)
    softmax = np.eye(3)[top]
    np.testing.assert_allclose(loss_gradient("cross_entropy", out, y),
                               np.tile(softmax, (3, 1)) - y, atol=1e-15)


def test_loss_rows_dispatches_by_the_losses_code():
    out = np.array([[1.0, 2.0, 0.0], [0.0, np.log(3.0), 0.0]])
    y = np.array([[0.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
    want = {"mse": [(1 + 0 + 1) / 3, (0 + (np.log(3.0) - 1) ** 2 + 0) / 3],
            "cross_entropy": [-(2 * np.log(np.exp(2) / (np.e + np.exp(2) + 1))
                                + np.log(1 / (np.e + np.exp(2) + 1))), np.log(5 / 3)]}
    for code, name in enumerate(LOSSES):
        costs = np.full(2, np.nan)
        loss_rows(code, out, y, costs)
        np.testing.assert_allclose(costs, want[name], rtol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_is_the_central_difference_of_the_loss(name):
    rng = np.random.default_rng(3)
    out, y = rng.normal(size=(4, 3)), rng.random((4, 3))
    if name == "cross_entropy":
        y = np.eye(3)[[0, 2, 1, 1]] * np.array([[1.0], [1.0], [2.0], [1.0]])  # a sum-2 row
    f, h = loss_function(name), 1e-6
    numeric = np.empty_like(out)
    for i in range(3):
        step = np.zeros(3)
        step[i] = h
        numeric[:, i] = (f(out + step, y) - f(out - step, y)) / (2 * h)
    np.testing.assert_allclose(loss_gradient(name, out, y), numeric, rtol=1e-6, atol=1e-9)
    assert loss_function(name) is {"mse": mse, "cross_entropy": cross_entropy}[name]

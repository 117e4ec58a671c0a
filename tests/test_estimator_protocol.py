"""The ask/tell protocol of trainer.base.Estimator and its local-gradient helper: the
order of calls it enforces, what an incomplete estimator raises, the synapse rule
dW = g^T x, db = sum g by hand (trainer/base.py)."""
import numpy as np
import pytest

from conftest import make_hardware
from devsim.hardware import Request
from trainer.base import Estimate, Estimator, Window, layer_gradient


class TwoRounds(Estimator):
    """Asks for a clean pass, then for the same rows again; the estimate is the sum of
    both passes' mean costs (a toy with a known answer)."""

    def rounds(self, window):
        first = yield Request(window.x, window.y)
        second = yield Request(window.x, window.y)
        return Estimate(np.zeros(3), float(first.costs.mean() + second.costs.mean()))

    def window_steps(self, window):
        return 2 * len(window.x)


def window(rows=4):
    rng = np.random.default_rng(0)
    return Window(rng.normal(size=(rows, 3)), rng.random((rows, 2)), np.ones(rows, bool))


def test_ask_tell_runs_each_round_in_order_then_gives_the_estimate():
    hw = make_hardware((3, 2))
    w = window()
    est = TwoRounds()
    est.start(w)
    with pytest.raises(RuntimeError, match="not all been told"):
        est.result()
    costs = []
    while (request := est.ask()) is not None:
        result = hw.run(request)
        costs.append(result.costs.mean())
        est.tell(result)
    assert len(costs) == 2 and est.result().cost == pytest.approx(sum(costs), rel=1e-15)
    assert est.ask() is None
    with pytest.raises(RuntimeError, match="without a request"):
        est.tell(result)


def test_an_estimator_without_its_rounds_or_step_count_says_so():
    with pytest.raises(NotImplementedError):
        Estimator().window_steps(window())
    with pytest.raises(NotImplementedError):
        Estimator().start(window())


def test_layer_gradient_is_node_signal_times_local_input_by_hand():
    chip = make_hardware((3, 2, 1))                          # nodes at offsets 0, 2, 3
    g = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]])       # 2 steps, 2 + 1 nodes
    x0 = np.array([[1.0, 0.0, 2.0], [3.0, 1.0, -1.0]])       # layer 0 input (3)
    x1 = np.array([[4.0, -2.0], [1.0, 1.0]])                 # layer 1 input (2)
    expected = np.concatenate([
        [1 * 1 + 0.5 * 3, 1 * 0 + 0.5 * 1, 1 * 2 + 0.5 * -1,
         2 * 1 + -1 * 3, 2 * 0 + -1 * 1, 2 * 2 + -1 * -1],
        [1.5, 1.0],
        [-1 * 4 + 2 * 1, -1 * -2 + 2 * 1],
        [1.0]])
    np.testing.assert_array_equal(layer_gradient(chip, g, [x0, x1]), expected)

"""The training loop writes nothing for a window whose cost, estimate or step is not
finite, whichever of them it is, and keeps the optimizer's state (trainer/loop.py)."""
import math

import numpy as np
import pytest

from conftest import lab, make_hardware
from devsim.hardware import Request
from trainer.base import Estimate, Estimator, Timescales
from trainer.loop import TrainingLoop
from trainer.optim import MomentumParams


class Scripted(Estimator):
    """Runs the window's probes, then reports the scripted cost and gradient."""

    def __init__(self, script):
        self.script = iter(script)

    def rounds(self, window):
        yield Request(window.x, window.y)
        cost, gradient = next(self.script)
        return Estimate(np.asarray(gradient, dtype=float), cost)

    def window_steps(self, window):
        return len(window.x)


@pytest.mark.parametrize("cost,gradient", [
    (math.nan, [1.0] * 11), (1.0, [math.nan] + [1.0] * 10), (math.inf, [1.0] * 11),
])
def test_a_non_finite_window_writes_nothing_and_keeps_the_optimizer_state(cost, gradient):
    hw = make_hardware((3, 2, 1))            # 3*2 + 2 + 2*1 + 1 = 11 parameters
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.random((6, 1))
    good = [0.1] * 11
    loop = TrainingLoop(hw, x, y, Scripted([(1.0, good), (cost, gradient), (1.0, good)]),
                        MomentumParams(lr=10.0, beta=0.5).build(), Timescales(tau_theta=2),
                        rng)
    first = loop.update()
    assert not first.skipped
    before, state = lab(hw).read_params(), loop.opt_state
    stats = loop.update()
    assert stats.skipped and math.isnan(stats.update_norm)
    np.testing.assert_array_equal(lab(hw).read_params(), before)
    assert loop.opt_state is state
    third = loop.update()                    # momentum continues from the first window
    np.testing.assert_allclose(third.update_norm, 10.0 * (0.5 * 0.1 + 0.1) * np.sqrt(11))


"""On-chip MGD equals the controller path step for step, and refuses what it cannot run."""
import numpy as np
import pytest

from conftest import Identity, Sigmoid, Tanh, make_hardware
from devsim.data import SampleStream
from devsim.insitu import OnChipMGD
from trainer.loop import Timescales, TrainingLoop
from trainer.mgd import MGD, MGDParams
from trainer.optim import sgd


def _data(n_in, n_out, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.random((n, n_out))


@pytest.mark.parametrize("target", ["nodes", "weights"])
@pytest.mark.parametrize("tau_x,tau_p,tau_theta", [(1, 1, 10), (3, 2, 7)])
def test_on_chip_engine_matches_controller_path(target, tau_x, tau_p, tau_theta):
    widths = (6, 5, 4, 3)
    acts = [Tanh(), Identity(), Sigmoid()]
    x, y = _data(6, 3)
    ctrl = make_hardware(widths, activations=acts, seed=3)
    chip = make_hardware(widths, activations=acts, seed=3)
    seed, windows = 1234, 6
    est = MGD(MGDParams(target=target, epsilon=0.05, tau_p=tau_p), ctrl, seed)
    loop = TrainingLoop(ctrl, x, y, est, sgd(0.5), Timescales(tau_x=tau_x, tau_theta=tau_theta),
                        np.random.default_rng(9))
    costs_ctrl = [loop.update().cost for _ in range(windows)]
    engine = OnChipMGD(chip, target=target, epsilon=0.05, tau_p=tau_p, tau_theta=tau_theta,
                       lr=0.5, seed=seed)
    stream = SampleStream(len(x), tau_x, np.random.default_rng(9))
    costs_chip = []
    for n in (2, 4):  # chunking does not matter
        idx, new = stream.next(n * tau_theta)
        costs_chip.extend(engine.train(x, y, idx, new))
    np.testing.assert_allclose(chip.read_params(), ctrl.read_params(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(costs_chip, costs_ctrl, rtol=1e-9)
    assert chip.steps == ctrl.steps


def test_unsupported_networks_are_refused_with_the_reason():
    from devices.crossbar import CrossbarParams
    from devsim.activations import Logistic
    hw = make_hardware((4, 3), loss="cross_entropy", device=CrossbarParams())
    with pytest.raises(ValueError, match="cross_entropy.*crossbar"):
        OnChipMGD(hw, target="nodes", epsilon=0.1, tau_p=1, tau_theta=10, lr=1.0, seed=0)
    hw = make_hardware((4, 3), activations=[Logistic()])
    with pytest.raises(ValueError, match="activation 'logistic'"):
        OnChipMGD(hw, target="weights", epsilon=0.1, tau_p=1, tau_theta=10, lr=1.0, seed=0)

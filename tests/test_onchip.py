"""The on-chip MGD executor equals the ask/tell loop window for window (to float
rounding), and refuses what it cannot run with the reasons."""
import numpy as np
import pytest

from conftest import Identity, Sigmoid, Tanh, build_estimator, lab, make_hardware
from devsim.data import SampleStream
from trainer.base import Timescales
from trainer.executors import Plain, select
from trainer.loop import TrainingLoop
from trainer.mgd import MGDParams
from trainer.onchip import OnChipMGD
from trainer.optim import adam, sgd


def _data(n_in, n_out, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.random((n, n_out))


def _loop(hw, x, y, params, optimizer, timescales, executor=None, seed=1234):
    est = build_estimator(params, hw, seed, tau_x=timescales.tau_x, tau_p=timescales.tau_p, tau_theta=timescales.tau_theta)
    if executor is not None:
        executor = executor(lab(hw), est)
    return TrainingLoop(hw, x, y, est, optimizer, timescales, np.random.default_rng(9),
                        executor=executor)


@pytest.mark.parametrize("target", ["nodes", "weights"])
@pytest.mark.parametrize("tau_x,tau_p,tau_theta", [(1, 1, 10), (3, 2, 7)])
def test_on_chip_sgd_windows_match_the_ask_tell_loop(target, tau_x, tau_p, tau_theta):
    widths = (6, 5, 4, 3)
    acts = [Tanh(), Identity(), Sigmoid()]
    x, y = _data(6, 3)
    ctrl = make_hardware(widths, activations=acts, seed=3)
    chip = make_hardware(widths, activations=acts, seed=3)
    scales = Timescales(tau_x=tau_x, tau_p=tau_p, tau_theta=tau_theta)
    params = MGDParams(target=target, epsilon=0.05)
    loop = _loop(ctrl, x, y, params, sgd(0.5), scales)
    costs_ctrl = [loop.update().cost for _ in range(6)]
    engine = OnChipMGD(lab(chip), build_estimator(params, chip, 1234, tau_x=tau_x, tau_p=tau_p, tau_theta=tau_theta))
    stream = SampleStream(len(x), tau_x, np.random.default_rng(9))
    costs_chip = []
    for n in (2, 4):  # chunking does not matter
        idx, new = stream.next(n * tau_theta)
        costs_chip.extend(engine.train(x, y, idx, new, tau_theta, 0.5))
    np.testing.assert_allclose(lab(chip).read_params(), lab(ctrl).read_params(), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(costs_chip, costs_ctrl, rtol=1e-9)
    assert chip.steps == ctrl.steps


@pytest.mark.parametrize("target", ["nodes", "weights"])
def test_on_chip_executor_gives_the_loop_estimate_under_any_optimizer(target):
    """The executor only moves the window into the engine: same estimates, costs, step
    counts and updates through any optimizer."""
    x, y = _data(5, 3, seed=1)
    hws = [make_hardware((5, 4, 3), seed=2) for _ in range(2)]
    scales = Timescales(tau_x=2, tau_theta=9)
    params = MGDParams(target=target, epsilon=0.05)
    loops = [_loop(hw, x, y, params, adam(0.01), scales, executor, seed=77)
             for hw, executor in zip(hws, (None, OnChipMGD))]
    assert isinstance(loops[0].executor, Plain) and isinstance(loops[1].executor, OnChipMGD)
    for _ in range(5):
        a, b = (loop.update() for loop in loops)
        assert a.cost == pytest.approx(b.cost, rel=1e-12)
        assert a.estimate_norm == pytest.approx(b.estimate_norm, rel=1e-9)
    np.testing.assert_allclose(lab(hws[1]).read_params(), lab(hws[0]).read_params(), rtol=1e-9)
    assert hws[0].steps == hws[1].steps


def test_unsupported_estimators_and_chips_are_refused_with_the_reason():
    from devices.crossbar import CrossbarParams
    from devsim.activations import Logistic
    hw = make_hardware((4, 3), loss="cross_entropy", device=CrossbarParams())
    est = build_estimator(MGDParams(), hw, 0)
    with pytest.raises(ValueError, match="cross_entropy.*crossbar"):
        OnChipMGD(lab(hw), est)
    assert isinstance(select(lab(hw), est), Plain)
    hw = make_hardware((4, 3), activations=[Logistic()])
    with pytest.raises(ValueError, match="activation 'logistic'"):
        OnChipMGD(lab(hw), build_estimator(MGDParams(target="weights"), hw, 0))
    hw = make_hardware((4, 3))
    est = build_estimator(MGDParams(perturbation="walsh"), hw, 0)
    assert OnChipMGD.refusals(lab(hw), est) == ["perturbation 'walsh' (needs 'code')"]
    assert isinstance(select(lab(hw), est), Plain)
    est = build_estimator(MGDParams(), hw, 0)
    assert isinstance(select(lab(hw), est), OnChipMGD)
    assert isinstance(select(lab(hw), est, "plain"), Plain)

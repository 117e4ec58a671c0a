"""On-chip MGD equals the controller path step for step, and refuses what it cannot run."""
import numpy as np
import pytest

from conftest import Identity, Sigmoid, Tanh, make_hardware
from devsim.data import SampleStream
from devsim.insitu import OnChipMGD
from trainer.loop import Timescales, TrainingLoop
from trainer.mgd import MGD, MGDParams
from trainer.optim import adam, sgd


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
    engine = OnChipMGD(chip, target=target, epsilon=0.05, tau_p=tau_p, seed=seed)
    stream = SampleStream(len(x), tau_x, np.random.default_rng(9))
    costs_chip = []
    for n in (2, 4):  # chunking does not matter
        idx, new = stream.next(n * tau_theta)
        costs_chip.extend(engine.train(x, y, idx, new, tau_theta, 0.5))
    np.testing.assert_allclose(chip.read_params(), ctrl.read_params(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(costs_chip, costs_ctrl, rtol=1e-9)
    assert chip.steps == ctrl.steps


def test_unsupported_networks_are_refused_with_the_reason():
    from devices.crossbar import CrossbarParams
    from devsim.activations import Logistic
    hw = make_hardware((4, 3), loss="cross_entropy", device=CrossbarParams())
    with pytest.raises(ValueError, match="cross_entropy.*crossbar"):
        OnChipMGD(hw, target="nodes", epsilon=0.1, tau_p=1, seed=0)
    hw = make_hardware((4, 3), activations=[Logistic()])
    with pytest.raises(ValueError, match="activation 'logistic'"):
        OnChipMGD(hw, target="weights", epsilon=0.1, tau_p=1, seed=0)


@pytest.mark.parametrize("target", ["nodes", "weights"])
def test_on_chip_estimator_option_gives_the_controller_estimate(target):
    """``on_chip: true`` only moves the window into the engine: same estimates, costs,
    step counts and updates through any optimizer."""
    x, y = _data(5, 3, seed=1)
    hws = [make_hardware((5, 4, 3), seed=2) for _ in range(2)]
    loops = [TrainingLoop(hw, x, y, MGD(MGDParams(target=target, epsilon=0.05,
                                                  on_chip=on), hw, 77),
                          adam(0.01), Timescales(tau_x=2, tau_theta=9), np.random.default_rng(4))
             for hw, on in zip(hws, (False, True))]
    for _ in range(5):
        a, b = (loop.update() for loop in loops)
        assert a.cost == pytest.approx(b.cost, rel=1e-12)
        assert a.estimate_norm == pytest.approx(b.estimate_norm, rel=1e-9)
    np.testing.assert_allclose(hws[1].read_params(), hws[0].read_params(), rtol=1e-9)
    assert hws[0].steps == hws[1].steps


def test_on_chip_option_rejects_what_the_engine_lacks():
    from devsim.params import ParamError
    with pytest.raises(ParamError, match="on_chip: the on-chip engine needs perturbation"):
        MGDParams(on_chip=True, perturbation="walsh")
    hw = make_hardware((4, 3), loss="cross_entropy")
    with pytest.raises(ParamError, match="on_chip: on-chip MGD does not support loss"):
        MGDParams(on_chip=True).build(hw, np.random.default_rng(0))


def test_fill_signs_equals_counter_stream_at_any_offset():
    """Whole-word and bit-by-bit parts of fill_signs give crng.sign_np's signs exactly."""
    from devsim import crng
    from devsim.insitu import fill_signs
    key = np.uint64(0xC0FFEE)
    for first, n in [(0, 0), (0, 64), (5, 3), (60, 10), (63, 130), (128 * 7 + 1, 2410)]:
        out = np.full(n, np.nan)
        fill_signs(key, first, out)
        np.testing.assert_array_equal(out, crng.sign_np(key, np.arange(first, first + n)))

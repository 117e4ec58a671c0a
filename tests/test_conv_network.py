"""Convolutional networks under every estimator: each of devsim's estimators, built and run
as for a dense network, forms estimates on a small CNN (conv2d, pooling, depthwise,
flatten, dense) whose mean over windows points along the exact gradient of the window's
mean cost, and costs the hardware steps it announces. Float estimators run on the ideal
device (smooth tanh layers), QZO on the int8 MCU after post-training quantization."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import build_estimator, chip_of, estimate, lab
from contracts import origin, table
from devsim.config import from_data
from devsim.network import Network, NetworkParams
from devsim.quantize import quantize_network
from devsim.training import EstimatorParams
from trainer.base import Window

ESTIMATORS = {  # row id: (estimator config, windows averaged)
    "mgd-nodes": ({"type": "mgd", "target": "nodes", "epsilon": 0.01}, 400),
    "mgd-weights": ({"type": "mgd", "target": "weights", "epsilon": 0.01}, 400),
    "np": ({"type": "np", "sigma": 0.01}, 400),
    "anp": ({"type": "anp", "sigma": 0.01}, 400),
    "inp": ({"type": "inp", "sigma": 0.01}, 400),
    "wp": ({"type": "wp", "sigma": 0.01}, 400),
    "backprop": ({"type": "backprop"}, 1),
    "qzo-weights": ({"type": "qzo", "queries": 20}, 30),
    "qzo-nodes": ({"type": "qzo", "queries": 20, "node_from": 0}, 30),
    "qzo-sparse": ({"type": "qzo", "queries": 20, "node_from": 2, "train_layers": [2, 4]}, 30),
}
ROWS = table("estimators on a CNN", [pytest.param(*row, id=name)
                                     for name, row in ESTIMATORS.items()])


def test_every_estimator_of_devsim_has_a_row():
    own = {kind for kind, cls in EstimatorParams.members().items() if origin(cls) == "devsim"}
    assert own == {config["type"] for config, _ in ESTIMATORS.values()}


def cnn_chip(integer: bool, seed=0):
    """6x6 images -> conv2d 3x3x3 -> 2x2 average pool -> depthwise 3x3 (x2) -> flatten ->
    4 outputs, cross-entropy; tanh layers (ReLU on the MCU), weights moved off their
    initial values. Returns the chip, 16 inputs and one-hot targets."""
    act = "relu" if integer else "tanh"
    params = from_data(NetworkParams, {
        "input_shape": [6, 6, 1], "loss": "cross_entropy", "layers": [
            {"type": "conv2d", "channels": 3, "activation": act},
            {"type": "avg_pool"},
            {"type": "depthwise_conv2d", "depth_multiplier": 2, "activation": act},
            "flatten",
            {"units": 4, "activation": "identity"}]})
    rng = np.random.default_rng(seed)
    net = Network(params, 36, rng, rng)
    net.write(rng.normal(0.0, 0.05, net.n_params))
    x = rng.uniform(0.0, 1.0, (16, 36))
    y = np.eye(4)[rng.integers(0, 4, 16)]
    if integer:
        net = quantize_network(net, x)
    return chip_of(net, "cross_entropy"), x, y


@pytest.mark.parametrize("config, windows", ROWS)
def test_estimates_on_a_cnn_point_along_the_gradient(config, windows):
    params = from_data(EstimatorParams, config)
    chip, x, y = cnn_chip(integer=config["type"] == "qzo")
    bench = lab(chip)
    estimator = build_estimator(params, chip, seed=1,
                                bench=bench if params.outside_the_rule else None)
    window = Window(x, y, np.ones(len(x), dtype=bool))
    exact = bench.reference().gradient(bench.read_params(), x, y)
    before, total = chip.steps, 0.0
    for _ in range(windows):
        total = total + estimate(estimator, chip, window).gradient
    assert chip.steps - before == windows * estimator.window_steps(window)
    cosine = total @ exact / (np.linalg.norm(total) * np.linalg.norm(exact))
    assert cosine > 0.5, cosine
    frozen = [i for i, n in enumerate(np.diff(chip.param_offsets))
              if n and i not in config.get("train_layers", range(5))]
    for i in frozen:  # sparse training leaves the other layers alone
        assert not total[chip.param_offsets[i]:chip.param_offsets[i + 1]].any()


def test_the_compiled_executors_leave_convolutions_to_the_ask_tell_loop():
    from trainer.compiled import EXECUTORS
    from trainer.executors import Plain, select
    from trainer.optim import SGDParams
    chip, _, _ = cnn_chip(integer=False)
    for kind in ("mgd", "np"):
        estimator = build_estimator(from_data(EstimatorParams, {"type": kind}), chip)
        assert type(select(lab(chip), estimator, SGDParams())) is Plain
        assert all("layers that are not all exact float arrays with a bias (the ideal "
                   "device)" in e.refusals(lab(chip), estimator, SGDParams())
                   for e in EXECUTORS if isinstance(estimator, e.estimator_type))

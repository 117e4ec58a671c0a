"""Checkpoints: a pickled run state continues exactly like the original, for every
kind of chip (device views, generators, noise states, optimizer and stream states)."""
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from devsim.runner import build, load_config

ROOT = Path(__file__).parents[1]

CASES = [
    ("quickstart", []),
    ("quickstart", ["network.device.preset=crossbar_reram", "train.estimator.epsilon=1.0"]),
    ("mcu_qzo", []),
    ("np_digits", []),
    ("mtj_danp_digits", []),
    ("mtj_pbit_mgd", []),
    ("mgd_analog", []),
]


@pytest.mark.parametrize("name,overrides", CASES, ids=[c[0] + ("+" + c[1][0] if c[1] else "") for c in CASES])
def test_restored_state_continues_identically(name, overrides):
    built = build(load_config(ROOT / "configs" / f"{name}.yaml", overrides))
    for _ in range(3):
        built.loop.update()
    copy = pickle.loads(cloudpickle.dumps(built))
    for _ in range(5):
        a, b = built.loop.update(), copy.loop.update()
        assert a.cost == b.cost
        np.testing.assert_array_equal(built.bench.read_params(), copy.bench.read_params())
    assert built.hardware.steps == copy.hardware.steps

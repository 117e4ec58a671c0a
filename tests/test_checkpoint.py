"""Checkpoints: the saved training state, restored onto a run rebuilt from its config,
continues exactly like the original, for every kind of chip (device states, generators,
noise states, optimizer and stream states); the file holds no data set and is refused
when written for another config or version."""
from pathlib import Path

import numpy as np
import pytest

from devsim import checkpoint
from devsim.config import dump
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


def _holds_rows_of(obj, data: np.ndarray) -> bool:
    """Whether any array reachable from ``obj`` (through objects and containers, not
    through functions' or modules' globals) has the data set's rows."""
    import gc
    import types
    skip = (str, bytes, int, float, type, types.ModuleType, types.FunctionType,
            types.BuiltinFunctionType)
    seen, todo = set(), [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, skip):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.ndim == 2 and item.shape[0] >= len(data) and item.shape[1] == data.shape[1]:
                return True
            continue
        todo.extend(gc.get_referents(item))
    return False


@pytest.mark.parametrize("name,overrides", CASES,
                         ids=[c[0] + ("+" + c[1][0] if c[1] else "") for c in CASES])
def test_restored_state_continues_identically(name, overrides, tmp_path):
    config = load_config(ROOT / "configs" / f"{name}.yaml", overrides)
    built = build(config)
    for _ in range(3):
        built.loop.update()
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, dump(config), checkpoint.capture(built), {"note": 1}, {"scalars": 7})
    training, bookkeeping, rows = checkpoint.load(path, dump(config))
    assert not _holds_rows_of(training, built.data.x_train)  # state, not the data set
    assert bookkeeping == {"note": 1} and rows == {"scalars": 7}
    copy = build(config, restore=training)
    for _ in range(5):
        a, b = built.loop.update(), copy.loop.update()
        assert a.cost == b.cost
        np.testing.assert_array_equal(built.bench.read_params(), copy.bench.read_params())
    assert built.hardware.steps == copy.hardware.steps


def test_a_checkpoint_for_another_config_or_version_is_refused(tmp_path):
    config = load_config(ROOT / "configs" / "quickstart.yaml")
    built = build(config)
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, dump(config), checkpoint.capture(built), None, {})
    other = load_config(ROOT / "configs" / "quickstart.yaml", ["train.optimizer.lr=1.0"])
    with pytest.raises(checkpoint.CheckpointMismatch, match="config differs"):
        checkpoint.load(path, dump(other))
    import pickle
    path.write_bytes(pickle.dumps({"version": 1}))
    with pytest.raises(checkpoint.CheckpointMismatch, match="version 1, this devsim reads "
                                                            f"version {checkpoint.VERSION}"):
        checkpoint.load(path, dump(config))

"""The devsim bridge of the joint graphical lasso: conditions, activity records,
``devsim activity`` and ``devsim analyse`` end to end."""
import dataclasses
import json
import typing
from pathlib import Path

import h5py
import numpy as np
import pytest

from devsim.analysis.activity import ConditionParams, FaultParams, fault_delta
from devsim.analysis.records import ActivityRecord, read_activity, write_activity
from devsim.cli import main
from devsim.config import ConfigError, loads
from devsim.params import invalid_values
from devsim.trace import TraceError

ROOT = Path(__file__).parents[1]
SMALL = ["train.steps=30000", "train.eval_every=30000", "network.layers[0].units=8"]
CONDITION = """name: two_drifted
faults:
  - {effect: drift, layer: 0, neurons: [2, 5], factor: 0.2}
"""


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    out = tmp_path_factory.mktemp("trace") / "small.h5"
    args = ["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(out), "-q"]
    for s in SMALL:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_condition_file_loads_and_every_invalid_value_is_refused_with_its_key_path():
    condition = loads(CONDITION, ConditionParams, source="c.yaml")
    assert condition.faults[0].neurons == (2, 5) and condition.faults[0].factor == 0.2
    hints = typing.get_type_hints(FaultParams)
    for f in dataclasses.fields(FaultParams):
        for value, why in invalid_values(f, hints[f.name]):
            text = json.dumps({"faults": [{f.name: value}]})
            with pytest.raises(ConfigError) as info:
                loads(text, ConditionParams, source="c.yaml")
            assert f"faults[0].{f.name}" in str(info.value), (f.name, value, why)


def test_fault_delta_by_hand():
    shapes, offsets = ((3, 2), (2, 3)), np.array([0, 9, 17])
    params = np.arange(1.0, 18.0)
    condition = loads("""faults:
      - {effect: drift, layer: 0, neurons: [1], factor: 0.5}
      - {effect: bias, layer: 1, neurons: [0], offset: 0.1}
      - {effect: stuck, layer: 1, neurons: [1], fraction: 1.0, value: 0.25}
    """, ConditionParams)
    delta = fault_delta(condition, params, shapes, offsets)
    expected = np.zeros(17)
    expected[[2, 3, 7]] = -0.5 * params[[2, 3, 7]]  # W0[1, :] and b0[1]
    expected[[9, 10, 11, 15]] = 0.1                  # W1[0, :] and b1[0]
    expected[[12, 13, 14, 16]] = 0.25 - params[[12, 13, 14, 16]]
    np.testing.assert_array_equal(delta, expected)
    half = loads("faults: [{effect: stuck, layer: 0, neurons: [0, 1, 2], fraction: 0.5}]",
                 ConditionParams)
    d = fault_delta(half, params, shapes, offsets)
    stuck = np.flatnonzero(d)
    np.testing.assert_array_equal(d[stuck] + params[stuck], 0.0)
    assert 0 < len(stuck) < 9
    bad = loads("faults: [{layer: 0, neurons: [3]}, {layer: 2, neurons: [0]}]", ConditionParams)
    with pytest.raises(ConfigError) as info:
        fault_delta(bad, params, shapes, offsets, "c.yaml")
    assert info.value.messages == [
        "c.yaml: faults[0].neurons[0]: must be < 3 (layer 0's neurons), got 3",
        "c.yaml: faults[1].layer: must be < 2 (the network's layers), got 2"]


def test_activity_record_round_trip(tmp_path):
    record = ActivityRecord(np.arange(12.0).reshape(4, 3), np.array([0, 0, 1]),
                            np.array([0, 1, 0]), {"condition": "fresh", "chip_seed": 3})
    back = read_activity(write_activity(tmp_path / "a.h5", record))
    np.testing.assert_array_equal(back.activity, record.activity)
    assert back.names == ["L0.0", "L0.1", "L1.0"] and back.condition == "fresh"
    assert back.attrs["chip_seed"] == 3 and not (tmp_path / "a.h5.partial").exists()
    with h5py.File(tmp_path / "a.h5", "a") as f:
        del f["neuron"]
        f["neuron"] = np.arange(4)
    with pytest.raises(TraceError, match="shape \\(4, 3\\) does not match its 3 layer and 4"):
        read_activity(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "a") as f:
        del f["layer"]
    with pytest.raises(TraceError, match="activity record without layer$"):
        read_activity(tmp_path / "a.h5")


def test_activity_and_analyse_find_the_drifted_neurons(trace, tmp_path, capsys):
    condition = tmp_path / "c.yaml"
    condition.write_text(CONDITION)
    fresh, faulty = tmp_path / "fresh.h5", tmp_path / "faulty.h5"
    assert main(["activity", str(trace), "--condition", str(condition), "--fresh-out",
                 str(fresh), "--out", str(faulty)]) == 0
    assert capsys.readouterr().out.count("1797 inputs x 18 nodes") == 2
    a, b = read_activity(fresh), read_activity(faulty)
    assert (a.condition, b.condition) == ("fresh", "two_drifted")
    # ideal devices: the other hidden neurons are untouched bit for bit, the drifted
    # ones scaled with their bias, the outputs (downstream) changed
    hidden = 8
    same = [j for j in range(hidden) if j not in (2, 5)]
    np.testing.assert_array_equal(a.activity[:, same], b.activity[:, same])
    drifted = a.activity[:, [2, 5]]
    np.testing.assert_allclose(b.activity[:, [2, 5]], 0.2 * drifted, rtol=0,
                               atol=1e-12 * np.abs(drifted).max())
    assert not np.allclose(a.activity[:, hidden:], b.activity[:, hidden:])
    png = tmp_path / "diff.png"
    assert main(["analyse", str(fresh), str(faulty), "--json", "--png", str(png)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {row["node"] for row in info["ranking"][:2]} == {"L0.2", "L0.5"}
    assert info["converged"] and info["criterion"] == "ebic"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyse", str(fresh), str(faulty), "--method", "fused", "--lambda2", "0.05",
                 "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fused:") and "lambda2 0.05 per sample;" in out


def test_samples_and_inputs_choose_the_rows(trace, tmp_path, capsys):
    out = tmp_path / "a.h5"
    assert main(["activity", str(trace), "--out", str(out), "--inputs", "test",
                 "--samples", "100", "--sample-seed", "4"]) == 0
    record = read_activity(out)
    assert record.activity.shape == (100, 18) and record.attrs["inputs"] == "test"
    assert record.condition == "fresh"


def _different_network(tmp_path):
    record = ActivityRecord(np.random.default_rng(0).standard_normal((50, 3)),
                            np.zeros(3, int), np.arange(3), {"condition": "x"})
    return write_activity(tmp_path / "other.h5", record)


@pytest.mark.parametrize("case,message", [
    ("no_condition", "--fresh-out records the chip before a condition's faults"),
    ("bad_neuron", "c.yaml: faults[0].neurons[0]: must be < 8 (layer 0's neurons), got 9"),
    ("noisy", "noisy pass requested but network.node_noise is not set"),
    ("too_many", "samples: must be <= 449 (the test inputs), got 500"),
    ("trace_as_record", "not an activity record but a run trace"),
    ("different_nodes", "the two records hold different nodes"),
    ("missing", "missing.h5: no such file"),
])
def test_bad_input_exits_2_with_one_line(case, message, trace, tmp_path, capsys):
    condition = tmp_path / "c.yaml"
    condition.write_text("faults: [{layer: 0, neurons: [9]}]")
    out = str(tmp_path / "x.h5")
    args = {"no_condition": ["activity", str(trace), "--out", out, "--fresh-out", out],
            "bad_neuron": ["activity", str(trace), "--out", out, "--condition", str(condition)],
            "noisy": ["activity", str(trace), "--out", out, "--noisy"],
            "too_many": ["activity", str(trace), "--out", out, "--inputs", "test",
                         "--samples", "500"],
            "trace_as_record": ["analyse", str(trace), str(trace)],
            "missing": ["activity", str(tmp_path / "missing.h5"), "--out", out]}.get(case)
    if case == "different_nodes":
        assert main(["activity", str(trace), "--out", out]) == 0
        args = ["analyse", out, str(_different_network(tmp_path))]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("devsim: error: ") and message in err and "\n" not in err
    if case != "different_nodes":
        assert not Path(out).exists()

"""Time and energy of learning: the trace's meter columns are the sums of the per-event
figures of the devices (checked against counts made here from the run's shapes and
clocks), `devsim inspect` reports them and what reaching the target cost, and `devsim
plot` puts them on the horizontal axis."""
import json
import math

import numpy as np
import pytest
import yaml

from devsim import read_trace
from devsim.cli import main

MVM_S, CELL_J, ADC_J, PULSE_S, PULSE_J = 3e-7, 2e-15, 5e-12, 4e-8, 7e-12
TILE_ROWS, TAU_THETA, STEPS, LOG_EVERY = 4, 50, 1500, 250

CONFIG = f"""\
name: costs
seed: 3
data: {{type: teacher, inputs: 10, outputs: 3, classes: true, samples: 600}}
network:
  device:
    type: crossbar
    mapping: differential
    tile_rows: {TILE_ROWS}
    prog_noise: 0.01
    mvm_time_s: {MVM_S}
    cell_read_energy_j: {CELL_J}
    adc_energy_j: {ADC_J}
    pulse_time_s: {PULSE_S}
    pulse_energy_j: {PULSE_J}
  loss: mse
  layers:
    - {{units: 6, activation: sigmoid}}
    - {{units: 3, activation: sigmoid}}
train:
  estimator: {{type: mgd, target: nodes, epsilon: 0.1}}
  optimizer: {{type: sgd, lr: 1.0}}
  timescales: {{tau_x: 1, tau_theta: {TAU_THETA}}}
  steps: {STEPS}
  eval_every: 500
  eval_train_samples: 0
  target_accuracy: 0.5
trace: {{log_every: {LOG_EVERY}}}
"""


def expected_meters(step: int) -> dict:
    """Reads, pulses, seconds and joules after ``step`` hardware steps, counted from the
    network's shapes: every step reads each layer once; an MGD update window (discrete
    mode) runs tau_theta perturbed probes and an unperturbed baseline for each sample
    presented (tau_x = 1: tau_theta of them), then a program-and-verify write of every
    weight and bias (the teacher's Gaussian inputs leave no estimate exactly zero), one
    pulse on each device of its differential pair; rows are written one after another,
    the devices of a row at once."""
    shapes = [(6, 10), (3, 6)]  # (n_out, n_in)
    writes = step // (2 * TAU_THETA)
    reads = pulses = seconds = joules = 0.0
    for n_out, n_in in shapes:
        rows = n_in + 1  # the bias row
        cells = rows * 2 * n_out
        conversions = n_out * math.ceil(rows / TILE_ROWS)
        layer_pulses = writes * 2 * n_out * rows
        reads += step
        pulses += layer_pulses
        seconds += step * MVM_S + writes * 2 * rows * PULSE_S
        joules += step * (cells * CELL_J + conversions * ADC_J) + layer_pulses * PULSE_J
    return {"reads": reads, "pulses": pulses, "hardware_time_s": seconds, "energy_j": joules}


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("costs")
    (folder / "costs.yaml").write_text(CONFIG)
    out = folder / "costs.h5"
    assert main(["run", str(folder / "costs.yaml"), "--out", str(out), "-q"]) == 0
    return out


def test_meter_columns_are_the_sums_of_the_per_event_figures(trace_path):
    trace = read_trace(trace_path)
    for table in (trace.scalars, trace.evals):
        assert len(table["step"]) >= 4
        for i, step in enumerate(table["step"]):
            for column, value in expected_meters(int(step)).items():
                assert table[column][i] == pytest.approx(value, rel=1e-12, abs=0), (column, step)
    total = trace.scalars["energy_j"][-1]
    assert trace.summary["device"]["energy_j"] == pytest.approx(total, rel=1e-12, abs=0)


def test_inspect_reports_totals_and_the_cost_of_reaching_the_target(trace_path, capsys):
    trace = read_trace(trace_path)
    accuracy, steps = trace.evals["test_accuracy"], trace.evals["step"]
    reached = float(accuracy[-1])
    target = reached - 1e-9 if (accuracy < reached).any() else reached
    assert main(["inspect", str(trace_path), "--json", "--target", str(target)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device"] == pytest.approx(expected_meters(STEPS), rel=1e-12, abs=0)
    below = np.flatnonzero(accuracy < target)
    at = int(steps[below[-1]]) if len(below) else 0
    cost = info["to_target"]
    assert cost["reached"] and cost["steps"] == at
    for column, value in expected_meters(at).items():
        assert cost[column] == pytest.approx(value, rel=1e-12, abs=0)
    assert main(["inspect", str(trace_path), "--target", "1.0"]) == 0
    text = capsys.readouterr().out
    assert f"device     {STEPS * 2:,} reads, {expected_meters(STEPS)['pulses']:,.0f} pulses" in text
    assert accuracy[-1] < 1.0 and "to target  test accuracy 1: never reached" in text


def test_plot_against_energy_and_hardware_time(trace_path, tmp_path, capsys):
    for axis in ("energy", "hardware_time"):
        png = tmp_path / f"{axis}.png"
        assert main(["plot", str(trace_path), "--out", str(png), "--x", axis]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_against_energy_of_a_chip_without_figures_is_a_one_line_error(tmp_path, capsys):
    config = yaml.safe_load(CONFIG)
    config["network"]["device"] = {"type": "ideal"}
    config["train"]["steps"] = 200
    (tmp_path / "ideal.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "ideal.h5"
    assert main(["run", str(tmp_path / "ideal.yaml"), "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["plot", str(out), "--out", str(tmp_path / "e.png"), "--x", "energy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"devsim: error: {out}: energy (J) is 0 throughout: the chip's device "
                   f"models give no energy figures")
    assert not (tmp_path / "e.png").exists()

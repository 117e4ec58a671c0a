"""Accuracy after drift (devsim evaluate): against a closed form of the drifted network,
seeded repeats, the trained parameters of an interrupted run, and bad input."""
import csv

import h5py
import numpy as np
import pytest
import yaml

from devsim import read_trace
from devsim.cli import main
from devsim.config import ConfigError
from devsim.drift import evaluate_drift, parse_times
from devsim.losses import loss_function
from devsim.rng import stream

NU, T0 = 0.05, 20.0
CONFIG = f"""\
name: drifting
seed: 2
data: {{type: teacher, inputs: 10, outputs: 3, classes: true, samples: 400}}
network:
  device: {{type: crossbar, g_min: 0.0, w_max: 4.0, drift_nu: {NU}, drift_t0_s: {T0}}}
  loss: mse
  layers:
    - {{units: 6, activation: sigmoid}}
    - {{units: 3, activation: sigmoid}}
train:
  estimator: {{type: mgd, target: nodes, epsilon: 0.1}}
  optimizer: {{type: sgd, lr: 2.0}}
  steps: 2000
  eval_every: 1000
  eval_train_samples: 0
trace: {{log_every: 1000}}
"""


def _train(folder, text=CONFIG, name="run"):
    (folder / f"{name}.yaml").write_text(text)
    out = folder / f"{name}.h5"
    assert main(["run", str(folder / f"{name}.yaml"), "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("drift"))


def test_times_read_with_units():
    assert parse_times("1s,2min, 1h,1d,1w,1y,0.5,1e3s") == [
        ("1s", 1.0), ("2min", 120.0), ("1h", 3600.0), ("1d", 86400.0), ("1w", 604800.0),
        ("1y", 31557600.0), ("0.5", 0.5), ("1e3s", 1000.0)]
    for text, message in [("1x", "--at: unknown time unit 'x' in '1x'; use s, min, h, d, w, y"),
                          ("1h,", "--at: cannot read a time in ''"),
                          ("0s", "--at: times must be > 0, got '0s'")]:
        with pytest.raises(ConfigError) as err:
            parse_times(text)
        assert err.value.messages[0].startswith(message)


def _reference(trace, factor, params=None):
    """Cost and accuracy of the trained network (``params``, default the trace's last
    snapshot) with every pre-activation scaled by the drift factor (conductances
    G (t/t0)^-nu, the same nu everywhere, bias row included), in plain NumPy."""
    config = load_config_from(trace)
    data = config.data.load(stream(config.seed, "data"))
    params = trace.snapshots["params"][-1] if params is None else params
    h, start = data.x_test, 0
    for n_out, n_in in [(6, 10), (3, 6)]:
        w = params[start:start + n_out * n_in].reshape(n_out, n_in)
        b = params[start + n_out * n_in:start + n_out * n_in + n_out]
        start += n_out * n_in + n_out
        h = 1.0 / (1.0 + np.exp(-factor * (h @ w.T + b)))
    cost = float(loss_function("mse")(h, data.y_test).mean())
    return cost, float((h.argmax(axis=1) == data.labels_test).mean())


def load_config_from(trace):
    from devsim.config import loads
    from devsim.runconfig import RunConfig
    return loads(trace.config_yaml, RunConfig)


def test_drift_and_its_compensation_match_the_closed_form(drifting):
    trace = read_trace(drifting)
    times = parse_times("1s,1h,1y")
    off = evaluate_drift(trace, times, compensation=False, repeats=2)
    on = evaluate_drift(trace, times, compensation=True, repeats=2)
    assert (off.compensation, on.compensation) == ("off", "on")
    for j, (_, t) in enumerate(times):
        factor = ((t + T0) / T0) ** -NU
        cost, accuracy = _reference(trace, factor)
        np.testing.assert_allclose(off.cost[:, j], cost, rtol=1e-9)
        np.testing.assert_array_equal(off.accuracy[:, j], accuracy)
        cost, accuracy = _reference(trace, 1.0)  # compensated: as programmed
        np.testing.assert_allclose(on.cost[:, j], cost, rtol=1e-9)
        np.testing.assert_array_equal(on.accuracy[:, j], accuracy)
    assert off.cost[0, -1] > off.cost[0, 0]  # a year of drift is not nothing here


def test_repeats_draw_their_own_seeded_streams(tmp_path):
    noisy = CONFIG.replace("drift_t0_s: 20.0}", "drift_t0_s: 20.0, prog_noise: 0.05, "
                           "read_noise: 0.02, drift_nu_dtod: 0.02}")
    trace = read_trace(_train(tmp_path, noisy))
    three = evaluate_drift(trace, "1s,1d", repeats=3, seed=7)
    again = evaluate_drift(trace, "1s,1d", repeats=2, seed=7)
    other = evaluate_drift(trace, "1s,1d", repeats=2, seed=8)
    np.testing.assert_array_equal(three.cost[:2], again.cost)  # repeat r is its own stream
    assert len(np.unique(three.cost[:, 0])) == 3  # fresh programming noise per repeat
    assert not np.array_equal(again.cost, other.cost)
    assert three.seed == 7 and evaluate_drift(trace, "1s", repeats=1).seed == 2


def test_cli_writes_table_csv_and_png_and_keeps_what_is_there(drifting, tmp_path, capsys):
    prefix = tmp_path / "eval"
    args = ["evaluate", str(drifting), "--at", "1s,1h,1d,1y", "--repeats", "2",
            "--compensation", "off", "--out", str(prefix)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 repeats" in out and "drift compensation off" in out
    rows = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert [r["time"] for r in rows] == ["1s", "1h", "1d", "1y"]
    table = evaluate_drift(drifting, "1s,1h,1d,1y", compensation=False, repeats=2)
    for row, expected in zip(rows, table.rows()):
        for key, value in expected.items():
            assert row[key] == str(value)
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (tmp_path / "eval.csv").read_bytes()
    assert main(args) == 2
    assert capsys.readouterr().err == (f"devsim: error: {prefix}.csv: already there; choose "
                                       f"another --out or --overwrite\n")
    assert (tmp_path / "eval.csv").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("extra,message", [
    (["--at", "1s,3q"], "--at: unknown time unit 'q' in '3q'"),
    (["--at", "1s", "--repeats", "0"], "--repeats: must be >= 1, got 0"),
    (["--at", "1s", "--set", "network.device.drift_nu=-1"],
     "run.h5:config_yaml:{line}: network.device.drift_nu: must be >= 0.0, got -1.0"),
])
def test_bad_input_is_one_line_and_exit_2(drifting, tmp_path, capsys, extra, message):
    assert main(["evaluate", str(drifting), "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    stored = read_trace(drifting).config_yaml.splitlines()  # the line of the key it names
    line = 1 + next(i for i, text in enumerate(stored) if text.strip().startswith("drift_nu:"))
    assert err.count("\n") == 1 and err.startswith("devsim: error: ")
    assert message.format(line=line) in err
    assert not list(tmp_path.iterdir())


def test_a_trace_without_parameters_or_drift_compensation_is_refused(tmp_path, capsys):
    ideal = yaml.safe_load(CONFIG)
    ideal["network"]["device"] = {"type": "ideal"}
    path = _train(tmp_path, yaml.safe_dump(ideal), "ideal")
    assert main(["evaluate", str(path), "--at", "1h", "--compensation", "on"]) == 2
    assert capsys.readouterr().err == ("devsim: error: --compensation: the trace's devices "
                                       "(ideal) have no drift compensation\n")
    with h5py.File(path, "a") as f:
        for name in f["snapshots"]:
            f["snapshots"][name].resize(0, axis=0)
    assert main(["evaluate", str(path), "--at", "1h"]) == 2
    assert capsys.readouterr().err == (f"devsim: error: {path}: the trace holds no trained "
                                       f"parameters (no parameter snapshot, no checkpoint)\n")


def test_an_interrupted_run_is_evaluated_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    from trainer.loop import TrainingLoop
    config = yaml.safe_load(CONFIG)
    config["trace"]["checkpoint_every"] = 800
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(config))
    real_advance = TrainingLoop.advance

    def dying_advance(self, until):
        if self.chip.steps >= 1000:  # past the checkpoint at 800
            raise KeyboardInterrupt
        return real_advance(self, until)

    monkeypatch.setattr(TrainingLoop, "advance", dying_advance)
    out = tmp_path / "killed.h5"
    assert main(["run", str(tmp_path / "killed.yaml"), "--out", str(out), "-q"]) == 130
    partial = read_trace(tmp_path / "killed.h5.partial")
    assert list(partial.snapshots["step"]) == [0]
    table = evaluate_drift(partial, "1s", repeats=1)
    assert table.step == 800 and table.source == "checkpoint killed.h5.ckpt"
    from devsim import checkpoint
    training, _, _ = checkpoint.load(tmp_path / "killed.h5.ckpt", partial.config_yaml)
    assert not np.allclose(training.bench.read_params(), partial.snapshots["params"][0])
    cost, _ = _reference(partial, ((1.0 + T0) / T0) ** -NU, training.bench.read_params())
    assert table.cost[0, 0] == pytest.approx(cost, rel=1e-9)


def test_global_compensation_is_the_mean_absolute_one_hot_read_as_in_aihwkit():
    """aihwkit 1.2's GlobalDriftCompensation reads one-hot inputs (every weight alone, the
    bias too) and scales outputs by mean |read at programming| / mean |read now|; with
    PCM drift every device drifts with its own exponent, so this differs from a
    row-sum (all-ones) read."""
    from devices.crossbar import CrossbarParams
    rng = np.random.default_rng(4)
    w, b = rng.uniform(-0.8, 0.8, (5, 7)), rng.uniform(-0.5, 0.5, 5)
    params = CrossbarParams(g_min=0.0, w_max=1.0, drift_model="pcm", prog_noise=0.5,
                            prog_noise_model="pcm")
    off = params.build(w, b, np.random.default_rng(9))
    on = params.replace(drift_compensation=True).build(w, b, np.random.default_rng(9))
    programmed = off.read()
    for t in (60.0, 3600.0 * 24 * 365):
        off.set_time(t)
        on.set_time(t)
        drifted = off.read()
        alpha = np.abs(programmed).sum() / np.abs(drifted).sum()
        np.testing.assert_allclose(on.read(), drifted * alpha, rtol=1e-12)
        rows = lambda flat: np.abs(flat[:35].reshape(5, 7).sum(axis=1) + flat[35:]).sum()
        assert abs(alpha - rows(programmed) / rows(drifted)) > 1e-4  # not an all-ones read

"""Studies on Optuna: the schema and its checks before launch, trials that fail or are
pruned, several worker processes on one journal, resuming a killed study, the old grid
and random options, the report (front against Optuna's own), and PostgreSQL."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

optuna = pytest.importorskip("optuna")

from devsim.cli import main  # noqa: E402
from devsim.config import ConfigError, loads  # noqa: E402
from devsim.runconfig import RunConfig  # noqa: E402
from devsim.runner import StopRun, run  # noqa: E402
from devsim.trace import read_trace  # noqa: E402
from devsim.tune import optimize  # noqa: E402
from devsim.tune.report import Point, best, load_study  # noqa: E402
from devsim.tune.worker import trial_seeds  # noqa: E402

ROOT = Path(__file__).parents[1]
TrialState = optuna.trial.TrialState

BASE = {  # a run of a few hundredths of a second: the quick start, 4 hidden units
    "name": "tiny", "seed": 1, "data": {"type": "digits", "test_fraction": 0.25},
    "network": {"device": {"type": "ideal"},
                "layers": [{"units": 4, "activation": "sigmoid"},
                           {"units": 10, "activation": "sigmoid"}]},
    "train": {"estimator": {"type": "mgd", "target": "nodes", "epsilon": 0.1},
              "optimizer": {"type": "sgd", "lr": 3.0},
              "timescales": {"tau_x": 1, "tau_p": 1, "tau_theta": 100},
              "steps": 2000, "eval_every": 1000, "eval_train_samples": 0},
    "trace": {"log_every": 1000},
}
LR_SPACE = [{"key": "train.optimizer.lr", "type": "float", "low": 0.1, "high": 10, "log": True}]


def write_config(folder: Path, tune: dict, **changes) -> Path:
    data = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    data["tune"] = tune
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def devsim(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "devsim", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def trials_of(folder: Path, storage=None):
    return load_study(folder, storage).get_trials(deepcopy=False)


# ---------------------------------------------------------------- schema and checks
def test_tune_section_rules_name_their_key_paths():
    def errors(tune):
        with pytest.raises(ConfigError) as info:
            loads(yaml.safe_dump({**BASE, "tune": tune}), RunConfig, "s.yaml")
        return info.value.messages[0]

    assert "tune.space[0].low: must be > 0 with log: true" in errors(
        {"space": [{"key": "train.optimizer.lr", "low": 0, "high": 1, "log": True}]})
    assert "tune.space[0].high: must be a whole number for an int key" in errors(
        {"space": [{"key": "network.layers[0].units", "type": "int", "low": 2, "high": 4.5}]})
    assert "tune.space[0].when[0]: network.device.type is not a key searched above" in errors(
        {"space": [{"key": "network.device.adc_bits", "type": "int", "low": 2, "high": 4,
                    "when": ["network.device.type=crossbar"]}]})
    assert "tune.objectives[0].metric: unknown metric 'acuracy'" in errors(
        {"objectives": [{"metric": "acuracy"}]})
    assert "tune.pruner.type: a pruner needs a single objective" in errors(
        {"objectives": [{"metric": "final_test_accuracy"}, {"metric": "pulses"}],
         "pruner": {"type": "median"}})
    assert "tune.trials: the grid has 2 points, got 3" in errors(
        {"space": [{"key": "seed", "type": "int", "low": 0, "high": 1}], "trials": 3,
         "sampler": {"type": "grid"}})


def test_a_key_that_does_not_exist_is_refused_before_any_trial(tmp_path):
    space = LR_SPACE + [{"key": "network.device.adc_bitz", "type": "int", "low": 2, "high": 8}]
    config = write_config(tmp_path, {"space": space, "trials": 2},
                          network__device={"type": "crossbar"})
    with pytest.raises(ConfigError) as info:
        optimize(config, tmp_path / "study")
    (message,) = info.value.messages
    assert message.startswith("study.yaml: tune.space[1].key: network.device.adc_bitz: ")
    assert message.endswith("network.device.adc_bitz: unknown key (did you mean 'adc_bits'?); "
                            "CrossbarParams takes: " + message.split("CrossbarParams takes: ")[1])
    assert not (tmp_path / "study").exists()  # nothing was created, nothing ran
    code = main(["tune", str(config), "--out", str(tmp_path / "study")])
    assert code == 2 and not (tmp_path / "study").exists()


def test_conditional_keys_are_checked_with_their_conditions(tmp_path):
    space = [{"key": "network.device.type", "type": "categorical", "choices": ["ideal", "crossbar"]},
             {"key": "network.device.adc_bits", "type": "int", "low": 3, "high": 6,
              "when": ["network.device.type=crossbar"]}]
    config = write_config(tmp_path, {"space": space})
    with pytest.raises(ConfigError, match=r"tune.space\[1\].key: network.device.adc_bits: a trial "
                                          r"with .* fails: network.device.output_range: must be set"):
        optimize(config, tmp_path / "study")
    space.insert(1, {"key": "network.device.output_range", "type": "float", "low": 4, "high": 16,
                     "when": ["network.device.type=crossbar"]})
    study = optimize(write_config(tmp_path, {"space": space, "trials": 4, "seed": 3}),
                     tmp_path / "study", log=lambda line: None)
    for t in study.trials:  # crossbar keys exactly in the crossbar trials
        crossbar = t.params["network.device.type"] == "crossbar"
        assert ("network.device.adc_bits" in t.params) == crossbar
        assert ("network.device.output_range" in t.params) == crossbar


def test_readme_excerpt_is_the_shipped_study():
    import re
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.startswith("tune:")]
    shipped = yaml.safe_load((ROOT / "configs/tune_crossbar.yaml").read_text())["tune"]
    assert yaml.safe_load(block)["tune"] == shipped
    assert loads((ROOT / "configs/tune_crossbar.yaml").read_text(), RunConfig, "tune_crossbar.yaml",
                 base_dir=ROOT / "configs").tune.trials == 200


def test_one_worker_on_a_new_study_is_reproducible(tmp_path):
    space = LR_SPACE + [{"key": "network.layers[0].units", "type": "int", "low": 2, "high": 6}]
    config = write_config(tmp_path, {"space": space, "trials": 3, "seed": 5,
                                     "sampler": {"type": "tpe", "startup_trials": 1}})
    a, b = (optimize(config, tmp_path / name, log=lambda line: None) for name in "ab")
    assert [(t.params, t.values) for t in a.trials] == [(t.params, t.values) for t in b.trials]


def test_folder_of_another_study_is_refused_in_one_line(tmp_path, capsys):
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 1})
    out = tmp_path / "study"
    assert main(["tune", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    for args in (["--study", "other"], ["--set", "train.steps=3000"]):
        assert main(["tune", str(config), "--out", str(out), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "belongs to another study" in err
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    assert main(["tune", str(config), "--out", str(tmp_path / "stuff")]) == 2
    assert "is not a study folder" in capsys.readouterr().err
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- trials
def test_trial_seeds_come_from_the_study_seed_and_trial_number(tmp_path):
    assert trial_seeds(0, 3, 2) == trial_seeds(0, 3, 2)
    every = [s for n in range(50) for s in trial_seeds(0, n, 2)] + trial_seeds(1, 0, 2)
    assert len(set(every)) == len(every)
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 2, "seeds": 2, "seed": 7})
    study = optimize(config, tmp_path / "study", log=lambda line: None)
    for t in study.trials:
        assert t.user_attrs["seeds"] == trial_seeds(7, t.number, 2)
        accuracies = [read_trace(p).summary["final"]["test_accuracy"] for p in t.user_attrs["traces"]]
        assert t.values[0] == pytest.approx(np.mean(accuracies))
        assert t.user_attrs["spread"]["final_test_accuracy"] == pytest.approx(np.std(accuracies, ddof=1))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_failing_trials_are_recorded_with_their_reason_and_the_study_goes_on(tmp_path):
    # on a crossbar, adc_bits 4 without an output range is an invalid combination
    space = [{"key": "network.device.adc_bits", "type": "categorical", "choices": [0, 4]},
             {"key": "network.device.output_range", "type": "categorical", "choices": [8.0, None]}]
    config = write_config(tmp_path, {"space": space, "trials": 4, "sampler": {"type": "grid"}},
                          network__device={"type": "crossbar"})
    lines = []
    study = optimize(config, tmp_path / "combination", log=lines.append)
    for t in study.trials:
        invalid = t.params["network.device.adc_bits"] == 4 and t.params["network.device.output_range"] is None
        assert t.state == (TrialState.FAIL if invalid else TrialState.COMPLETE)
        if invalid:
            assert t.user_attrs["fail_reason"] == ("invalid: study.yaml:8: network.device."
                                                   "output_range: must be set when adc_bits > 0")
    # on ideal hardware with identity outputs lr 1e200 diverges (its steps overflow, and
    # the run tolerates no skipped window); 3 output units do not fit the data set's 10
    # classes (refused when the run is built)
    space = [{"key": "train.optimizer.lr", "type": "categorical", "choices": [3.0, 1e200]},
             {"key": "network.layers[1].units", "type": "categorical", "choices": [10, 3]}]
    config = write_config(tmp_path, {"space": space, "trials": 4, "sampler": {"type": "grid"}},
                          network__layers=[{"units": 4, "activation": "identity"},
                                           {"units": 10, "activation": "identity"}],
                          train__divergence={"max_nonfinite": 0})
    study = optimize(config, tmp_path / "divergence", log=lines.append)
    for t in study.trials:
        reason = t.user_attrs.get("fail_reason")
        if t.params["network.layers[1].units"] == 3:
            assert reason == ("invalid: study.yaml: network.layers[1].units: must equal the "
                              "data set's 10 outputs, got 3")
        elif t.params["train.optimizer.lr"] == 1e200:
            assert reason.startswith("diverged at step ") and "1 update windows had a non-finite" in reason
        else:
            assert t.state == TrialState.COMPLETE and reason is None
    lines = [line for line in lines if line.startswith("[")]
    assert len(lines) == 8 and sum(" failed: " in line for line in lines) == 4


def test_the_runner_stops_when_its_evaluation_callback_says_so(tmp_path):
    config = loads(yaml.safe_dump(BASE), RunConfig, "tiny.yaml", ["train.steps=5000"])
    seen = []

    def stop_at_second(step, metrics):
        seen.append((step, set(metrics)))
        if len(seen) == 3:
            raise StopRun("enough")

    summary = run(config, out=tmp_path / "t.h5", on_evaluation=stop_at_second)
    trace = read_trace(tmp_path / "t.h5")
    assert [s for s, _ in seen] == [0, 1000, 2000] and seen[0][1] == {"test_cost", "test_accuracy"}
    assert summary["stopped"] == "enough" and summary["steps"] < 3000 and trace.complete
    assert list(trace.evals["step"]) == [0, 1000, 2000] and trace.summary["stopped"] == "enough"


def test_the_pruner_stops_trials_behind_the_median(tmp_path):
    # lr 3 learns, lr 1e-4 hardly moves: once trial 0 (lr 3) is done, trial 1 (lr 1e-4) is
    # pruned at its first evaluation behind the median of finished trials, here trial 0's
    # value at that evaluation (study seed 1: Optuna's grid sampler shuffles the grid with
    # it and puts lr 3 first)
    space = [{"key": "train.optimizer.lr", "type": "categorical", "choices": [3.0, 1e-4]}]
    config = write_config(tmp_path, {"space": space, "trials": 2, "sampler": {"type": "grid"},
                                     "seed": 1,
                                     "objectives": [{"metric": "best_test_accuracy"}],
                                     "pruner": {"type": "median", "startup_trials": 1,
                                                "warmup_evaluations": 0}},
                          network__layers=[{"units": 16, "activation": "sigmoid"},
                                           {"units": 10, "activation": "sigmoid"}],
                          train__steps=6000)
    study = optimize(config, tmp_path / "study", log=lambda line: None)
    good, bad = study.trials
    assert good.params["train.optimizer.lr"] == 3.0
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert sorted(good.intermediate_values) == [1, 2, 3, 4, 5, 6]
    k = max(bad.intermediate_values)
    assert sorted(bad.intermediate_values) == list(range(1, k + 1)) and k < 6
    behind = [bad.intermediate_values[j] < good.intermediate_values[j] for j in range(1, k + 1)]
    assert behind == [False] * (k - 1) + [True]
    trace = read_trace(bad.user_attrs["traces"][0])
    assert trace.complete and trace.summary["stopped"].startswith(
        f"pruned at evaluation {k} (step {1000 * k}): best_test_accuracy")
    assert list(trace.evals["step"]) == [1000 * j for j in range(k + 1)]


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "nsga2", "random"])
def test_every_sampler_runs_a_study(tmp_path, sampler):
    objectives = [{"metric": "final_test_accuracy"}] + (
        [{"metric": "config:train.optimizer.lr"}] if sampler == "nsga2" else [])
    space = LR_SPACE + [{"key": "network.layers[0].units", "type": "int", "low": 2, "high": 6}]
    config = write_config(tmp_path, {"space": space, "trials": 4, "objectives": objectives,
                                     "sampler": {"type": sampler, "startup_trials": 2,
                                                 "population_size": 2}})
    study = optimize(config, tmp_path / "study", log=lambda line: None)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    for t in study.trials:
        assert 0.1 <= t.params["train.optimizer.lr"] <= 10
        if sampler == "nsga2":
            assert t.values[1] == t.params["train.optimizer.lr"]


def test_constraints_keep_infeasible_trials_off_the_front(tmp_path):
    space = [{"key": "network.device.type", "type": "categorical", "choices": ["ideal", "crossbar"]},
             {"key": "train.optimizer.lr", "type": "float", "low": 1.0, "high": 3.0}]
    config = yaml.safe_load(write_config(tmp_path, {
        "space": space, "trials": 6, "sampler": {"type": "nsga2", "population_size": 4},
        "objectives": [{"metric": "final_test_accuracy"}, {"metric": "reads"}],
        "constraints": [{"metric": "pulses", "max": 0}]}).read_text())
    study = optimize(loads(yaml.safe_dump(config), RunConfig), tmp_path / "study",
                     log=lambda line: None)  # from Python: a config object, the Optuna study
    assert isinstance(study, optuna.Study) and len(study.trials) == 6
    kinds = [t.params["network.device.type"] for t in study.trials]
    assert set(kinds) == {"ideal", "crossbar"}  # (the sampler's draws for study seed 0)
    for t in study.trials:
        pulses = t.user_attrs["metrics"]["pulses"]
        assert (pulses > 0) == (t.params["network.device.type"] == "crossbar")
        assert t.user_attrs["constraints"] == [pulses]
        given = (t.constraints if hasattr(optuna.trial.Trial, "set_constraint")  # Optuna 5
                 else {"pulses <= 0": t.system_attrs["constraints"][0]})  # Optuna 4
        assert given == {"pulses <= 0": pulses}  # what Optuna's samplers and best_trials see
    from devsim.tune.report import points
    front = best(points(study, study_tune(study)), study_tune(study))
    assert front and all(p.params["network.device.type"] == "ideal" for p in front)


def study_tune(study):
    from devsim.tune.report import study_config
    return study_config(study).tune


def test_a_trial_taken_after_the_last_one_is_surplus_not_lost():
    from devsim.tune import study as bookkeeping
    from devsim.tune.worker import _take
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)

    class Racing:  # another machine asks for the last trial between our count and our ask
        def __getattr__(self, name):
            return getattr(study, name)

        def ask(self):
            study.ask()
            return study.ask()

    assert _take(Racing(), 2) is None
    first, theirs, mine = study.get_trials(deepcopy=False)
    assert theirs.state == TrialState.RUNNING and mine.state == TrialState.FAIL
    assert "surplus" in mine.user_attrs and not bookkeeping.counts(mine)
    assert not bookkeeping.is_lost(mine) and bookkeeping.recover(study, local_only=False) == []
    assert _take(study, 2) is None and len(study.trials) == 3


def test_pareto_front_agrees_with_optunas_own(tmp_path):
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["maximize", "minimize"])
    values = np.round(rng.random((60, 2)), 1)  # ties and duplicates included
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=list(v)))
    tune = loads(yaml.safe_dump({**BASE, "tune": {"space": LR_SPACE, "objectives": [
        {"metric": "final_test_accuracy"}, {"metric": "pulses"}]}}), RunConfig).tune
    found = [Point(f"t{t.number}", list(t.values), number=t.number) for t in study.trials]
    assert {p.number for p in best(found, tune)} == {t.number for t in study.best_trials}
    one = tune.replace(objectives=tune.objectives[:1])
    assert [p.values[0] for p in best(found, one, top=3)] == sorted(values[:, 0], reverse=True)[:3]


# ---------------------------------------------------------------- processes, resume, CLI
def test_two_workers_complete_the_trials_between_them_once_each(tmp_path):
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 8, "seeds": 1},
                          train__steps=300000, train__eval_every=100000)
    out = tmp_path / "study"
    proc = devsim("tune", config, "--workers", 2, "--out", out)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    trials = trials_of(out)
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["train.optimizer.lr"] for t in trials}) == 8
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    share = max(1, len(os.sched_getaffinity(0)) // 2)  # cores each worker holds to
    assert all(t.user_attrs["threads"] == {"numba": share, "blas": share} for t in trials)
    traces = sorted((out / "trials").iterdir())
    assert traces == sorted(Path(t.user_attrs["traces"][0]) for t in trials)
    assert sum(line.startswith("[") for line in text.splitlines()) == 8


def test_a_killed_study_resumes_and_completes_its_count(tmp_path):
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 3},
                          train__steps=600000, train__eval_every=200000)
    out = tmp_path / "study"
    proc = devsim("tune", config, "--out", out, start_new_session=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline:  # kill it in the middle of a trial
        time.sleep(0.1)
        trials = trials_of(out) if (out / "journal.log").exists() else []
        running = [t for t in trials if t.state == TrialState.RUNNING and t.params]
        if running and any(t.state == TrialState.COMPLETE for t in trials):
            killed = running[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert killed is not None and trials_of(out)[killed.number].state == TrialState.RUNNING
    done = sum(t.state == TrialState.COMPLETE for t in trials_of(out))
    again = devsim("tune", config, "--out", out)
    text, _ = again.communicate(timeout=300)
    assert again.returncode == 0, text
    assert f"{done} of 3 trials done, 1 lost to run again" in text
    trials = trials_of(out)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1
    lost = trials[killed.number]
    assert lost.state == TrialState.FAIL and "died" in lost.user_attrs["lost"]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == killed.number)
    assert retry.params == killed.params and retry.state == TrialState.COMPLETE


def test_grid_and_random_options_are_optunas_samplers(tmp_path, capsys):
    config = write_config(tmp_path, {"space": LR_SPACE})
    out = tmp_path / "grid"
    code = main(["tune", str(config), "--set", "train.steps=20000", "--set", "network.layers[0].units=8",
                 "--grid", "train.optimizer.lr=0.001,3", "--seeds", "2", "--out", str(out)])
    assert code == 0
    trials = trials_of(out)
    assert sorted(t.params["train.optimizer.lr"] for t in trials) == [0.001, 3]
    assert all(len(t.user_attrs["traces"]) == 2 for t in trials)
    text = capsys.readouterr().out
    best_row = text.split("best 2 (complete, feasible trials):")[1].strip().splitlines()[2]
    assert best_row.endswith("| 3 |")  # lr 3 learns, lr 0.001 does not
    out = tmp_path / "random"
    code = main(["tune", str(config), "--random", "network.layers[0].units=2:6", "--random",
                 "train.optimizer.lr=log:0.5:5", "--trials", "3", "--out", str(out)])
    assert code == 0
    trials = trials_of(out)
    assert len(trials) == 3 and all(2 <= t.params["network.layers[0].units"] <= 6 and
                                    isinstance(t.params["network.layers[0].units"], int) and
                                    0.5 <= t.params["train.optimizer.lr"] <= 5 for t in trials)
    assert main(["tune", str(config), "--grid", "a=1", "--random", "b=1:2", "--out", str(out)]) == 2


def test_tune_report_writes_labelled_plots(tmp_path, capsys):
    config = write_config(tmp_path, {"space": LR_SPACE + [
        {"key": "network.layers[0].units", "type": "int", "low": 2, "high": 6}], "trials": 3,
        "objectives": [{"metric": "best_test_accuracy"}, {"metric": "wall_seconds"}]})
    out = tmp_path / "study"
    assert main(["tune", str(config), "--out", str(out)]) == 0
    ref = tmp_path / "ref.h5"
    run(loads(yaml.safe_dump(BASE), RunConfig), out=ref)
    capsys.readouterr()
    assert main(["tune-report", str(out), "--reference", f"base={ref}"]) == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text and "| base |" in text
    for name in ("history.png", "params.png", "pareto.png"):
        assert (out / name).stat().st_size > 10000
    assert main(["tune-report", str(tmp_path)]) == 2


def test_an_rdb_storage_keeps_the_study_and_records_heartbeats(tmp_path):
    from devsim.tune import study as bookkeeping
    url = f"sqlite:///{tmp_path / 'studies.db'}"  # any Optuna RDB URL; SQLite needs no server
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 2})
    optimize(config, tmp_path / "study", storage=url, log=lambda line: None)
    assert json.loads((tmp_path / "study" / "study.json").read_text())["storage"] == url
    study = load_study(tmp_path / "study")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    import sqlite3
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: heartbeats outside optimize()
        trial = study.ask()
    beat = bookkeeping.Heartbeat(study, trial)
    beat.close()
    with sqlite3.connect(tmp_path / "studies.db") as db:
        rows = db.execute("select trial_id from trial_heartbeats").fetchall()
    assert sorted(rows) == [(t._trial_id,) for t in study.get_trials()]  # the two run, and this


def test_opening_a_database_retries_only_a_lost_race_to_create_its_tables(tmp_path, monkeypatch):
    import sqlalchemy.exc as sa_exc
    from devsim.tune import study as bookkeeping

    def failure(kind, message):
        return kind("CREATE TABLE studies (...)", {}, Exception(message))

    race = [failure(sa_exc.ProgrammingError, 'relation "studies" already exists'),
            failure(sa_exc.IntegrityError, 'duplicate key value violates unique constraint '
                                           '"pg_type_typname_nsp_index"'),
            failure(sa_exc.OperationalError, "table studies already exists")]
    other = [failure(sa_exc.ProgrammingError, "permission denied for schema public"),
             failure(sa_exc.OperationalError, 'connection refused'),
             ValueError("bad url")]
    assert all(map(bookkeeping.lost_schema_race, race))
    assert not any(map(bookkeeping.lost_schema_race, other))

    calls = []

    def storage(errors):
        def open_(url, **kw):
            calls.append(url)
            if errors:
                raise errors.pop(0)
            return "opened"
        return open_

    monkeypatch.setattr(bookkeeping.time, "sleep", lambda s: None)
    monkeypatch.setattr(optuna.storages, "RDBStorage", storage(list(race)))
    assert bookkeeping.open_storage("sqlite:///x.db", tmp_path) == "opened" and len(calls) == 4
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", storage(list(other[:1])))
    with pytest.raises(ConfigError, match="cannot open the study database: ProgrammingError: "
                                          ".*permission denied"):
        bookkeeping.open_storage("sqlite:///x.db", tmp_path)
    assert len(calls) == 1  # refused at once, not retried


# ---------------------------------------------------------------- PostgreSQL
POSTGRES = os.environ.get("DEVSIM_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="DEVSIM_TEST_POSTGRES_URL is not set: .ci/run starts a "
                                         "throwaway PostgreSQL server and sets it where the "
                                         "system package manager can install one")
def test_two_workers_share_one_study_in_postgresql(tmp_path):
    pytest.importorskip("psycopg")
    name = f"devsim-test-{os.getpid()}-{time.time_ns()}"
    config = write_config(tmp_path, {"space": LR_SPACE, "trials": 6},
                          train__steps=20000, train__eval_every=10000)
    # two machines: two commands, each with its own study folder, one database
    procs = [devsim("tune", config, "--storage", POSTGRES, "--study", name,
                    "--out", tmp_path / f"machine{i}") for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    storage = POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran = [sum(line.startswith("[") for line in text.splitlines()) for text in outputs]
    assert sum(ran) == 6 and len({t.params["train.optimizer.lr"] for t in trials}) == 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert all(Path(t.user_attrs["traces"][0]).exists() for t in trials)
    optuna.delete_study(study_name=name, storage=storage)
    assert math.isfinite(trials[0].values[0])


def _open_postgres_storage(url, start, results):
    from devsim.tune import study as bookkeeping
    start.wait()
    try:
        bookkeeping.open_storage(url, Path("."))
        results.put("opened")
    except ConfigError as exc:
        results.put(str(exc))


@pytest.mark.skipif(not POSTGRES, reason="DEVSIM_TEST_POSTGRES_URL is not set")
def test_workers_opening_a_new_postgresql_database_at_once_all_get_it():
    import multiprocessing
    import sqlalchemy as sa
    pytest.importorskip("psycopg")
    admin = sa.create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    context = multiprocessing.get_context("fork")  # the workers start with everything imported
    workers = 6  # with six, the old code (retrying integrity errors only) lost within 2 rounds
    for round_ in range(6):  # every round races the workers to create the same tables
        db = f"devsim_race_{os.getpid()}_{round_}"
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {db}"))
        try:
            start, results = context.Barrier(workers), context.Queue()
            url = POSTGRES.rsplit("/", 1)[0] + "/" + db
            procs = [context.Process(target=_open_postgres_storage, args=(url, start, results))
                     for _ in range(workers)]
            for proc in procs:
                proc.start()
            opened = [results.get(timeout=120) for _ in procs]
            for proc in procs:
                proc.join(timeout=60)
            assert opened == ["opened"] * workers, opened
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f"DROP DATABASE {db} WITH (FORCE)"))
    admin.dispose()

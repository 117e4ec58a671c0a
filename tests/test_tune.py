"""Parameter studies: search spaces, validation before launch, results table."""
import csv
from pathlib import Path

import numpy as np
import pytest

from devsim import tune
from devsim.cli import main
from devsim.config import ConfigError

ROOT = Path(__file__).parents[1]
QUICK = str(ROOT / "configs/quickstart.yaml")


def test_grid_is_the_cartesian_product():
    points = list(tune.grid_points(["a.b=1,2,3", "c[0].d=x,y"]))
    assert len(points) == 6 and points[0] == ("a.b=1", "c[0].d=x") and points[-1] == ("a.b=3", "c[0].d=y")


def test_random_points_respect_bounds_types_and_seed():
    space = ["lr=log:0.01:10", "units=4:64", "eps=0.1:0.2"]
    a = list(tune.random_points(space, 200, np.random.default_rng(3)))
    assert a == list(tune.random_points(space, 200, np.random.default_rng(3)))
    lr = np.array([float(p[0].split("=")[1]) for p in a])
    units = [p[1].split("=")[1] for p in a]
    assert lr.min() >= 0.01 and lr.max() <= 10 and all(u.isdigit() and 4 <= int(u) <= 64 for u in units)
    # log-uniform: half the draws fall below the geometric midpoint sqrt(0.1) (binomial, 5 sd)
    assert abs((lr < np.sqrt(0.1)).mean() - 0.5) < 5 * 0.5 / np.sqrt(200)
    with pytest.raises(ConfigError, match="need 0 < LO < HI"):
        list(tune.random_points(["lr=log:0:1"], 1, np.random.default_rng(0)))


def test_every_trial_is_validated_before_any_runs(tmp_path):
    with pytest.raises(ConfigError, match="train.optimizer.lr: must be > 0.0"):
        tune.plan(QUICK, tune.grid_points(["train.optimizer.lr=1,-1"]), 1, [], tmp_path)
    assert not (tmp_path / "results.csv").exists()


def test_tune_command_writes_results_and_picks_the_best(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["tune", QUICK, "--set", "train.steps=20000", "--set", "train.eval_every=20000",
                 "--set", "network.layers[0].units=8", "--grid", "train.optimizer.lr=0.001,3",
                 "--seeds", "2", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["seed"] for r in rows] == ["1", "2", "1", "2"]
    assert all(Path(r["trace"]).exists() for r in rows)
    text = capsys.readouterr().out
    assert "best final_test_accuracy" in text and text.strip().endswith("train.optimizer.lr=3")
    assert main(["tune", QUICK, "--out", str(out)]) == 2

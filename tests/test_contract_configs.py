"""Contract table of what devsim ships and what plugins install: every preset (found by
discovery, none skipped) loads as the kind it declares and cites its source; every
shipped config validates, round-trips, runs 1,000 hardware steps and writes a trace."""
from __future__ import annotations

import re

import numpy as np
import pytest

from contracts import ROOT, load_preset, presets, table
from devsim import load_config, run
from devsim.config import dump, loads
from devsim.registry import preset_files
from devsim.runconfig import RunConfig
from devsim.trace import read_trace

PRESETS = table("presets", [pytest.param(*row, id=row[0]) for row in presets()])
CONFIGS = table("configs", [pytest.param(p, id=p.stem)
                            for p in sorted((ROOT / "configs").glob("*.yaml"))])
SHORT = ["train.steps=1000", "train.eval_every=1000", "trace.log_every=500",
         "train.eval_train_samples=50"]


def test_every_preset_file_in_the_repository_is_installed():
    shipped = {p.stem for p in (ROOT / "devices" / "presets").glob("*.yaml")}
    assert shipped and shipped <= set(preset_files())


@pytest.mark.parametrize("name, path, family, cls", PRESETS)
def test_preset_loads_as_the_kind_it_declares_and_cites_its_source(name, path, family, cls):
    params = load_preset(path, family)
    assert type(params) is cls
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    cites = re.search(r"(19|20)\d\d|et al\.|arXiv|datasheet|aihwkit", " ".join(comments),
                      re.IGNORECASE)
    assert path.read_text().startswith("#") and len(comments) >= 2 and cites, \
        f"{path} does not open with comments citing its source (paper, data sheet, peer)"


@pytest.mark.parametrize("name, path, family, cls", PRESETS)
def test_preset_builds_and_runs(name, path, family, cls):
    params = load_preset(path, family)
    rng = np.random.default_rng(0)
    if family == "device":
        out = params.build(rng.uniform(-0.3, 0.3, (4, 6)), np.zeros(4), rng).forward(
            rng.uniform(-1, 1, (9, 6)))
    elif family == "noise":
        out = params.build(5, rng).sample(9)
    else:
        out = params.build(5, rng)(rng.normal(size=(9, 5)))
    assert out.shape[0] == 9 and np.isfinite(out).all()


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_config_validates_round_trips_runs_and_writes_a_trace(path, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name their data files from the repository root
    config = load_config(path, SHORT)
    assert loads(dump(config), RunConfig) == config
    summary = run(config, out=tmp_path / "t.h5")
    trace = read_trace(tmp_path / "t.h5")
    assert trace.complete and summary["steps"] >= 1000
    assert trace.scalars["step"][-1] == summary["steps"]
    assert np.isfinite(trace.scalars["cost"]).all()

"""Presets are package data found by name from anywhere: `devsim presets` lists them with
their sources, `devsim validate --show` prints what a preset resolves to, a wheel of the
repository carries them, and a config in an empty folder outside the clone uses one."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from devsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "devices" / "presets").glob("*.yaml"))

CONFIG = """\
name: outside
data: {type: digits}
network:
  device: {preset: crossbar_pcm, out_noise: 0.1}
  layers:
    - {units: 8, activation: sigmoid}
    - {units: 10, activation: sigmoid}
train:
  estimator: {type: mgd, target: nodes, epsilon: 0.1}
  steps: 400
  eval_every: 200
  eval_train_samples: 0
trace: {log_every: 200}
"""


def test_presets_lists_each_found_preset_with_type_origin_and_source(tmp_path, monkeypatch,
                                                                     capsys):
    beside = tmp_path / "presets"
    beside.mkdir()
    (beside / "my_array.yaml").write_text("# My array\n# Source: A. Author, J. Chips 1, 2 "
                                          "(2026)\ntype: crossbar\ng_max: 10.0\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "crossbar_pcm.yaml").write_text("# a local PCM variant\ntype: crossbar\n")
    monkeypatch.setenv("DEVSIM_PRESETS", str(extra))
    assert main(["presets", "--dir", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    by_origin = {(p["name"], p["origin"]): p for p in listed}
    mine = by_origin["my_array", "beside the config"]
    assert mine["type"] == "crossbar" and mine["source"] == "A. Author, J. Chips 1, 2 (2026)"
    assert not by_origin["crossbar_pcm", "DEVSIM_PRESETS"]["shadowed"]
    assert by_origin["crossbar_pcm", "installed"]["shadowed"]  # the local one wins by name
    installed = {p["name"]: p for p in listed if p["origin"] == "installed"}
    assert set(SHIPPED) <= set(installed)
    for name in SHIPPED:
        text = (ROOT / "devices" / "presets" / f"{name}.yaml").read_text()
        source = [line for line in text.splitlines() if line.startswith("# Source: ")]
        assert installed[name]["source"] == source[0].removeprefix("# Source: ")
        assert installed[name]["type"] == yaml.safe_load(text)["type"]
    assert main(["presets", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "A. Author, J. Chips 1, 2 (2026)" in text and "shadowed" in text


def test_validate_show_prints_the_values_a_preset_resolves_to(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    assert main(["validate", str(config), "--show"]) == 0
    device = yaml.safe_load(capsys.readouterr().out)["network"]["device"]
    pcm = yaml.safe_load((ROOT / "devices" / "presets" / "crossbar_pcm.yaml").read_text())
    assert device["out_noise"] == 0.1  # the config's own key wins
    for key, value in pcm.items():
        if key != "out_noise":
            expected = list(value) if isinstance(value, list) else value
            assert device[key] == pytest.approx(expected), key


@pytest.mark.slow
def test_a_wheel_of_the_repository_carries_the_presets(tmp_path):
    """Built from a copy of the tracked files (the build writes beside its sources), never
    installed."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    src = tmp_path / "src"
    for name in tracked:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", ".", "-w", str(tmp_path / "dist")], cwd=src, check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("devsim_lab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        groups = zf.read(entry_points).decode()
    assert {f"devices/presets/{name}.yaml" for name in SHIPPED} <= names
    assert "[devsim.presets]\ndevsim = devices.presets" in groups


@pytest.mark.slow
def test_a_config_in_an_empty_folder_outside_the_clone_names_a_preset(tmp_path):
    (tmp_path / "run.yaml").write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.pop("DEVSIM_PRESETS", None)

    def devsim(*args):
        return subprocess.run([sys.executable, "-m", "devsim", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    assert not (tmp_path / "presets").exists()
    checked = devsim("validate", "run.yaml")
    assert checked.returncode == 0, checked.stderr
    ran = devsim("run", "run.yaml", "-q")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "runs" / "outside.h5").is_file()
    missing = devsim("validate", "run.yaml", "--set", "network.device.preset=crossbar_pmc")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("devsim: error: run.yaml:4: network.device.preset: no "
                                      "preset 'crossbar_pmc' (did you mean 'crossbar_pcm'?); "
                                      "`devsim presets` lists them")

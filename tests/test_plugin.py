"""The example plugin (examples/plugin_fefet), installed by the README's test command, is
a first-class device: registered, documented, loadable with presets from YAML, trainable
from the CLI; a plugin that fails to load is one line naming its entry point."""
from __future__ import annotations

import os
import subprocess
import sys

from contracts import ROOT
from devsim.device import DeviceParams

QUICK = str(ROOT / "configs" / "quickstart.yaml")


def _devsim(*args, env=None):
    return subprocess.run([sys.executable, "-m", "devsim", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_example_plugin_is_installed_and_registered():
    assert "fefet" in DeviceParams.members(), (
        "the example plugin is not installed: the README's test command installs it "
        "(pip install '.[test]' ./examples/plugin_fefet)")


def test_docs_list_the_plugin_and_its_keys():
    from devsim.docs import config_reference
    text = config_reference()
    assert "### device `fefet`" in text and "`step_down`" in text and "`d2d_sigma`" in text


def test_a_config_names_the_plugin_preset_validates_and_trains_from_the_cli(tmp_path):
    shown = _devsim("validate", QUICK, "--set", "network.device.preset=fefet_jerry2017",
                    "--show")
    assert shown.returncode == 0, shown.stderr
    assert "type: fefet" in shown.stdout and "step_down: 0.0375" in shown.stdout
    out = tmp_path / "fefet.h5"
    ran = _devsim("run", QUICK, "-q", "--out", str(out), "--set",
                  "network.device.preset=fefet_jerry2017", "--set", "train.steps=20000",
                  "--set", "train.eval_every=10000")
    assert ran.returncode == 0, ran.stderr
    assert out.exists() and "hardware steps" in ran.stdout


def test_bad_plugin_values_are_refused_with_file_line_and_key_path():
    bad = _devsim("validate", QUICK, "--set", "network.device.type=fefet",
                  "--set", "network.device.step_down=2")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("devsim: error: quickstart.yaml:18: network.device.step_down: "
                                  "must be <= 1.0, got 2.0")


def test_a_broken_plugin_is_one_line_naming_its_entry_point(tmp_path):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[devsim.devices]\nbroken = no_such_module:Thing\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = _devsim("validate", QUICK, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'broken = no_such_module:Thing'" in lines[0]
    assert "broken-plugin 1.0" in lines[0] and "No module named 'no_such_module'" in lines[0]

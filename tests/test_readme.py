"""The README's examples are executed: its Python block, its console example, and
the exact two set-up commands CI runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devsim import load_config

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up", 1)[1].split("## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert commands == ["pip install . && devsim run configs/quickstart.yaml",
                        "pip install '.[test]' ./examples/plugin_fefet && python -m pytest"]
    assert commands[1] in (ROOT / ".ci/run").read_text()


def test_python_example_runs(tmp_path, monkeypatch):
    (code,) = _blocks("python")
    monkeypatch.chdir(ROOT)
    code = code.replace('"runs/readme.h5"', repr(str(tmp_path / "readme.h5")))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["trace"].complete


def test_console_example_prints_what_the_readme_says():
    (block,) = _blocks("console")
    command, expected = block.strip().split("\n", 1)
    args = command.removeprefix("$ devsim ").split()
    proc = subprocess.run([sys.executable, "-m", "devsim", *args], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == expected.strip()


def test_yaml_excerpt_matches_the_quickstart():
    import yaml
    excerpt = _blocks("yaml")[0]
    quick = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    part = yaml.safe_load(excerpt)
    for section in ("data", "network", "train"):
        for key, value in part[section].items():
            if isinstance(value, dict):
                for k, v in value.items():
                    assert quick[section][key][k] == v, (section, key, k)
            else:
                assert quick[section][key] == value, (section, key)


def test_preset_example_resolves():
    import yaml

    from devsim.device import DeviceParams
    from devsim.config import from_data
    part = yaml.safe_load(_blocks("yaml")[1])
    device = from_data(DeviceParams, part["network"]["device"], base_dir=ROOT / "configs")
    assert device.kind == "crossbar" and device.update_threshold == 0.1
    assert device.prog_noise_model == "pcm"  # the rest comes from the preset


def test_what_can_my_chip_learn_walkthrough_runs(tmp_path, monkeypatch, capsys):
    """The walk-through's commands, run as written (outputs under a temporary folder)."""
    from devsim.cli import main
    section = README.split("## What can my chip learn", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    monkeypatch.chdir(ROOT)
    for line in block.strip().splitlines():
        assert line.startswith("devsim ")
        assert main(line.replace("runs/", f"{tmp_path}/").split()[1:]) == 0, line
    out = capsys.readouterr().out
    assert "crossbar_pcm" in out and "Le Gallo et al., Nat. Electron. 6, 680 (2023)" in out
    for name in ("pcm_digits_drift", "pcm_digits_nocomp"):
        rows = (tmp_path / f"{name}.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows] == ["time", "1s", "1h", "1d", "1y"]
        assert (tmp_path / f"{name}.png").is_file()
    assert "drift compensation on" in out and "drift compensation off" in out
    assert re.search(r"to target  test accuracy 0.9: [\d,]+ hardware steps, hardware time "
                     r"[\d.e+-]+ s, energy [\d.e+-]+ J", out)
    assert (tmp_path / "pcm_digits_energy.png").is_file()


def test_cnn_excerpt_is_the_shipped_cnn_config():
    """The README's CNN is configs/cnn_digits_mcu.yaml (which the config contract table
    runs); its layers load as the config's."""
    from devsim.config import from_data
    from devsim.network import NetworkParams
    excerpt = from_data(NetworkParams, yaml.safe_load(_blocks("yaml")[2])["network"])
    shipped = load_config(ROOT / "configs/cnn_digits_mcu.yaml").network
    assert excerpt.layers == shipped.layers and excerpt.input_shape == shipped.input_shape
    assert (excerpt.device.kind, excerpt.device.sram_kib) == ("mcu", shipped.device.sram_kib)


@pytest.mark.parametrize("line", [l for b in _blocks("sh")[2:] for l in b.strip().splitlines()])
def test_cli_tour_lines_parse(line):
    """Each tour command is accepted by the argument parser (run lines are not executed
    here); the mutation tool's lines list their sample instead of running it."""
    words = line.split("#")[0].split()
    if words[:2] == ["python", "tools/mutate.py"]:
        sys.path.insert(0, str(ROOT / "tools"))
        try:
            import mutate
        finally:
            sys.path.remove(str(ROOT / "tools"))
        mutate.main(words[2:] + ["--list"])
        return
    from devsim.cli import parser
    parser().parse_args(words[1:])

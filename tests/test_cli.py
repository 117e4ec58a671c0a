"""The devsim command end to end: exit codes, outputs, reproducibility."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devsim.cli import main
from devsim.trace import read_trace

ROOT = Path(__file__).parents[1]
SMALL = ["train.steps=30000", "train.eval_every=10000", "trace.log_every=2000",
         "network.layers[0].units=8"]


def _run(tmp_path, name, *extra, seed=None):
    out = tmp_path / f"{name}.h5"
    args = ["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(out), "-q"]
    for s in SMALL + list(extra):
        args += ["--set", s]
    if seed is not None:
        args += ["--seed", str(seed)]
    assert main(args) == 0
    return read_trace(out)


def test_run_writes_a_complete_trace_and_summary(tmp_path, capsys):
    t = _run(tmp_path, "a")
    line = capsys.readouterr().out.strip()
    assert line.startswith("quickstart: 30,") and "test accuracy" in line
    assert t.complete and t.scalars["step"][-1] >= 30000
    assert len(t.evals["test_accuracy"]) == 4 and t.evals["step"][0] == 0
    assert t.summary["steps"] == t.scalars["step"][-1]
    assert t.summary["executor"] == "CompiledMGD" and "plain_loop_reasons" not in t.summary


def test_run_says_why_its_windows_took_the_plain_loop(tmp_path, capsys):
    """A run no compiled executor covers says why, on the console and in its summary."""
    t = _run(tmp_path, "tanh", "network.layers[0].activation=tanh")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == ("  update windows ran on the plain loop: layer 0 activation "
                         "without compiled code")
    assert t.summary["executor"] == "Plain"
    assert t.summary["plain_loop_reasons"] == ["layer 0 activation without compiled code"]


def test_same_seed_same_trace_different_seed_different(tmp_path):
    a, b, c = _run(tmp_path, "a"), _run(tmp_path, "b"), _run(tmp_path, "c", seed=5)
    for group in ("scalars", "evals", "snapshots"):
        for key, values in getattr(a, group).items():
            if key != "wall_time":
                np.testing.assert_array_equal(values, getattr(b, group)[key])
    assert not np.array_equal(a.snapshots["params"][-1], c.snapshots["params"][-1])
    assert not np.array_equal(a.scalars["cost"], c.scalars["cost"])


def test_inspect_text_and_json(tmp_path, capsys):
    _run(tmp_path, "a")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "a.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["hardware_steps"] >= 30000
    assert 0 <= info["final_test_accuracy"] <= info["best_test_accuracy"] <= 1
    assert "quickstart" in info["config_yaml"]
    assert main(["inspect", str(tmp_path / "a.h5")]) == 0
    assert "complete" in capsys.readouterr().out


def test_plot_writes_png(tmp_path):
    _run(tmp_path, "a")
    png = tmp_path / "p.png"
    assert main(["plot", str(tmp_path / "a.h5"), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(tmp_path / "a.h5"), "--out", str(png), "--x", "seconds"]) == 0


@pytest.mark.parametrize("args,message", [
    (["validate", "nope.yaml"], "nope.yaml: cannot read config"),
    (["validate", str(ROOT / "configs/quickstart.yaml"), "--set", "train.steps=0"],
     "quickstart.yaml:36: train.steps: must be >= 1, got 0"),
    (["run", str(ROOT / "configs/quickstart.yaml"), "--set", "network.layers[1].units=7"],
     "network.layers[1].units: must equal the data set's 10 outputs, got 7"),
    (["inspect", "missing.h5"], "missing.h5: no such file"),
    (["validate", str(ROOT / "configs/quickstart.yaml"), "--set", "seed"], "expected KEY=VALUE"),
])
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("devsim: error: ") and message in err
    assert "Traceback" not in err


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(blocker / "t.h5"),
                 "--set", "train.steps=10"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("devsim: error: ") and "Traceback" not in err


def test_bad_run_does_not_touch_an_existing_trace(tmp_path):
    out = tmp_path / "keep.h5"
    out.write_bytes(b"precious")
    code = main(["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(out),
                 "--set", "train.optimizer.lr=-1"])
    assert code == 2 and out.read_bytes() == b"precious"


def test_console_entry_points(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "devsim", "validate", "configs/parity.yaml"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "devsim", "validate", "configs/parity.yaml",
                           "--set", "data.bits=0"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "data.bits" in proc.stderr


def test_docs_are_generated_from_the_schema_and_current(capsys):
    assert main(["docs"]) == 0
    text = capsys.readouterr().out
    assert "| `lr` | float |" in text and "Learning rate." in text
    committed = (ROOT / "docs/config.md").read_text()
    assert committed.rstrip() == text.rstrip(), (
        "docs/config.md is stale: run `devsim docs --out docs/config.md` with the example "
        "plugin installed and no other (the README's test command installs it)")


def test_decorrelation_matrices_are_snapshotted(tmp_path):
    out = tmp_path / "d.h5"
    code = main(["run", str(ROOT / "configs/np_digits.yaml"), "--out", str(out), "-q",
                 "--set", "train.steps=2000", "--set", "train.eval_every=1000"])
    assert code == 0
    t = read_trace(out)
    first, last = t.snapshots["decorrelation"][0], t.snapshots["decorrelation"][-1]
    n_in = [64, 64]  # R_l is n_in x n_in for each layer of the 64-64-10 network
    assert first.shape == (sum(n * n for n in n_in),)
    np.testing.assert_array_equal(first[:64 * 64].reshape(64, 64), np.eye(64))
    assert not np.array_equal(first, last)


def test_a_killed_run_resumes_to_the_same_trace(tmp_path, monkeypatch):
    """Kill a run after its second checkpoint; --resume must give the uninterrupted trace."""
    from trainer.loop import TrainingLoop
    extra = ["--set", "trace.checkpoint_every=8000", "--set", "trace.snapshot_every=6000"]
    whole = _run(tmp_path, "whole", *extra[1::2])
    out = tmp_path / "killed.h5"
    args = ["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(out), "-q"]
    for s in SMALL + extra[1::2]:
        args += ["--set", s]
    real_advance = TrainingLoop.advance

    def dying_advance(self, until):
        if self.chip.steps >= 17000:  # past the checkpoint at 16,000
            raise KeyboardInterrupt
        return real_advance(self, until)

    monkeypatch.setattr(TrainingLoop, "advance", dying_advance)
    assert main(args) == 130
    monkeypatch.setattr(TrainingLoop, "advance", real_advance)
    assert not out.exists() and (tmp_path / "killed.h5.ckpt").exists()
    assert main(args + ["--resume"]) == 0
    resumed = read_trace(out)
    for group in ("scalars", "evals", "snapshots"):
        for key, values in getattr(whole, group).items():
            if key != "wall_time":
                np.testing.assert_array_equal(values, getattr(resumed, group)[key], err_msg=key)
    assert resumed.summary["resumed"] and not (tmp_path / "killed.h5.ckpt").exists()


def test_resume_refuses_a_changed_config_or_a_missing_checkpoint(tmp_path, capsys):
    args = ["run", str(ROOT / "configs/quickstart.yaml"), "--out", str(tmp_path / "r.h5"), "-q",
            "--resume"]
    assert main(args) == 2
    assert "no run to resume here" in capsys.readouterr().err


def test_a_reader_that_leaves_early_gets_no_error_line(tmp_path):
    """`devsim inspect t.h5 | head -1`: a closed pipe ends the command quietly, with the
    status of a SIGPIPE."""
    _run(tmp_path, "p")
    inspect = subprocess.Popen([sys.executable, "-m", "devsim", "inspect", str(tmp_path / "p.h5")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    inspect.stdout.close()  # the reader leaves before the first line (Python starts slower)
    assert inspect.wait(timeout=60) == 128 + 13
    assert inspect.stderr.read() == b""

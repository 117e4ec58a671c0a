"""Same config and seed, same bits, whatever the Numba thread count: ideal, crossbar,
MTJ and MCU runs in processes with one thread and with the default number."""
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from devsim.trace import read_trace

ROOT = Path(__file__).parents[1]
RUNS = {
    "ideal": ("configs/quickstart.yaml", []),
    "crossbar": ("configs/quickstart.yaml", ["network.device.preset=crossbar_reram",
                                             "train.estimator.epsilon=1.0"]),
    "mtj": ("configs/mtj_pbit_mgd.yaml", []),
    "mcu": ("configs/mcu_qzo.yaml", []),
}
SHORT = ["train.steps=6000", "train.eval_every=3000", "trace.log_every=1000",
         "train.timescales.tau_theta=300"]
"""Windows of 300 probes (600 steps with MGD's baselines): every probe call, like the
449-sample evaluations, is long enough to be split across threads."""

SCRIPT = """
import sys
from devsim.cli import main
for name, (config, sets) in {runs!r}.items():
    args = ["run", config, "--out", f"{out}/{{name}}.h5", "-q"]
    for s in {short!r} + sets:
        args += ["--set", s]
    assert main(args) == 0, name
"""


def _run_all(out: Path, threads: int | None):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    code = SCRIPT.format(runs=RUNS, short=SHORT, out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_traces_are_bit_identical_for_one_thread_and_the_default(tmp_path):
    default = numba.config.NUMBA_DEFAULT_NUM_THREADS
    _run_all(tmp_path / "one", 1)
    _run_all(tmp_path / "many", None if default > 1 else 2)  # two where the default is one
    for name in RUNS:
        one, many = read_trace(tmp_path / "one" / f"{name}.h5"), read_trace(tmp_path / "many" / f"{name}.h5")
        assert one.complete and many.complete
        for group in ("scalars", "evals", "snapshots"):
            for key, values in getattr(one, group).items():
                if key != "wall_time":
                    np.testing.assert_array_equal(values, getattr(many, group)[key],
                                                  err_msg=f"{name} {group}/{key}")

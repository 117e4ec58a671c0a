"""How often a run looks at itself never changes what it trains: evaluation reads a fork
of the network on streams of its own (devsim.bench), so training traces are bit-identical
for any eval_every, on noisy crossbars and on stochastic MTJ neurons alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devsim import load_config, run
from devsim.trace import read_trace

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "noisy crossbar": ("quickstart", ["network.device.preset=crossbar_pcm",
                                      "network.device.read_noise=0.02",
                                      "train.estimator.epsilon=1.0"]),
    "mtj p-bit neurons": ("mtj_pbit_mgd", []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_traces_do_not_depend_on_eval_every(case, tmp_path):
    name, sets = CASES[case]
    traces = []
    for every in (1_000, 50_000):
        config = load_config(ROOT / "configs" / f"{name}.yaml",
                             sets + ["train.steps=50000", f"train.eval_every={every}",
                                     "trace.log_every=2000", "train.executor=plain"])
        run(config, out=tmp_path / f"{every}.h5")
        traces.append(read_trace(tmp_path / f"{every}.h5"))
    often, rarely = traces
    assert len(often.evals["step"]) > 10 * len(rarely.evals["step"]) / 2
    for key, values in often.scalars.items():
        if key != "wall_time":
            np.testing.assert_array_equal(values, rarely.scalars[key], err_msg=key)
    np.testing.assert_array_equal(often.snapshots["params"], rarely.snapshots["params"])
    # and the evaluations themselves see the device's noise: repeated reads differ
    assert often.evals["test_cost"].std() > 0

"""The quick-start promise: >= 95 % test accuracy on digits from observed costs only."""
from pathlib import Path

import pytest

from devsim import load_config, run

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_quickstart_reaches_95_percent(tmp_path):
    summary = run(load_config(ROOT / "configs/quickstart.yaml"), out=tmp_path / "q.h5")
    assert summary["final"]["test_accuracy"] >= 0.95
    assert summary["steps"] >= 2_500_000
    assert summary["steps_to_target"] is not None

"""devsim: simulate noisy neural-network hardware and train it from observed costs.

The public Python API::

    from devsim import load_config, run, read_trace
    summary = run(load_config("configs/quickstart.yaml"), out="runs/q.h5", overwrite=True)
"""
__version__ = "0.1.0"

from devsim.config import ConfigError  # noqa: E402
from devsim.drift import evaluate_drift  # noqa: E402
from devsim.hardware import Hardware  # noqa: E402
from devsim.runner import RunConfig, build, load_config, run  # noqa: E402
from devsim.trace import read_trace  # noqa: E402

__all__ = ["__version__", "load_config", "run", "build", "RunConfig", "read_trace",
           "evaluate_drift", "Hardware", "ConfigError"]

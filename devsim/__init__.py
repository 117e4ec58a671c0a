"""devsim: simulate noisy neural-network hardware and train it from observed costs.

The public Python API::

    from devsim import load_config, run, read_trace
    summary = run(load_config("configs/quickstart.yaml"), out="runs/q.h5")
"""
__version__ = "0.1.0"

_API = {"load_config": "devsim.runner", "run": "devsim.runner", "build": "devsim.runner",
        "RunConfig": "devsim.runner", "read_trace": "devsim.trace", "Hardware": "devsim.hardware",
        "ConfigError": "devsim.config"}

__all__ = ["__version__", *_API]


def __getattr__(name):
    # Lazy: devices/ and trainer/ import devsim.params without pulling in the rest.
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'devsim' has no attribute {name!r}")

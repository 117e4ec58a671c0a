"""The run config: the schema of a whole run (data, network, training, trace) and its loader.

Every section is a parameter dataclass (:mod:`devsim.params`); the sections of other
layers (the network, the data set, the estimator and optimizer) are their own modules'
classes, composed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from devsim import config as cfg
from devsim.data import DataParams, Digits
from devsim.network import NetworkParams
from devsim.params import Params, param
from devsim.stopping import DivergenceParams
from devsim.training import EstimatorParams, OptimizerParams, Timescales
from devsim.tune.params import TuneParams


def _default(base, kind: str):
    """A factory of family ``base``'s member ``kind`` with its defaults (looked up in the
    registry when a default is needed, so this module imports no trainer)."""
    return lambda: base.members()[kind]()


@dataclass(frozen=True)
class TrainParams(Params):
    """How the controller trains: estimator, optimizer, clocks and budget."""

    estimator: EstimatorParams = field(default_factory=_default(EstimatorParams, "mgd"))
    """Gradient estimator (``type: mgd``, ``backprop`` for the reference baseline, ...)."""
    optimizer: OptimizerParams = field(default_factory=_default(OptimizerParams, "sgd"))
    """What to do with each estimate (``type: sgd | momentum | adam``)."""
    timescales: Timescales = field(default_factory=Timescales)
    """Input hold time ``tau_x``, perturbation hold time ``tau_p`` and update window
    ``tau_theta``, in hardware steps."""
    steps: int = param(1_000_000, ge=1)
    """Budget of training hardware steps (every inference counts, baselines included)."""
    eval_every: int = param(100_000, ge=1)
    """Evaluate test (and train) metrics every this many hardware steps."""
    eval_train_samples: int = param(500, ge=0)
    """Training samples used to estimate train accuracy at each evaluation (0: none)."""
    target_accuracy: float = param(0.0, ge=0.0, le=1.0)
    """Report time to this test accuracy (last evaluated step still below it); 0: off."""
    executor: str = param("auto", choices=("auto", "plain"))
    """Who runs the update windows: ``auto``, a compiled executor where one covers the
    estimator, optimizer and chip (:mod:`trainer.compiled`: MGD with random codes, NP,
    ANP and INP with Gaussian noise (DNP, DANP, DINP too), WP, reference backprop, on ideal
    devices, MTJ p-bit neurons included; many windows
    per call, the same bits), else the ask/tell loop; ``plain``: always the ask/tell
    loop, one window at a time. A run's summary names the executor and, for the
    ask/tell loop, why."""
    diagnose_cosine: bool = False
    """Log the cosine of each estimate to the ideal model's exact gradient (a diagnostic
    outside the rule, from the bench; costs a reference backward pass per window)."""
    divergence: DivergenceParams = field(default_factory=DivergenceParams)
    """When update windows with non-finite costs or estimates stop the run."""


@dataclass(frozen=True)
class TraceParams(Params):
    """What the HDF5 trace records and how often."""

    path: str = ""
    """Output file; empty: ``runs/<config name>.h5`` (``--out`` overrides)."""
    log_every: int = param(10_000, ge=1)
    """Write one row of scalars (mean cost, estimate norm, ...) every this many steps."""
    snapshot_every: int = param(0, ge=0)
    """Store all parameters every this many steps (0: first and last only)."""
    flush_seconds: float = param(10.0, gt=0.0)
    """Push buffered rows to disk at least this often, in wall-clock seconds."""
    checkpoint_every: int = param(0, ge=0)
    """Save a checkpoint (``<trace>.ckpt``) every this many steps, so that
    ``devsim run --resume`` can continue a killed run exactly (0: no checkpoints)."""


@dataclass(frozen=True)
class RunConfig(Params):
    """A complete run: data, hardware network, training and trace."""

    network: NetworkParams = param()
    """The hardware network: layers, devices, loss."""
    name: str = "run"
    """Name of the run (default trace file name)."""
    seed: int = param(0, ge=0)
    """Seed of every random stream in the run."""
    data: DataParams = field(default_factory=Digits)
    """Data set (``type: digits | parity | teacher | file``)."""
    train: TrainParams = field(default_factory=TrainParams)
    """Training controller."""
    trace: TraceParams = field(default_factory=TraceParams)
    """Trace output."""
    tune: TuneParams | None = None
    """A study over this config (``devsim tune``): search space, objectives, trials;
    ignored by ``devsim run``."""


def load_config(path, overrides=()) -> RunConfig:
    """Read and validate a run config file, applying ``--set`` overrides."""
    return cfg.load(path, RunConfig, overrides)

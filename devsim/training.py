"""The families of the training controller, declared where every layer can see them.

The estimator and optimizer families (:class:`EstimatorParams`, :class:`OptimizerParams`)
and the loop's clocks (:class:`Timescales`) are parameter schemas: a run config holds
them, the docs list them, plugins extend them. Their bases live in the foundation so
that the run config can name them without importing the trainer; the members, and
everything that trains, are in ``trainer/`` (found through the registries on first
use).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from devsim.params import ParamError, Params, param

__all__ = ["EstimatorParams", "Footprint", "OptimizerParams", "Timescales"]


@dataclass(frozen=True)
class Timescales(Params):
    """The clocks of perturbative training, in hardware steps (McCaughan et al.'s
    tau_x, tau_p and tau_theta)."""

    tau_x: int = param(1, ge=1)
    """Steps each input sample is held."""
    tau_p: int = param(1, ge=1)
    """Steps each perturbation code is held (multiplexed gradient descent)."""
    tau_theta: int = param(100, ge=1)
    """Steps per update window: parameters are written once per window."""


class Footprint(NamedTuple):
    """How an estimator trains each layer, in the terms of device memory accounts."""

    methods: tuple[str | None, ...]
    """Per layer: ``"zo_weight"``, ``"zo_node"``, ``"bp"``, or None for a frozen layer."""
    queries: int = 1
    """Perturbations per zeroth-order step whose losses are kept."""


@dataclass(frozen=True)
class EstimatorParams(Params, family="estimator"):
    """Base of the gradient estimators; select one with ``type:``."""

    outside_the_rule = False
    """True for a baseline that uses what no chip offers (exact gradients): it is
    handed the bench, and never counts as a hardware method."""

    def build(self, setup):
        """The estimator (a :class:`trainer.base.Estimator`) for a
        :class:`trainer.base.Setup`: the chip, a random stream, the timescales."""
        raise NotImplementedError

    def footprint(self, n_layers: int) -> Footprint | None:
        """What training keeps in the chip's memory, for devices that account memory
        (an MCU): each layer's method and the queries per zeroth-order step; None where
        this estimator is not modelled (counted as inference only)."""
        return None

    def diagnostics(self) -> tuple[str, ...]:
        """Names of the extra scalars every estimate of this estimator reports in
        ``info`` (the trace declares its columns from them up front)."""
        return ()


@dataclass(frozen=True)
class OptimizerParams(Params, family="optimizer"):
    """Base of the optimizers; select one with ``type:``."""

    lr: float = param(0.1, gt=0.0)
    """Learning rate."""
    clip_norm: float = param(0.0, ge=0.0)
    """Clip each gradient estimate to this global L2 norm first (0: no clipping)."""
    schedule: str = param("constant", choices=("constant", "cosine", "linear"))
    """Learning-rate schedule over updates: constant, or a cosine/linear decay."""
    decay_updates: int = param(0, ge=0)
    """Updates (windows) over which a decaying schedule falls to its final value."""
    final_lr_fraction: float = param(0.0, ge=0.0, le=1.0)
    """Final learning rate of a decaying schedule, as a fraction of ``lr``."""

    def validate(self):
        if self.schedule != "constant" and self.decay_updates == 0:
            raise ParamError(("decay_updates",), f"must be >= 1 for schedule {self.schedule!r}")

    def build(self):
        """The optimizer as a :class:`trainer.optim.Transform`."""
        raise NotImplementedError

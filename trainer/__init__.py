"""The controller outside the chip: gradient estimators, optimizers, executors and the loop.

It talks to hardware only through :mod:`devsim.hardware`; it never imports ``devices/``.
Estimators and optimizers are found through devsim's registries (the ``devsim.estimators``
and ``devsim.optimizers`` entry points name this package).
"""
from trainer.base import (Estimate, Estimator, EstimatorParams, Setup, Timescales, Window,
                          layer_gradient)
from trainer.executors import Executor, Plain
from trainer.loop import TrainingLoop, UpdateStats
from trainer.optim import OptimizerParams, Transform, adam, chain, momentum, sgd

__all__ = ["Estimate", "Estimator", "EstimatorParams", "Setup", "Timescales", "Window",
           "layer_gradient", "Executor", "Plain", "TrainingLoop", "UpdateStats",
           "OptimizerParams", "Transform", "adam", "chain", "momentum", "sgd"]

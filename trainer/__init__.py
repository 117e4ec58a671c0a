"""The controller outside the chip: gradient estimators, optimizers and the loop.

It talks to hardware only through :mod:`devsim.hardware`; it never imports
``devices/``. Importing this package registers every estimator and optimizer.
"""
from trainer import backprop, mgd, node_perturbation, qzo, weight_perturbation
from trainer.base import Estimate, Estimator, EstimatorParams, Window
from trainer.loop import Timescales, TrainingLoop
from trainer.optim import OptimizerParams, Transform, adam, chain, momentum, sgd

__all__ = ["Estimate", "Estimator", "EstimatorParams", "Window", "Timescales",
           "TrainingLoop", "OptimizerParams", "Transform", "adam", "chain", "momentum",
           "sgd", "backprop", "mgd", "node_perturbation", "qzo", "weight_perturbation"]

"""Hardware-parameter studies on Optuna: which ADC resolution, cell precision,
perturbation amplitude or write threshold does this chip need, and at what cost?

A study is a run config with a ``tune:`` section (:class:`TuneParams`): a search space
over key paths of the same config, one or more objectives (accuracy, time to target,
energy, memory, any traced scalar), seeds per trial, an optional pruner and
constraints. :func:`optimize` runs it (``devsim tune``) on Optuna's ask-and-tell
interface, in a journal file in the study folder or in a shared RDB (PostgreSQL) for
workers on several machines, and returns the Optuna study; :mod:`devsim.tune.report`
tabulates and plots it (``devsim tune-report``).

Modules: :mod:`~devsim.tune.params` (the schema), :mod:`~devsim.tune.metrics` (what
can be optimised), :mod:`~devsim.tune.space` (trial configs, checks before launch),
:mod:`~devsim.tune.study` (storage, folder, bookkeeping), :mod:`~devsim.tune.worker`
(running trials), :mod:`~devsim.tune.launch` (:func:`optimize`),
:mod:`~devsim.tune.report`.
"""
from devsim.tune.params import (Constraint, Objective, PrunerParams, SamplerParams,  # noqa: F401
                                SearchKey, TuneParams)

__all__ = ["optimize", "load_study", "TuneParams", "SearchKey", "Objective", "Constraint",
           "SamplerParams", "PrunerParams"]


def __getattr__(name):
    # The runner imports the schema above through the run config, so the modules that
    # run trials (and import the runner) load on first use, not with the package.
    if name == "optimize":
        from devsim.tune.launch import optimize
        return optimize
    if name == "load_study":
        from devsim.tune.report import load_study
        return load_study
    raise AttributeError(f"module 'devsim.tune' has no attribute {name!r}")

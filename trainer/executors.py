"""Who runs an estimator's window on the chip.

An executor takes an estimator and a window, runs the requests the estimator asks for
and returns its estimate; :meth:`Executor.advance` runs whole update windows of a
training loop, optimizer steps and writes included. :class:`Plain` is the reference:
each request through :meth:`devsim.hardware.Hardware.run`, one after another, in
Python, one window per ``advance``. Compiled executors run many windows per call, with
the same bits, where they cover the estimator, the optimizer and the chip
(:mod:`trainer.compiled`); :func:`select` picks one.
"""
from __future__ import annotations

from devsim.hardware import Hardware
from trainer.base import Estimate, Estimator, Window


class Executor:
    """Runs windows of an estimator's requests on a chip."""

    def __init__(self, chip: Hardware):
        self.chip = chip

    def window(self, estimator: Estimator, window: Window) -> Estimate:
        """One window's estimate."""
        raise NotImplementedError

    def advance(self, loop, until: int) -> list:
        """Update windows of ``loop`` (:class:`trainer.loop.TrainingLoop`), each with its
        optimizer step and write, stopping at the first that brings the chip to ``until``
        steps or is skipped, or earlier (this one: after one window); their
        :class:`~trainer.loop.UpdateStats` in order."""
        return [loop.update_window()]


class Plain(Executor):
    """The ask/tell loop as written: every request through the chip's batched call."""

    def __init__(self, chip: Hardware, reasons: tuple[str, ...] = ()):
        super().__init__(chip)
        self.reasons = reasons
        """Why a run's windows came here rather than to a compiled executor (what
        :func:`select` found; empty where nothing was selected)."""

    def window(self, estimator, window):
        estimator.start(window)
        while (request := estimator.ask()) is not None:
            estimator.tell(self.chip.run(request))
        return estimator.result()


def select(bench, estimator: Estimator, optimizer=None, mode: str = "auto") -> Executor:
    """The executor for ``estimator`` and ``optimizer`` (its parameters, an
    :class:`~trainer.optim.OptimizerParams`) on the bench's chip: with ``mode``
    ``"auto"`` the first compiled executor that covers them (none refuses), else
    :class:`Plain`, holding why (the refusals of the compiled executor for this
    estimator's type, or that there is none, or the mode)."""
    from trainer.compiled import EXECUTORS
    if mode != "auto":
        return Plain(bench.chip, (f"train.executor: {mode}",))
    reasons = [f"estimator {type(estimator).__name__} (no compiled executor runs it)"]
    for executor in EXECUTORS:
        problems = executor.refusals(bench, estimator, optimizer)
        if not problems:
            return executor(bench, estimator, optimizer)
        if isinstance(estimator, executor.estimator_type):
            reasons = problems
    return Plain(bench.chip, tuple(reasons))

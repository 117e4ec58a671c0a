"""Who runs an estimator's window on the chip.

An executor takes an estimator and a window, runs the requests the estimator asks for
and returns its estimate. :class:`Plain` is the reference: each request through
:meth:`devsim.hardware.Hardware.run`, one after another, in Python. Compiled executors
run the same windows faster where they cover the estimator and the chip
(:mod:`trainer.onchip`); :func:`select` picks one.
"""
from __future__ import annotations

from devsim.hardware import Hardware
from trainer.base import Estimate, Estimator, Window


class Executor:
    """Runs windows of an estimator's requests on a chip."""

    def __init__(self, chip: Hardware):
        self.chip = chip

    def window(self, estimator: Estimator, window: Window) -> Estimate:
        raise NotImplementedError


class Plain(Executor):
    """The ask/tell loop as written: every request through the chip's batched call."""

    def window(self, estimator, window):
        estimator.start(window)
        while (request := estimator.ask()) is not None:
            estimator.tell(self.chip.run(request))
        return estimator.result()


def select(bench, estimator: Estimator, mode: str = "auto") -> Executor:
    """The executor for ``estimator`` on the bench's chip: with ``mode`` ``"auto"`` the
    first compiled executor that covers them (none refuses), else :class:`Plain`."""
    from trainer.onchip import OnChipMGD
    if mode == "auto":
        for executor in (OnChipMGD,):
            if not executor.refusals(bench, estimator):
                return executor(bench, estimator)
    return Plain(bench.chip)

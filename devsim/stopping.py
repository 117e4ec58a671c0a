"""Why a run stops before its budget: divergence, or a signal.

**Divergence.** An update window whose cost or gradient estimate (or the step the
optimizer makes of it) is not finite writes nothing to the chip
(:meth:`trainer.loop.TrainingLoop.update` skips it); the trace counts such windows
in every row (``skipped_updates``, ``nonfinite_costs``) next to the parameters that
are not finite (``nonfinite_params``). Past ``train.divergence.max_nonfinite``
skipped windows the run stops as :class:`Diverged`, with its trace closed under the
final name, every row before the stop kept and ``stop_reason`` saying why.

**Signals.** While a run trains, SIGINT and SIGTERM ask it to stop after the current
update window: the trace is flushed and left as ``<trace>.partial``, a checkpoint is
written where checkpoints are on (so ``--resume`` continues exactly), and the run
raises :class:`Interrupted`. A second signal exits at once (status 128 + signal
number); the partial trace keeps every row flushed so far.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

from devsim.params import Params, param

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class DivergenceParams(Params):
    """When non-finite readings stop a run."""

    max_nonfinite: int = param(10, ge=0)
    """Update windows with a non-finite cost or estimate tolerated over the run: each
    is skipped (nothing written) and counted in the trace; one more stops the run as
    diverged (exit status 3)."""


class Diverged(Exception):
    """The run stopped because too many update windows were not finite."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message, summary)  # all arguments, so that it pickles
        self.message, self.summary = message, summary

    def __str__(self) -> str:
        return self.message


class Interrupted(KeyboardInterrupt):
    """The run stopped on SIGINT or SIGTERM, its trace flushed (and checkpointed)."""

    def __init__(self, signum: int, message: str):
        super().__init__(signum, message)
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        return self.message


class DivergenceGuard:
    """Counts the skipped update windows of a run against its tolerance."""

    def __init__(self, params: DivergenceParams):
        self.limit = params.max_nonfinite
        self.skipped = 0

    def observe(self, skipped: bool) -> None:
        self.skipped += skipped

    @property
    def exceeded(self) -> bool:
        return self.skipped > self.limit

    def reason(self, step: int) -> str:
        return (f"diverged at step {step:,}: {self.skipped} update windows had a non-finite "
                f"cost or estimate (train.divergence.max_nonfinite is {self.limit})")


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """SIGINT and SIGTERM turned into a request to stop, for the ``with`` block's
    duration (in the main thread only; elsewhere the handlers cannot be set and
    signals keep their usual effect). A second signal exits at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:
            os.write(2, f"devsim: second {signal_name(signum)}: exiting at once; the partial "
                        f"trace keeps every flushed row\n".encode())
            os._exit(128 + signum)
        self.signum = signum

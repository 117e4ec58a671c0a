"""Helper threads that wait for work by spinning, for compiled passes too short to wake
a sleeping thread.

Waking a sleeping thread costs 30-70 us on a small VM (the idle core has to be woken
by the hypervisor), as much as the work of a 64-probe layer, so short calls ran on
one core (:mod:`devsim.parallel`). A helper that has just finished a part instead
spins for :data:`SPIN_S` seconds, watching a job counter; a job posted meanwhile
reaches it in about a microsecond. It spins through ``sched_yield``, so a runnable
thread on its core (a BLAS worker, the caller) gets the core at once; after the spin
budget it sleeps until the next job wakes it the slow way.

The protocol lives in a control array (int64, one slot group per helper) and is
driven by compiled code on both sides: :func:`post` (caller) announces job ``seq``
with ``n_parts`` parts; helper k runs part k + 1 (its loop: :func:`await_job`, the
part, :func:`finish`); :func:`join` (caller) waits for all parts. The part itself is
a compiled function of the module that uses a team; it reads its arguments from
arrays the team owns (numbers, and addresses of the caller's arrays), which the caller
fills before posting.
"""
from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit

from devsim.native import (CLOCK_GETTIME, CLOCK_MONOTONIC, SCHED_YIELD, call_int,
                           load_acquire, store_release, store_seq_cst)

SPIN_S = 2e-3
"""Seconds a helper spins for the next job before it sleeps: longer than the Python
work between the passes of a training loop, short enough that an idle process gives
its cores back at once (OpenBLAS's workers spin about 0.1 s)."""

AVAILABLE = SCHED_YIELD != 0 and CLOCK_GETTIME != 0
"""Whether this platform has what spinning needs (``sched_yield``, ``clock_gettime``)."""

_SEQ, _PARTS = 0, 1      # the last job posted, and how many parts it has
_YIELD, _CLOCK = 2, 3    # addresses of sched_yield and clock_gettime (per process)
_SLOTS, _GROUP = 8, 8    # helper k's slots start at _SLOTS + _GROUP k:
_DONE, _STATE, _ERROR = 0, 1, 2  # last job finished, spinning or asleep, job raised
_SPINNING, _ASLEEP = 0, 1


def control_array(n_helpers: int) -> np.ndarray:
    """A fresh control array for ``n_helpers`` helpers (all asleep, no job yet)."""
    ctrl = np.zeros(_SLOTS + _GROUP * n_helpers, dtype=np.int64)
    ctrl[_YIELD], ctrl[_CLOCK] = SCHED_YIELD, CLOCK_GETTIME
    ctrl[_SLOTS + _STATE::_GROUP] = _ASLEEP
    return ctrl


@njit(cache=True, nogil=True)
def _now_ns(ctrl, ts):
    call_int(ctrl[_CLOCK], (np.int32(CLOCK_MONOTONIC), ts))
    return ts[0] * 1_000_000_000 + ts[1]


@njit(cache=True, nogil=True)
def await_job(ctrl, k, budget_ns):
    """Helper ``k``: wait for a job it has a part in; the part's index (>= 1), or 0
    once ``budget_ns`` passed without one (the helper is then marked asleep)."""
    slot = _SLOTS + _GROUP * k
    store_seq_cst(ctrl, slot + _STATE, _SPINNING)
    ts = np.zeros(2, dtype=np.int64)
    start = _now_ns(ctrl, ts)
    spins = 0
    while True:
        seq = load_acquire(ctrl, _SEQ)
        if seq != load_acquire(ctrl, slot + _DONE):
            if k + 1 < load_acquire(ctrl, _PARTS):
                return k + 1
            store_release(ctrl, slot + _DONE, seq)  # no part for this helper
            continue
        call_int(ctrl[_YIELD], ())
        spins += 1
        if spins % 64 == 0 and _now_ns(ctrl, ts) - start > budget_ns:
            store_seq_cst(ctrl, slot + _STATE, _ASLEEP)
            if load_acquire(ctrl, _SEQ) == seq:  # nothing posted meanwhile: sleep
                return 0
            store_seq_cst(ctrl, slot + _STATE, _SPINNING)


@njit(cache=True, nogil=True)
def finish(ctrl, k, error):
    """Helper ``k`` has run its part of the current job (``error``: it raised)."""
    slot = _SLOTS + _GROUP * k
    store_release(ctrl, slot + _ERROR, error)
    store_release(ctrl, slot + _DONE, load_acquire(ctrl, _SEQ))


@njit(cache=True, nogil=True)
def post(ctrl, n_parts):
    """Announce a job of ``n_parts`` parts (the caller runs part 0); returns a bit mask
    of the helpers with a part that are asleep and must be woken."""
    store_release(ctrl, _PARTS, n_parts)
    store_seq_cst(ctrl, _SEQ, load_acquire(ctrl, _SEQ) + 1)
    asleep = 0
    for k in range(n_parts - 1):
        if load_acquire(ctrl, _SLOTS + _GROUP * k + _STATE) == _ASLEEP:
            asleep |= 1 << k
    return asleep


@njit(cache=True, nogil=True)
def join(ctrl, n_parts):
    """Wait until the helpers have finished their parts of the current job; whether
    any of them raised."""
    seq = load_acquire(ctrl, _SEQ)
    failed = False
    for k in range(n_parts - 1):
        slot = _SLOTS + _GROUP * k
        while load_acquire(ctrl, slot + _DONE) != seq:
            call_int(ctrl[_YIELD], ())
        failed |= load_acquire(ctrl, slot + _ERROR) != 0
    return failed


class Team:
    """``n_helpers`` spinning helper threads serving the jobs of one compiled part.

    ``serve(ctrl, k, budget_ns, *args)``, compiled by the module that owns the part,
    is the helper loop for k >= 0 (``while (part := await_job(ctrl, k, budget_ns)) >
    0:`` run that part, then :func:`finish`) and, for k = -1, runs part 0 for the
    caller and returns whether it raised: one compiled entry point, so that Numba
    optimises the part's code once. ``args`` are what the part reads its arguments
    from (arrays the caller fills, holding :attr:`lock`). The team starts its threads
    on first use, and again in a forked child, which does not inherit them.
    """

    owner = None
    """The caller that filled the argument arrays last (callers may skip refilling)."""

    def __init__(self, serve, n_helpers: int, *args):
        self._serve = serve
        self.args = args
        """The arrays the part reads its arguments from (fill them holding :attr:`lock`)."""
        self.n_helpers = n_helpers
        self._lock = threading.Lock()
        self._pid = None

    def _start(self):
        self._ctrl = control_array(self.n_helpers)
        self._wake = [threading.Event() for _ in range(self.n_helpers)]
        for k in range(self.n_helpers):
            threading.Thread(target=self._helper, args=(k, self._ctrl, self._wake[k]),
                             name=f"devsim-spin-{k}", daemon=True).start()
        self._pid = os.getpid()

    def _helper(self, k, ctrl, wake):
        budget = int(SPIN_S * 1e9)
        while True:
            wake.wait()
            wake.clear()
            self._serve(ctrl, k, budget, *self.args)

    def run(self, n_parts: int) -> None:
        """Run parts ``0 .. n_parts - 1`` of the job whose arguments the caller has put
        in the team's arrays (holding :attr:`lock`), part 0 on the calling thread."""
        if self._pid != os.getpid():
            self._start()
        n_parts = min(n_parts, self.n_helpers + 1)
        if n_parts > 1:
            asleep = post(self._ctrl, n_parts)
            for k in range(n_parts - 1):
                if asleep >> k & 1:
                    self._wake[k].set()
        failed = self._serve(self._ctrl, -1, 0, *self.args)
        if n_parts > 1:
            failed = join(self._ctrl, n_parts) or failed
        if failed:
            raise RuntimeError("a compiled pass raised an error (in a spinning helper "
                               "or the calling thread)")

    @property
    def lock(self) -> threading.Lock:
        """Held while the team's argument arrays are filled and a job runs."""
        return self._lock

"""Probe rows of one large batched call split across threads, each running the whole
pipeline of its rows.

A noisy crossbar layer is a GEMM (BLAS) followed by kernels of ours (DAC, column noise,
ADC). Letting BLAS thread the GEMM and Numba thread the readout alternates two thread
pools, and waking a sleeping pool costs 70-90 us on a small VM, as much as the work of
a 64-row call. Instead, a call of many rows is cut into one contiguous part per thread;
each part runs DAC, GEMM and readout of its rows on one core, with BLAS held to one
thread meanwhile. The kernels release the GIL, so the parts run concurrently.

Networks of crossbars go further (:mod:`devices.crossbar_chain`): a whole pass per
part in compiled code, the parts handed to spinning helpers (:mod:`devsim.spin`), which
pays from 32 probes.

Noise is indexed by (probe, output), so the draws do not depend on the split. The
rounding of a BLAS product can (BLAS picks its blocking by matrix shape): results agree
to the last bits only for equal thread counts.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

MIN_ROWS_PER_THREAD = 128
"""Rows a part must have for a split to pay off: below that, starting threads costs
more than it saves."""

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, once looked up


def row_threads(n_rows: int) -> int:
    """How many threads a call of ``n_rows`` rows should use: Numba's thread count
    (``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``), fewer for short calls."""
    if n_rows < 2 * MIN_ROWS_PER_THREAD:
        return 1
    return max(1, min(numba.get_num_threads(), n_rows // MIN_ROWS_PER_THREAD))


def run_split(part, n_rows: int, threads: int) -> None:
    """``part(t0, t1)`` for ``threads`` contiguous parts of ``range(n_rows)``, at once.

    The caller's thread runs the first part; BLAS is held to one thread until all parts
    have finished. An exception in any part is raised here, after every part has ended.
    """
    if threads == 1:
        part(0, n_rows)
        return
    bounds = [n_rows * k // threads for k in range(threads + 1)]
    pool = _workers(threads - 1)
    with single_threaded_blas():
        futures = [pool.submit(part, bounds[k], bounds[k + 1]) for k in range(1, threads)]
        try:
            part(bounds[0], bounds[1])
        finally:
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error


@contextlib.contextmanager
def single_threaded_blas():
    """Hold the loaded BLAS libraries to one thread each (the threads of a split are
    the parallelism; a threaded product inside one would compete with them)."""
    blas = _blas_controllers()
    before = [lib.num_threads for lib in blas]
    for lib in blas:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(blas, before):
            lib.set_num_threads(n)


def _workers(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``n`` worker threads (kept between calls)."""
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="devsim-rows")
        return _pool


def _blas_controllers() -> list:
    """threadpoolctl's handles on the BLAS libraries loaded now (looked up once: the
    lookup scans the loaded libraries, milliseconds)."""
    global _blas
    with _lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController
            _blas = [lib for lib in ThreadpoolController().lib_controllers
                     if lib.user_api == "blas"]
        return _blas

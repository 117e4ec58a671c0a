"""How a call's probes are cut into blocks and parts, so that results never depend on the
thread count.

**Blocks.** A matrix product's last bits depend on the shape BLAS is handed: OpenBLAS
picks its kernel (and, for small products, its order of additions) by the number of
rows, and a threaded product by the thread count. Every product over a call's probes is
therefore made block by block: the canonical blocks are rows ``[k B, (k + 1) B)`` of the
call, ``B = BLOCK_ROWS`` (:func:`blocks`, :func:`matmul`), each with BLAS held to one
thread (:func:`single_threaded_blas`). A probe's result then depends only on its call's
size and its place in the call, and probes split over several calls at multiples of ``B``
give the same bits as one call.

**Parts.** A call of many probes is cut into one contiguous part per thread, made of
whole blocks; each part runs the whole pipeline of its rows (DAC, products, readout,
activations) on one core. A noisy crossbar layer is a GEMM followed by kernels of ours;
letting BLAS thread the GEMM and Numba thread the readout alternates two thread pools,
and waking a sleeping pool costs 70-90 us on a small VM, as much as the work of a
64-row call. The kernels release the GIL, so the parts run concurrently. Noise is indexed
by (probe, output), so the draws do not depend on the split either.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

BLOCK_ROWS = 128
"""Rows of a canonical block: every product over probes is made in blocks of this many
rows (the last block of a call may be shorter)."""

MIN_ROWS_PER_THREAD = 128
"""Rows a part must have for a split to pay off: below that, starting threads costs
more than it saves."""

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, once looked up
_held = 0  # how many single_threaded_blas contexts are open (across threads)
_restore: list[int] = []  # the BLAS thread counts to restore when the last one closes


def blocks(first: int, stop: int):
    """The canonical blocks of call rows ``[first, stop)``: ``(b0, b1)`` pairs, cut at
    multiples of :data:`BLOCK_ROWS` counted from the call's first row."""
    b0 = first
    while b0 < stop:
        b1 = min(stop, (b0 // BLOCK_ROWS + 1) * BLOCK_ROWS)
        yield b0, b1
        b0 = b1


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, first: int = 0) -> np.ndarray:
    """``out = a @ b`` made block by block (rows of ``a`` are call rows ``first, first +
    1, ...``), BLAS on one thread: what every product over probes should use, devices of
    plugins included, for results that do not depend on the thread count or on how the
    probes are grouped into calls."""
    with single_threaded_blas():
        for b0, b1 in blocks(first, first + a.shape[0]):
            np.matmul(a[b0 - first:b1 - first], b, out=out[b0 - first:b1 - first])
    return out


def row_threads(n_rows: int) -> int:
    """How many threads a call of ``n_rows`` rows should use: Numba's thread count
    (``NUMBA_NUM_THREADS`` or ``numba.set_num_threads``), fewer for short calls."""
    if n_rows < 2 * MIN_ROWS_PER_THREAD:
        return 1
    return max(1, min(numba.get_num_threads(), n_rows // MIN_ROWS_PER_THREAD))


def part_bounds(n_rows: int, parts: int) -> list[int]:
    """Bounds of ``parts`` contiguous parts of ``range(n_rows)`` made of whole blocks."""
    n_blocks = -(-n_rows // BLOCK_ROWS)
    return [min(n_rows, BLOCK_ROWS * (n_blocks * k // parts)) for k in range(parts + 1)]


def run_split(part, n_rows: int, threads: int) -> None:
    """``part(t0, t1)`` for ``threads`` contiguous parts of ``range(n_rows)`` made of whole
    blocks, at once.

    The caller's thread runs the first part; BLAS is held to one thread throughout. An
    exception in any part is raised here, after every part has ended.
    """
    if threads == 1:
        part(0, n_rows)
        return
    bounds = part_bounds(n_rows, threads)
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


class _SingleThreadedBlas:
    """The context of :func:`single_threaded_blas` (a class, not a generator: entered
    once per network pass, where a generator's overhead is a tenth of a small pass)."""

    __slots__ = ()

    def __enter__(self):
        global _held, _restore
        with _lock:
            if _held == 0:
                blas = _blas_controllers()
                _restore = [lib.num_threads for lib in blas]
                for lib, n in zip(blas, _restore):
                    if n != 1:
                        lib.set_num_threads(1)
            _held += 1

    def __exit__(self, *exc):
        global _held
        with _lock:
            _held -= 1
            if _held == 0:
                for lib, n in zip(_blas_controllers(), _restore):
                    if n != 1:
                        lib.set_num_threads(n)


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """Hold the loaded BLAS libraries to one thread each while any such context is open
    (in any thread; contexts nest): products over probes must not depend on BLAS's thread
    count, and a threaded product inside a split would compete with the parts."""
    return _SINGLE_THREADED_BLAS


def _workers(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``n`` worker threads (kept between calls)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="devsim-rows")
            _pool_size = n
        return _pool


def _blas_controllers() -> list:
    """threadpoolctl's handles on the BLAS libraries loaded now (looked up once: the
    lookup scans the loaded libraries, milliseconds). Called holding ``_lock``."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = [lib for lib in ThreadpoolController().lib_controllers
                 if lib.user_api == "blas"]
    return _blas

"""NumPy's own BLAS, called from compiled code.

Numba's ``np.dot`` goes through SciPy's BLAS, a separate build (here OpenBLAS 0.3.30
against NumPy's 0.3.31: 15-20 % slower for a 32 x 256 x 256 float32 product) whose
products need not round like NumPy's. :func:`matmul` instead calls the ``cblas_?gemm``,
``cblas_?gemv`` or ``cblas_?dot`` that ``numpy.matmul`` calls for the operands' shapes,
with the arguments it passes for C-contiguous operands, so a compiled pass gets NumPy's
products bit for bit. The entry points are looked up in the libraries NumPy's extension
module links to; where they cannot be found (a NumPy built against another BLAS
interface), :data:`AVAILABLE` is False and callers keep to NumPy.
"""
from __future__ import annotations

import ctypes

import numpy as np
from numba import njit

from devsim.native import c_address, call_float32, call_float64, call_void

_ROW_MAJOR, _COL_MAJOR, _NO_TRANS, _TRANS = 101, 102, 111, 112  # CBLAS enum values
_SGEMM, _DGEMM, _SGEMV, _DGEMV, _SDOT, _DDOT, _ILP64 = range(7)  # entry_points()'s slots
ENTRY_POINTS = _ILP64 + 1
"""Length of :func:`entry_points`' array."""


def _numpy_cblas():
    """(addresses of s/d gemm, gemv and dot, ILP64?) of the BLAS NumPy calls."""
    core = getattr(np, "_core", None) or np.core
    library = ctypes.CDLL(core._multiarray_umath.__file__)
    for prefix, suffix, ilp64 in (("scipy_", "64_", True), ("", "64_", True), ("", "", False)):
        names = [f"{prefix}cblas_{f}{suffix}"
                 for f in ("sgemm", "dgemm", "sgemv", "dgemv", "sdot", "ddot")]
        addresses = [c_address(library, n) for n in names]
        if all(addresses):
            return addresses, ilp64
    return [0] * 6, False


def entry_points() -> np.ndarray:
    """The argument ``cblas`` of :func:`matmul` for this process: the addresses of
    NumPy's s/d gemm, gemv and dot, and whether they take 64-bit integers (addresses
    are per process, so compiled code takes them as data and stays cacheable)."""
    addresses, ilp64 = _numpy_cblas()
    return np.array(addresses + [int(ilp64)], dtype=np.int64)


AVAILABLE = bool(entry_points()[0])
"""Whether NumPy's CBLAS entry points were found."""


@njit(cache=True, nogil=True)
def matmul(a, b, transposed, out, cblas):
    """``out = a @ op(b)`` as ``numpy.matmul`` computes it: ``a`` (m, k) and ``out`` (m, n)
    C-contiguous float32 or float64; ``b`` C-contiguous, (k, n), or (n, k) with
    ``transposed`` (what ``numpy.matmul(a, b.T)`` receives); ``cblas`` from
    :func:`entry_points`. Like NumPy, a single row (m = 1) or column (n = 1) is a
    matrix-vector product, and both a dot product."""
    if cblas[_ILP64]:
        _matmul(a, b, transposed, out, cblas, np.int64)
    else:
        _matmul(a, b, transposed, out, cblas, np.int32)


@njit(cache=True, nogil=True)
def _matmul(a, b, transposed, out, cblas, blas_int):
    """:func:`matmul` with BLAS integers of type ``blas_int``."""
    m, k = a.shape
    n = out.shape[1]
    real = out.dtype.type
    f32 = out.itemsize == 4
    one, zero = real(1.0), real(0.0)
    i32 = np.int32
    gemv = cblas[_SGEMV] if f32 else cblas[_DGEMV]
    if m == 1 and n == 1:  # NumPy's vector @ vector: a dot product (op(b) one column)
        dot = (blas_int(k), a, blas_int(1), b, blas_int(1))
        if f32:
            out[0, 0] = call_float32(cblas[_SDOT], dot)
        else:
            out[0, 0] = call_float64(cblas[_DDOT], dot)
        return
    if m == 1:  # NumPy's vector @ matrix: gemv over op(b)^T
        trans = i32(_NO_TRANS) if transposed else i32(_TRANS)
        rows, cols = (n, k) if transposed else (k, n)
        call_void(gemv, (i32(_ROW_MAJOR), trans, blas_int(rows), blas_int(cols), one, b,
                         blas_int(cols), a, blas_int(1), zero, out, blas_int(1)))
        return
    if n == 1:  # NumPy's matrix @ vector: gemv over a, read as the column-major a^T
        call_void(gemv, (i32(_COL_MAJOR), i32(_TRANS), blas_int(k), blas_int(m), one, a,
                         blas_int(k), b, blas_int(1), zero, out, blas_int(1)))
        return
    trans = i32(_TRANS) if transposed else i32(_NO_TRANS)
    call_void(cblas[_SGEMM] if f32 else cblas[_DGEMM],
              (i32(_ROW_MAJOR), i32(_NO_TRANS), trans, blas_int(m), blas_int(n),
               blas_int(k), one, a, blas_int(k), b,
               blas_int(k) if transposed else blas_int(n), zero, out, blas_int(n)))

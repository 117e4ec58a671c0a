"""A network of crossbar layers run as one compiled pass per part of its probe rows.

At 64 probes a noisy 64-256-256-10 crossbar network spends as long outside its GEMMs
as in them: DAC, column noise and ADC, activations, and about 10 us of Python per
layer. :class:`Chain` runs every layer of a pass, for a contiguous part of the rows, in
one compiled call: the DAC (:func:`~devices.crossbar_periphery.dac_kernel`), NumPy's
own GEMM (:func:`devsim.blas.matmul`, so the products round as ``numpy.matmul``'s),
the readout (:func:`~devices.crossbar_periphery.readout_rows`) and the activation
(:func:`devsim.activations.apply_in_place`). Calls of many probes are cut into parts of
whole blocks that run on :mod:`devsim.parallel`'s threads, which sleep between passes.

A pass computes what the layer-by-layer path (:meth:`devsim.network.Network.run`)
computes, bit for bit: the same kernels, the same noise draws (indexed by probe), and
products by the same BLAS calls on the same canonical blocks of rows, BLAS held to one
thread. Where NumPy's CBLAS entry points cannot be found (:data:`devsim.blas.AVAILABLE`)
networks keep to the layer-by-layer path.

Chains cover layers of one row tile with uniform read noise (a differential pair, or
a reference column without read noise), of one precision, with activations that have
compiled code (sigmoid, ReLU, leaky ReLU, identity), and node perturbations; anything
else (weight perturbations, decorrelation, recording the layers) keeps to the
layer-by-layer path.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import carray, njit

from devices.crossbar import Crossbar
from devices.crossbar_periphery import dac_kernel, readout_rows
from devsim import blas, parallel
from devsim.activations import apply_in_place
from devsim.native import pointer

MAX_LAYERS = 64

# the integer arguments: a header, then one group per layer; floats: one group per layer
_LAYERS, _ROWS, _X, _OUT, _NODE, _NODE_COLS, _WORK, _MAX_IN, _MAX_OUT, _BLOCK = range(10)
_CBLAS = 10                      # devsim.blas.entry_points(), up to _CBLAS_END
_CBLAS_END = _CBLAS + blas.ENTRY_POINTS
_HEAD = _CBLAS + 8
assert _CBLAS_END <= _HEAD
_LAYER_INTS, _LAYER_FLOATS = 16, 8
# per layer: Crossbar.chain_layer's ints, then the activation, the call's first draw,
# the layer's first column of the node perturbations
_ACT, _BASE, _NODE_OFFSET = 11, 12, 13
_N_IN, _N_OUT, _W, _TRANSPOSED, _BIAS, _READOUT, _STOCHASTIC, _KEY, _KEY_ROUND, \
    _GROUP, _N_GROUPS = range(11)
# per layer: Crossbar.chain_layer's floats, then the activation's parameter
_DAC_BOUND, _DAC_STEP, _VAR_SCALE, _OUT_VAR, _ADC_STEP, _ADC_BOUND, _ALPHA, \
    _ACT_PARAMETER = range(8)


@njit(cache=True, nogil=True)
def _layer(ai, af, index, x, first, xq, acc, h, row_sq):
    """Layer ``index`` of a pass for the rows of ``x``, probe ``first`` the first of
    them, as :meth:`devices.crossbar.Crossbar.forward_rows` computes them with one row
    tile, then its activation, into ``h``; ``xq``, ``acc`` and ``row_sq`` are work
    arrays of the layer's shape."""
    b, f = _HEAD + _LAYER_INTS * index, _LAYER_FLOATS * index
    real = h.dtype.type
    n_in, n_out = ai[b + _N_IN], ai[b + _N_OUT]
    transposed = ai[b + _TRANSPOSED] != 0
    w = carray(pointer(ai[b + _W], real), (n_out, n_in) if transposed else (n_in, n_out))
    bias = carray(pointer(ai[b + _BIAS], real), (n_out,))
    group = carray(pointer(ai[b + _GROUP], np.int64), (n_out,))
    rows = x.shape[0]
    var_scale = af[f + _VAR_SCALE]
    sq = row_sq.reshape((1, rows)) if var_scale > 0 else np.empty((0, rows))
    dac_kernel(x, af[f + _DAC_BOUND], af[f + _DAC_STEP], xq,
               np.array([0, n_in], dtype=np.int64), sq)
    readout = ai[b + _READOUT] != 0
    if not readout:
        acc = h
    block = ai[_BLOCK]  # products in the canonical blocks of devsim.parallel (parts
    for b0 in range(0, rows, block):  # start at multiples of the block size)
        b1 = min(rows, b0 + block)
        blas.matmul(xq[b0:b1], w, transposed, acc[b0:b1], ai[_CBLAS:_CBLAS_END])
    if not readout:
        for t in range(rows):
            for j in range(n_out):
                acc[t, j] += bias[j]
    if ai[_NODE] != 0:
        node = carray(pointer(ai[_NODE], np.float64), (ai[_ROWS], ai[_NODE_COLS]))
        offset = ai[b + _NODE_OFFSET]
        for t in range(rows):
            for j in range(n_out):
                acc[t, j] = real(np.float64(acc[t, j]) + node[first + t, offset + j])
    if readout:
        readout_rows(acc, bias, h, False, row_sq if var_scale > 0 else np.empty(0),
                     var_scale, np.empty((0, 0)), af[f + _OUT_VAR], np.empty((0, 0)),
                     group, ai[b + _N_GROUPS], np.uint64(ai[b + _KEY]),
                     np.uint64(ai[b + _KEY_ROUND]), ai[b + _BASE], first,
                     af[f + _ADC_STEP], af[f + _ADC_BOUND], ai[b + _STOCHASTIC] != 0,
                     0, rows)
    alpha = af[f + _ALPHA]
    if alpha != 1.0:
        scale = real(alpha)
        for t in range(rows):
            for j in range(n_out):
                h[t, j] *= scale
    apply_in_place(ai[b + _ACT], h, af[f + _ACT_PARAMETER])


@njit(cache=True, nogil=True)
def _pass(ai, af, t0, t1, real):
    """Rows t0 <= t < t1 of the pass described by ``ai``/``af``, into its output, with
    the work space of these rows (see :meth:`Chain._work_space`)."""
    n_layers, n_rows = ai[_LAYERS], ai[_ROWS]
    rows = t1 - t0
    max_in, max_out = ai[_MAX_IN], ai[_MAX_OUT]
    at = ai[_WORK] + 8 * t0 * (max_in + 3 * max_out + 1)  # this part's float64 slots
    xq_at, acc_at = at, at + 8 * rows * max_in
    h_at = (acc_at + 8 * rows * max_out, acc_at + 16 * rows * max_out)
    row_sq = carray(pointer(acc_at + 24 * rows * max_out, np.float64), (rows,))
    x = carray(pointer(ai[_X], np.float64), (n_rows, ai[_HEAD + _N_IN]))[t0:t1]
    for index in range(n_layers):
        b = _HEAD + _LAYER_INTS * index
        n_in, n_out = ai[b + _N_IN], ai[b + _N_OUT]
        xq = carray(pointer(xq_at, real), (rows, n_in))
        acc = carray(pointer(acc_at, real), (rows, n_out))
        h = carray(pointer(h_at[index % 2], real), (rows, n_out))
        if index == 0:
            _layer(ai, af, index, x, t0, xq, acc, h, row_sq)
        else:
            h_in = carray(pointer(h_at[(index - 1) % 2], real), (rows, n_in))
            _layer(ai, af, index, h_in, t0, xq, acc, h, row_sq)
    last = _HEAD + _LAYER_INTS * (n_layers - 1)
    n_out = ai[last + _N_OUT]
    h = carray(pointer(h_at[(n_layers - 1) % 2], real), (rows, n_out))
    out = carray(pointer(ai[_OUT], np.float64), (n_rows, n_out))
    for t in range(rows):
        for j in range(n_out):
            out[t0 + t, j] = h[t, j]


@njit(cache=True, nogil=True)
def _rows(ai, af, t0, t1, precision):
    """Rows t0 <= t < t1 of the pass, in the precision of the empty array ``precision``
    (a dtype-class argument would cost 11 us of dispatch a call); whether it raised."""
    try:
        _pass(ai, af, t0, t1, precision.dtype.type)
    except Exception:  # noqa: BLE001 (reported to the caller, which raises)
        return True
    return False


_arguments: dict = {}
_owners: dict = {}  # precision -> the chain whose layers the argument arrays describe
_arguments_lock = threading.Lock()


def _shared_arguments(precision: str):
    """The process's argument arrays (ints, floats, precision, lock) for chains of one
    precision (each precision compiles its own pass, on first use)."""
    with _arguments_lock:
        args = _arguments.get(precision)
        if args is None:
            ai = np.zeros(_HEAD + _LAYER_INTS * MAX_LAYERS, dtype=np.int64)
            af = np.zeros(_LAYER_FLOATS * MAX_LAYERS)
            ai[_CBLAS:_CBLAS_END] = blas.entry_points()
            args = _arguments[precision] = (ai, af, np.empty(0, dtype=precision),
                                            threading.Lock())
        return args


class Chain:
    """The devices and activations of a network as one compiled pass (see module doc)."""

    def __init__(self, devices, activations):
        self.devices = devices
        self._activations = [(a.native, a.parameter) for a in activations]
        self._precision = devices[0].params.precision
        self._versions = None
        self._layers = None
        self._max_in = max(d.shape[1] for d in devices)
        self._max_out = max(d.shape[0] for d in devices)
        self._work = np.empty(0)

    @classmethod
    def of(cls, devices, activations) -> "Chain | None":
        """A chain of these layers, or None where one of them cannot be compiled (or
        this platform lacks NumPy's CBLAS entry points)."""
        if not blas.AVAILABLE or not 0 < len(devices) <= MAX_LAYERS:
            return None
        if not all(isinstance(d, Crossbar) and d.chain_layer() is not None
                   for d in devices):
            return None
        if len({d.params.precision for d in devices}) != 1:
            return None
        if any(a.native is None for a in activations):
            return None
        return cls(devices, activations)

    def run(self, x: np.ndarray, node_perturbation: np.ndarray | None,
            node_offsets) -> np.ndarray:
        """The network's outputs (float64, T x n_out) for the float64 rows ``x``."""
        n_rows = len(x)
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty((n_rows, self.devices[-1].shape[0]))
        if node_perturbation is not None:
            node_perturbation = np.ascontiguousarray(node_perturbation, dtype=np.float64)
        bases = [d.begin_forward(n_rows) for d in self.devices]
        ai, af, precision, lock = _shared_arguments(self._precision)
        with lock:
            self._describe(ai, af, self._precision)
            for index, base in enumerate(bases):
                ai[_HEAD + _LAYER_INTS * index + _BASE] = base
            ai[_ROWS], ai[_X], ai[_OUT] = n_rows, x.ctypes.data, out.ctypes.data
            ai[_WORK] = self._work_space(n_rows).ctypes.data
            if node_perturbation is None:
                ai[_NODE] = 0
            else:
                ai[_NODE] = node_perturbation.ctypes.data
                ai[_NODE_COLS] = node_perturbation.shape[1]
                for index, offset in enumerate(node_offsets[:-1]):
                    ai[_HEAD + _LAYER_INTS * index + _NODE_OFFSET] = offset

            def rows(t0, t1):
                if _rows(ai, af, t0, t1, precision):
                    raise RuntimeError("a compiled crossbar pass raised an error")

            with parallel.single_threaded_blas():
                parallel.run_split(rows, n_rows, parallel.row_threads(n_rows))
        return out

    def _work_space(self, n_rows):
        """Float64 slots for every row's layer work arrays (DAC output, sums, two layer
        outputs, read-noise variance), kept between passes: fresh arrays of a large
        batch cost page faults on every pass (one thread, 1024 probes: 5.1 ms against
        3.2 ms)."""
        size = n_rows * (self._max_in + 3 * self._max_out + 1)
        if self._work.shape[0] < size:
            self._work = np.empty(size)
        return self._work

    def _describe(self, ai, af, precision):
        """Put the layers' parameters into the shared argument arrays, unless this chain
        put them there last and no device has changed since."""
        versions = [d.version for d in self.devices]
        if _owners.get(precision) is self and versions == self._versions:
            return
        if versions != self._versions:
            self._layers = [d.chain_layer() for d in self.devices]
            self._versions = versions
        ai[_LAYERS] = len(self.devices)
        ai[_BLOCK] = parallel.BLOCK_ROWS
        ai[_MAX_IN], ai[_MAX_OUT] = self._max_in, self._max_out
        for index, ((ints, floats, _), (code, parameter)) in enumerate(
                zip(self._layers, self._activations)):
            b, f = _HEAD + _LAYER_INTS * index, _LAYER_FLOATS * index
            ai[b:b + len(ints)] = ints
            ai[b + _ACT] = code
            af[f:f + len(floats)] = floats
            af[f + _ACT_PARAMETER] = parameter
        _owners[precision] = self

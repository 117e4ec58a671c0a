"""Neuron non-linearities, including the MGD logistic with neuron-to-neuron variation.

Each activation is a parameter class (YAML ``activation: {type: ...}`` or just the
name) that builds a callable for a layer of ``n`` neurons. ``derivative`` serves the
reference backpropagation baseline only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, NamedTuple

import numpy as np
from numba import njit

from devsim.params import Params, param


@dataclass(frozen=True)
class ActivationParams(Params, family="activation"):
    """Base of the activation functions; select one with ``type:``."""

    _f_in_place = None  # f computed in its argument's memory, where a subclass has one
    _native = None  # its code for apply_in_place, where compiled passes can apply it
    grid_preserving: ClassVar[bool] = False
    """Whether the function maps every grid of evenly spaced values containing 0 onto
    itself (identity, ReLU): layers of integer devices chain exactly through it."""

    def build(self, n: int, rng: np.random.Generator) -> "Activation":
        return Activation(self._f, self._df, self._f_in_place, self._native)

    @staticmethod
    def _f(z):
        raise NotImplementedError

    @staticmethod
    def _df(z):
        raise NotImplementedError


class Activation:
    """A built activation: ``act(z)`` and ``act.derivative(z)`` over (T, n) arrays."""

    stateful = False
    """Whether applying it changes its state (a stochastic neuron device carrying its
    level from probe to probe), so that probes must go through it in order."""

    def __init__(self, f, df, f_in_place=None, native=None, parameter=0.0):
        self._f, self._df = f, df
        self._f_in_place = f_in_place or f
        self.native = native
        """Code of this function for :func:`apply_in_place` (None: not compiled)."""
        self.parameter = float(parameter)
        """The parameter :func:`apply_in_place` takes with :attr:`native` (the leaky
        ReLU's slope; 0 for functions without one)."""

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._f(z)

    def in_place(self, z: np.ndarray) -> np.ndarray:
        """``act(z)``, written over ``z`` where the function allows (``z`` must be an
        array its caller discards): at large batches a fresh array per layer costs
        page faults, a quarter of a noisy crossbar network's time."""
        return self._f_in_place(z)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        return self._df(z)

    def forked(self, stream: int) -> "Activation":
        """This activation for a fork of the network that reads on stream ``stream``
        (see :meth:`devsim.device.DeviceArray.forked`): itself when it keeps no state."""
        return self

    def compiled(self) -> "CompiledNeuron | None":
        """This layer's pass as compiled code can call it, in its present state (for
        stateful device neurons that offer one; see :class:`CompiledNeuron`); None where
        it has none (stateless functions have :attr:`native` codes instead)."""
        return None


class CompiledNeuron(NamedTuple):
    """A device neuron layer's pass as a C function, which executors running whole
    windows in compiled code (:mod:`trainer.compiled`) call in place of
    :meth:`Activation.__call__`, with the same results and state changes:

        void address(double *z, int64 rows, int64 n, int64 *ints, double *floats,
                     int8 *state)

    turns the (rows, n) C-contiguous pre-activations ``z`` into the layer's outputs in
    place, for the next ``rows`` probes in order (a pass may come in several calls of
    consecutive rows), and puts into ``ints[0]`` a count of events for :attr:`account`
    (the MTJ's switches). ``ints[1:]``, ``floats`` and ``state`` are the neuron's own:
    it may change them, and their state must be its live state. After the compiled
    code has run, ``account(rows, events)`` is called once for each pass it made, in
    order: the meter and counters the Python pass would have updated."""

    address: int
    ints: np.ndarray
    floats: np.ndarray
    state: np.ndarray
    account: Callable[[int, int], None]


_ROUND = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND - _ROUND rounds x to an integer
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 0.6931471803691238, 1.9082149292705877e-10


@njit(cache=True, nogil=True, error_model="numpy")
def logistic_inplace(z, work):
    """1 / (1 + exp(-z)) in place, z in blocks as long as the float64 scratch ``work``
    (short blocks stay in cache: whole-array scratch cost page faults), with
    exp(x) = 2^k exp(r), |r| <= ln2/2, r by a Cody-Waite reduction and exp(r) by its
    Taylor series to degree 13 (truncation below 1e-17).

    Four short loops without calls, branches or division checks, which LLVM vectorises
    (libm's exp and tanh are scalar calls and took most of the node-perturbation
    kernel's time); the polynomial has a loop of its own, where more of its long
    dependency chains overlap (2x over one fused loop).
    """
    for b0 in range(0, z.shape[0], work.shape[0]):
        _logistic_block(z[b0:b0 + work.shape[0]], work)


@njit(cache=True, nogil=True, error_model="numpy")
def _logistic_block(z, work):
    n = z.shape[0]
    k_bits = work[:n]
    for i in range(n):
        x = -z[i]
        x = -700.0 if x < -700.0 else x
        x = 700.0 if x > 700.0 else x
        k = (x * _LOG2E + _ROUND) - _ROUND
        z[i] = (x - k * _LN2_HI) - k * _LN2_LO
        k_bits[i] = k + _ROUND  # k sits in the low mantissa bits
    for i in range(n):
        r = z[i]
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        z[i] = p * r + 1.0
    bits = k_bits.view(np.int64)
    for i in range(n):  # 2^k built from its exponent field
        bits[i] = ((bits[i] - np.int64(0x4338000000000000)) + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(n):
        z[i] = 1.0 / (1.0 + z[i] * scale[i])


_BLOCK = 2048  # elements per block of the logistic kernels (16 kB of float64 scratch)
_ROUND32 = np.float32(12582912.0)  # 1.5 * 2**23, the float32 rounding constant
_LOG2E32, _LN2_HI32, _LN2_LO32 = (np.float32(1.44269504), np.float32(0.693359375),
                                  np.float32(-2.12194440e-4))


@njit(cache=True, nogil=True, error_model="numpy")
def logistic_inplace_f32(z, work):
    """:func:`logistic_inplace` for float32 ``z`` and ``work``, in float32 arithmetic:
    |z| clamped at 87, Taylor degree 7 (truncation 3e-8), within 2 float32 ulp; 2.4x
    NumPy's float32 exp form."""
    for b0 in range(0, z.shape[0], work.shape[0]):
        _logistic_block_f32(z[b0:b0 + work.shape[0]], work)


@njit(cache=True, nogil=True, error_model="numpy")
def _logistic_block_f32(z, work):
    f32 = np.float32
    n = z.shape[0]
    k_bits = work[:n]
    for i in range(n):
        x = -z[i]
        x = f32(-87.0) if x < f32(-87.0) else x
        x = f32(87.0) if x > f32(87.0) else x
        k = (x * _LOG2E32 + _ROUND32) - _ROUND32
        z[i] = (x - k * _LN2_HI32) - k * _LN2_LO32
        k_bits[i] = k + _ROUND32
    for i in range(n):
        r = z[i]
        p = f32(1.0 / 5040.0)
        p = p * r + f32(1.0 / 720.0)
        p = p * r + f32(1.0 / 120.0)
        p = p * r + f32(1.0 / 24.0)
        p = p * r + f32(1.0 / 6.0)
        p = p * r + f32(0.5)
        p = p * r + f32(1.0)
        z[i] = p * r + f32(1.0)
    bits = k_bits.view(np.int32)
    for i in range(n):
        bits[i] = ((bits[i] - np.int32(0x4B400000)) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for i in range(n):
        z[i] = f32(1.0) / (f32(1.0) + z[i] * scale[i])


def logistic_np(z):
    """NumPy twin of :func:`logistic_inplace` (libm exp)."""
    return 1.0 / (1.0 + np.exp(-z))


def _sigmoid(z):
    """The logistic 1 / (1 + exp(-z)) as a new array in the dtype of ``z`` (float32 or
    float64), by the vectorised kernels above (NumPy's exp is scalar for float64 here,
    and a four-pass ufunc chain for float32)."""
    return _sigmoid_in_place(np.array(z, order="C"))


@njit(cache=True, nogil=True)
def _sigmoid_f32_array(z):
    """:func:`logistic_inplace_f32` over a C-contiguous float32 array of any shape, its
    scratch made here (the network's per-layer call: 1.5 -> 0.9 us of overhead)."""
    flat = z.reshape(-1)
    logistic_inplace_f32(flat, np.empty(max(1, min(flat.shape[0], _BLOCK)), dtype=np.float32))


def _sigmoid_in_place(z):
    """:func:`_sigmoid` over ``z`` itself (a copy first if it is not a contiguous float
    array)."""
    if z.dtype.char == "f" and z.flags.c_contiguous:
        _sigmoid_f32_array(z)
        return z
    if z.dtype not in (np.float32, np.float64) or not z.flags.c_contiguous:
        z = np.array(z, dtype=np.result_type(z.dtype, np.float32), order="C")
    kernel = logistic_inplace_f32 if z.dtype == np.float32 else logistic_inplace
    kernel(z.reshape(-1), np.empty(max(1, min(z.size, _BLOCK)), dtype=z.dtype))
    return z


IDENTITY, SIGMOID, RELU, LEAKY_RELU = 0, 1, 2, 3
"""Codes of the activations compiled passes apply (:func:`apply_in_place`)."""
DEVICE_NEURON = -1
"""The code compiled passes give a layer whose activation is a :class:`CompiledNeuron`."""


@njit(cache=True, nogil=True)
def apply_in_place(code, z, parameter):
    """Activation ``code`` (with its ``parameter``: the leaky ReLU's slope) over the
    C-contiguous float32 or float64 array ``z``, in place, with the results of its
    :meth:`Activation.in_place` (ReLU as NumPy's ``maximum(z, 0)``: -0 becomes +0, NaN
    stays; the leaky ReLU as ``where(z > 0, z, slope * z)``, the slope rounded to z's
    precision first, as NumPy rounds a Python float)."""
    flat = z.reshape(-1)
    if code == SIGMOID:
        work = np.empty(max(1, min(flat.shape[0], _BLOCK)), dtype=z.dtype)
        if z.itemsize == 4:
            logistic_inplace_f32(flat, work)
        else:
            logistic_inplace(flat, work)
    elif code == RELU:
        for i in range(flat.shape[0]):
            v = flat[i]
            if not v > 0 and v == v:
                flat[i] = 0
    elif code == LEAKY_RELU:
        slope = z.dtype.type(parameter)
        for i in range(flat.shape[0]):
            v = flat[i]
            if not v > 0:
                flat[i] = slope * v


@njit(cache=True, nogil=True, inline="always")
def derivative(code, z, h, parameter):
    """d act / dz of activation ``code`` (with its ``parameter``) at the pre-activation
    z whose output is h (the sigmoid's from its output, h (1 - h); ReLU's 1 where z > 0,
    else 0; the leaky ReLU's 1 where z > 0, else its slope)."""
    if code == SIGMOID:
        return h * (1.0 - h)
    if code == RELU:
        return 1.0 if z > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if z > 0 else parameter
    return 1.0


@dataclass(frozen=True)
class Sigmoid(ActivationParams, kind="sigmoid"):
    """The logistic function 1 / (1 + exp(-z))."""

    _native = SIGMOID
    _f = staticmethod(_sigmoid)
    _f_in_place = staticmethod(_sigmoid_in_place)

    @staticmethod
    def _df(z):
        s = _sigmoid(z)
        return s * (1.0 - s)


@dataclass(frozen=True)
class Tanh(ActivationParams, kind="tanh"):
    """The hyperbolic tangent."""

    _f = staticmethod(np.tanh)

    @staticmethod
    def _f_in_place(z):
        return np.tanh(z, out=z)

    @staticmethod
    def _df(z):
        return 1.0 - np.tanh(z) ** 2


@dataclass(frozen=True)
class Identity(ActivationParams, kind="identity"):
    """No non-linearity (a linear layer)."""

    _native = IDENTITY
    grid_preserving = True

    @staticmethod
    def _f(z):
        return z

    @staticmethod
    def _df(z):
        return np.ones_like(z)


@dataclass(frozen=True)
class ReLU(ActivationParams, kind="relu"):
    """max(z, 0)."""

    _native = RELU
    grid_preserving = True

    @staticmethod
    def _f(z):
        return np.maximum(z, 0.0)

    @staticmethod
    def _f_in_place(z):
        return np.maximum(z, 0.0, out=z)

    @staticmethod
    def _df(z):
        return (z > 0).astype(z.dtype)


@dataclass(frozen=True)
class LeakyReLU(ActivationParams, kind="leaky_relu"):
    """z for z > 0, slope * z otherwise."""

    slope: float = param(0.01, ge=0.0, le=1.0, unit="1")
    """Slope for negative inputs."""

    def build(self, n, rng):
        a = self.slope
        return Activation(lambda z: np.where(z > 0, z, a * z),
                          lambda z: np.where(z > 0, 1.0, a), native=LEAKY_RELU, parameter=a)


@dataclass(frozen=True)
class Logistic(ActivationParams, kind="logistic"):
    """The MGD neuron L / (1 + exp(-k (z - x0))) + y0, each parameter varying per neuron.

    Every neuron draws its own L, k, x0, y0 once, from a Gaussian with the given mean
    and ``*_spread`` standard deviation: the neuron-to-neuron variation of McCaughan
    et al. (2023).
    """

    L: float = param(1.0, unit="output")
    """Output swing (mean over neurons)."""
    k: float = param(1.0, unit="1/pre-activation")
    """Gain (mean over neurons)."""
    x0: float = param(0.0, unit="pre-activation")
    """Input offset (mean over neurons)."""
    y0: float = param(0.0, unit="output")
    """Output offset (mean over neurons)."""
    L_spread: float = param(0.0, ge=0.0, unit="output")
    """Standard deviation of L across neurons."""
    k_spread: float = param(0.0, ge=0.0, unit="1/pre-activation")
    """Standard deviation of k across neurons."""
    x0_spread: float = param(0.0, ge=0.0, unit="pre-activation")
    """Standard deviation of x0 across neurons."""
    y0_spread: float = param(0.0, ge=0.0, unit="output")
    """Standard deviation of y0 across neurons."""

    def build(self, n, rng):
        L, k, x0, y0 = (m + s * rng.standard_normal(n) for m, s in (
            (self.L, self.L_spread), (self.k, self.k_spread),
            (self.x0, self.x0_spread), (self.y0, self.y0_spread)))

        def f(z):
            return L * _sigmoid(k * (z - x0)) + y0

        def df(z):
            s = _sigmoid(k * (z - x0))
            return L * k * s * (1.0 - s)

        return Activation(f, df)

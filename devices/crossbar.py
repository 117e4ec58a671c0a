"""Analog crossbar arrays: weights held as conductances of resistive memory devices.

A dense layer ``y = W x + b`` is computed by an array of programmable conductances:
the inputs drive the rows as voltages (through a DAC), every device passes a current
``G * V`` into its column, the columns sum them (Kirchhoff) and an ADC digitises each
column current. The bias is one more row driven at a constant input of 1.

What is modelled, and where (names follow IBM aihwkit's ``_dtod`` device-to-device /
``_std`` cycle-to-cycle convention):

* **Mapping.** A weight is a differential pair ``w = k (G+ - G-) / (g_max - g_min)``
  (``k = w_max``) or one device against a reference column at mid-range
  (``k = 2 w_max``). Large matrices are tiled into arrays of at most
  ``tile_rows x tile_cols``; every array has its own ADCs and the partial sums of
  row tiles are added digitally.
* **Static, drawn once per device at build:** spread of each device's g_min / g_max
  and of its update steps; stuck-at-g_min / g_max / random-conductance faults; the
  drift exponent.
* **Programming** (at build, and on every write when ``dw_min = 0``): discrete levels,
  programming noise with constant, proportional or PCM-polynomial sigma, clipping to
  the device's own range.
* **Reads:** white read noise on every device at every MVM, sampled exactly at the
  column (it is Gaussian and independent per device, so a column's noise is one
  Gaussian of variance ``sum_i x_i^2 sigma_i^2``, drawn by the vectorised float32
  Box-Muller of :func:`devsim.crng.normals32`); drift ``G (t / t0)^-nu`` and
  aihwkit's accumulated 1/f noise at an inference time, with an optional global drift
  compensation; a first-order IR-drop attenuation along the rows.
* **Periphery:** DAC clipping and quantisation of the inputs, additive output noise,
  ADC clipping and (optionally stochastic) quantisation of every column of every array.
* **Writes:** requested changes become pulses of ``dw_min`` with cycle-to-cycle noise,
  up/down asymmetry, soft or hard bounds (a differential pair keeps the weight on one
  device, its partner near the floor, so weights cross zero); or, with ``dw_min = 0``,
  program-and-verify to the new target. Optionally requests first accumulate digitally
  and reach the devices in multiples of ``update_threshold`` (mixed precision).
  Pulses, seconds and joules are metered.

Perturbations enter in the analog domain: a weight perturbation is a conductance
offset (its current adds to the column before the ADC), a node perturbation is a
current injected into the column of the array that holds the bias row. Offsets are
taken as small: they see neither drift nor IR drop, and the read-noise variance is that
of the programmed conductances.

All noise inside kernels comes from :mod:`devsim.crng`, keyed on (seed, stream, draw
index), so the noise does not depend on the thread count or on how a call's probes are
split across threads (:mod:`devsim.parallel`; only BLAS rounding may). With every
non-ideality off, the differential mapping, ``w_max`` a power of two, float64 and one
row tile, the array computes exactly what :mod:`devices.ideal` computes (the same
sequence of floating-point operations).
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

from devsim.device import ClockedArray, DeviceParams, Meter, RowSplitArray
from devsim import crng, parallel
from devsim.params import ParamError, param

_STREAM_READ, _STREAM_ROUND, _STREAM_PULSE, _STREAM_PULSE_ROUND = 1, 2, 3, 4
_STREAM_TILES = 16  # streams 16 + 2r and 17 + 2r: reads and rounding of row tile r >= 1
_STREAM_FORKS = 1 << 32  # seeds of forked copies (evaluation reads): this plus the fork
_STUCK_MIN, _STUCK_MAX, _STUCK_RANDOM = 1, 2, 3  # fault codes; 0 is a working device
_EMPTY1, _EMPTY2 = np.zeros(0), np.zeros((0, 0))  # "term absent" arguments of the readout


@dataclass(frozen=True)
class CrossbarParams(DeviceParams, kind="crossbar"):
    """An analog crossbar of resistive devices with DAC/ADC periphery (see module doc)."""

    # ---- mapping
    mapping: str = param("differential", choices=("differential", "reference"))
    """``differential``: a pair G+ - G- per weight; ``reference``: one device per weight
    minus a reference column programmed to mid-range (one per array)."""
    g_min: float = param(0.0, ge=0.0, unit="uS")
    """Lowest programmable conductance (nominal)."""
    g_max: float = param(25.0, gt=0.0, unit="uS")
    """Highest programmable conductance (nominal); g_max / g_min is the on/off ratio."""
    w_max: float = param(1.0, gt=0.0, unit="weight")
    """Weight mapped to the full conductance range g_max - g_min; larger weights clip."""
    tile_rows: int = param(1024, ge=1)
    """Most rows (inputs, bias row included) of one physical array."""
    tile_cols: int = param(1024, ge=1)
    """Most outputs of one physical array (each uses two columns when differential)."""

    # ---- static device-to-device variation and faults
    g_max_dtod: float = param(0.0, ge=0.0, unit="1")
    """Relative spread (Gaussian sigma) of each device's g_max around the nominal."""
    g_min_dtod: float = param(0.0, ge=0.0, unit="1")
    """Relative spread (Gaussian sigma) of each device's g_min around the nominal."""
    stuck_at_gmin_prob: float = param(0.0, ge=0.0, le=1.0, unit="1")
    """Probability that a device is stuck at its g_min (ignores programming and writes)."""
    stuck_at_gmax_prob: float = param(0.0, ge=0.0, le=1.0, unit="1")
    """Probability that a device is stuck at its g_max."""
    stuck_at_random_prob: float = param(0.0, ge=0.0, le=1.0, unit="1")
    """Probability that a device is stuck at a uniformly random conductance of its range."""

    # ---- programming
    bits_per_cell: int = param(0, ge=0, le=16)
    """Programmable levels per device are 2**bits_per_cell, evenly spaced from g_min to
    g_max; 0 for a continuous conductance."""
    prog_noise_model: str = param("constant", choices=("constant", "proportional", "pcm"))
    """Shape of the programming-noise sigma: ``constant``; ``proportional`` to G;
    ``pcm``: aihwkit's PCM statistical model, sigma(G) = (c0 + c1 G/g_max + c2 (G/g_max)^2)
    * g_max / 25 uS (Nandakumar et al. 2019)."""
    prog_noise: float = param(0.0, ge=0.0, unit="1")
    """Programming-noise size: sigma as a fraction of g_max - g_min (constant), of G
    (proportional), or a multiplier of the PCM polynomial (pcm; 1 = the published fit)."""
    pcm_prog_coeffs: tuple[float, ...] = param((0.26348, 1.9650, -1.1731), unit="uS")
    """PCM programming-noise polynomial (c0, c1, c2), in uS at g_max = 25 uS."""

    # ---- reads
    read_noise_model: str = param("constant", choices=("constant", "proportional"))
    """Shape of the per-read noise sigma: ``constant`` or ``proportional`` to G."""
    read_noise: float = param(0.0, ge=0.0, unit="1")
    """Cycle-to-cycle (white) read noise of every device at every MVM: sigma as a
    fraction of g_max - g_min (constant) or of G (proportional). The column noise it
    makes (with ``out_noise``) is drawn as float32 normals in either precision."""
    read_noise_1f_scale: float = param(0.0, ge=0.0, unit="1")
    """Multiplier of aihwkit's accumulated 1/f read noise (PCM statistical model),
    sigma = |G| q_s sqrt(ln((t + t_read) / (2 t_read))), q_s = min(0.2, 0.0088 /
    (G/g_max)^0.65), drawn once per inference time; 0 switches it off."""
    t_read_s: float = param(250e-9, gt=0.0, unit="s")
    """Duration of one read (the 1/f noise integration time)."""
    drift_model: str = param("constant", choices=("constant", "pcm"))
    """Drift exponent per device: ``constant`` (drift_nu +- drift_nu_dtod) or ``pcm``
    (aihwkit's conductance-dependent fit: mean -0.0155 ln(G/g_max) + 0.0244 clipped
    to [0.049, 0.1], spread -0.0125 ln(G/g_max) - 0.0059 clipped to [0.008, 0.045])."""
    drift_nu: float = param(0.0, ge=0.0, unit="1")
    """Mean drift exponent nu in G (t/t0)^-nu (constant model)."""
    drift_nu_dtod: float = param(0.0, ge=0.0, unit="1")
    """Device-to-device sigma of nu (constant model); negative draws are clipped to 0."""
    drift_t0_s: float = param(20.0, gt=0.0, unit="s")
    """Time after programming at which the programmed conductance is defined (t0)."""
    t_inference_s: float = param(0.0, ge=0.0, unit="s")
    """Time elapsed since t0 when the array is read; conductances drift by
    ((t_inference + t0) / t0)^-nu. Change it later with ``set_time``."""
    drift_compensation: bool = False
    """Rescale outputs digitally by the ratio of an all-ones calibration read at
    programming time to the same read now (aihwkit's global drift compensation)."""

    # ---- periphery
    input_range: float | None = param(None, gt=0.0, unit="input")
    """DAC full scale: inputs are clipped to [-input_range, input_range] (None: no clip)."""
    dac_bits: int = param(0, ge=0, le=24)
    """DAC resolution: step 2 input_range / (2**bits - 2), as in aihwkit; 0 for none."""
    output_range: float | None = param(None, gt=0.0, unit="output")
    """ADC full scale per array column, in pre-activation units (None: no clip)."""
    adc_bits: int = param(0, ge=0, le=24)
    """ADC resolution: step 2 output_range / (2**bits - 2); 0 for none."""
    adc_stochastic_rounding: bool = False
    """Round ADC outputs up with probability equal to the remainder (unbiased)."""
    out_noise: float = param(0.0, ge=0.0, unit="output")
    """Additive Gaussian sigma at each array column output (before the ADC)."""
    wire_resistance_ohm: float = param(0.0, ge=0.0, unit="ohm")
    """Row-wire resistance between neighbouring cells, for the first-order IR drop."""

    # ---- writes
    dw_min: float = param(0.0, ge=0.0, unit="weight")
    """Weight change of one pulse at the low end of a device's range; 0 means writes
    are program-and-verify to the new target (levels and programming noise apply)."""
    dw_min_dtod: float = param(0.0, ge=0.0, unit="1")
    """Device-to-device relative spread of the pulse step."""
    dw_min_std: float = param(0.0, ge=0.0, unit="1")
    """Cycle-to-cycle relative sigma of each pulse's step."""
    up_down: float = param(0.0, gt=-1.0, lt=1.0, unit="1")
    """Asymmetry (dimensionless): potentiating steps are (1 + up_down), depressing
    (1 - up_down) times the nominal step."""
    up_down_dtod: float = param(0.0, ge=0.0, unit="1")
    """Device-to-device sigma of up_down (draws clipped to (-0.99, 0.99))."""
    soft_bounds: bool = True
    """Steps shrink linearly to zero at the device's bounds (else constant steps, with
    the conductance clipped at the bounds)."""
    pulse_rounding: str = param("stochastic", choices=("stochastic", "nearest"))
    """Request -> pulse count: rounded to nearest, or stochastically (unbiased)."""
    max_pulses: int = param(255, ge=1)
    """Most pulses one device receives in one write (pulse-train length)."""
    update_threshold: float = param(0.0, ge=0.0, unit="weight")
    """Mixed-precision writes (Nandakumar et al., "Mixed-precision deep learning based
    on computational memory", Front. Neurosci. 14, 406, 2020): requested changes add up
    in a digital accumulator per weight, and a device is written only once its
    accumulated change reaches this size, with the whole multiples of it (the rest
    stays in the accumulator). Devices with coarse or noisy writes (PCM programming
    noise, few levels) then see few, meaningful writes. 0: every request is written."""

    # ---- timing and energy
    mvm_time_s: float = param(0.0, ge=0.0, unit="s")
    """Latency of one MVM (one probe; all arrays of the layer work in parallel)."""
    cell_read_energy_j: float = param(0.0, ge=0.0, unit="J")
    """Energy per device per MVM."""
    adc_energy_j: float = param(0.0, ge=0.0, unit="J")
    """Energy per ADC conversion (one per output per row tile per MVM)."""
    pulse_time_s: float = param(0.0, ge=0.0, unit="s")
    """Duration of one programming pulse; rows are written one after another, the
    devices of a row in parallel."""
    pulse_energy_j: float = param(0.0, ge=0.0, unit="J")
    """Energy per programming pulse (program-and-verify counts one per device)."""

    # ---- numerics
    precision: str = param("float64", choices=("float64", "float32"))
    """Floating-point type of the simulated MVM and of the pre-activations it returns
    (float32 is about twice as fast)."""

    def validate(self):
        if self.g_max <= self.g_min:
            raise ParamError(("g_max",), f"must be > g_min ({self.g_min}), got {self.g_max}")
        for name in ("dac_bits", "adc_bits"):
            if getattr(self, name) == 1:
                raise ParamError((name,), "must be 0 (off) or >= 2, got 1")
        if self.dac_bits and self.input_range is None:
            raise ParamError(("input_range",), "must be set when dac_bits > 0")
        if self.adc_bits and self.output_range is None:
            raise ParamError(("output_range",), "must be set when adc_bits > 0")
        stuck = self.stuck_at_gmin_prob + self.stuck_at_gmax_prob + self.stuck_at_random_prob
        if stuck > 1.0:
            raise ParamError(("stuck_at_random_prob",),
                             f"stuck-at probabilities must sum to <= 1, got {stuck}")
        if len(self.pcm_prog_coeffs) == 0:
            raise ParamError(("pcm_prog_coeffs",), "must list at least one coefficient")

    def build(self, weights, bias, rng):
        return Crossbar(self, weights, bias, rng)

    def without_nonidealities(self):
        """No variation, faults, levels, noise, drift, IR drop or converters, exact
        program-and-verify writes, float64 arithmetic (mapping, ranges and tiling
        stay: they change only the rounding of sums)."""
        return self.replace(
            g_max_dtod=0.0, g_min_dtod=0.0, stuck_at_gmin_prob=0.0, stuck_at_gmax_prob=0.0,
            stuck_at_random_prob=0.0, bits_per_cell=0, prog_noise=0.0, read_noise=0.0,
            read_noise_1f_scale=0.0, drift_model="constant", drift_nu=0.0, drift_nu_dtod=0.0,
            t_inference_s=0.0, drift_compensation=False, input_range=None, dac_bits=0,
            output_range=None, adc_bits=0, adc_stochastic_rounding=False, out_noise=0.0,
            wire_resistance_ohm=0.0, dw_min=0.0, dw_min_dtod=0.0, dw_min_std=0.0,
            up_down=0.0, up_down_dtod=0.0, update_threshold=0.0, precision="float64")

    @staticmethod
    def compiled_pass(devices, activations):
        """The crossbar layers' compiled network pass (:mod:`devices.crossbar_chain`)."""
        from devices.crossbar_chain import Chain
        return Chain.of(devices, activations)


def quant_step(full_scale: float, bits: int) -> float:
    """Step of a symmetric ``bits``-bit converter over [-full_scale, full_scale] (0: none)."""
    return 2.0 * full_scale / (2 ** bits - 2) if bits else 0.0


# ---------------------------------------------------------------- kernels
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def dac_kernel(x, bound, step, out, tile_starts, row_sq):
    """out = DAC(x): clipped to +-``bound`` (if > 0), rounded to multiples of ``step`` (if
    > 0), in the precision of ``out`` (float32 converters run over twice the lanes:
    64 x 256 inputs 3.6 -> 1.6 us).

    On the way, for each of the ``len(row_sq)`` row tiles (inputs ``tile_starts[r] <= i
    < tile_starts[r + 1]``), ``row_sq[r, t]`` = the float64 sum of out[t, i]^2, plus 1 in
    the last tile for its bias row: the read-noise variance of each probe. Reassociation
    (allowed in this kernel for that sum: it has no other chain of adds or products)
    lets LLVM vectorise the sum, 5x faster; it changes the rounding of a variance by
    ~1e-16 relative.
    """
    n_probe, n_in = x.shape
    real = out.dtype.type
    b, s = real(bound), real(step)
    inv_step = real(1.0 / step if step > 0.0 else 0.0)
    n_tiles = row_sq.shape[0]
    for t in range(n_probe):
        xt, o = x[t], out[t]
        if bound > 0.0 and step > 0.0:
            for i in range(n_in):
                o[i] = np.rint(min(max(real(xt[i]), -b), b) * inv_step) * s
        elif bound > 0.0:
            for i in range(n_in):
                o[i] = min(max(real(xt[i]), -b), b)
        elif step > 0.0:
            for i in range(n_in):
                o[i] = np.rint(real(xt[i]) * inv_step) * s
        else:
            for i in range(n_in):
                o[i] = xt[i]
        for r in range(n_tiles):
            part = o[tile_starts[r]:tile_starts[r + 1]]  # (from 0: no index wrap-around)
            sq = 0.0
            for i in range(part.shape[0]):
                v = np.float64(part[i])
                sq += v * v
            row_sq[r, t] = sq + (1.0 if r == n_tiles - 1 else 0.0)


def dac_np(x, bound, step, dtype, tile_starts=None):
    """NumPy twin of :func:`dac_kernel`: the converted inputs, and, given ``tile_starts``,
    their row sums of squares per tile (equal up to summation order)."""
    real = np.dtype(dtype).type
    v = x.astype(dtype)
    if bound > 0:
        v = np.clip(v, -real(bound), real(bound))
    if step > 0:
        v = np.rint(v * real(1.0 / step)) * real(step)
    if tile_starts is None:
        return v
    v64 = v.astype(np.float64)
    sums = np.array([(v64[:, i0:i1] ** 2).sum(axis=1)
                     for i0, i1 in zip(tile_starts[:-1], tile_starts[1:])])
    sums[-1] += 1.0
    return v, sums


@njit(cache=True, nogil=True)
def add_tile_perturbation(x, perturbation, n_out, i0, i1, with_bias, out):
    """out[t, j] += sum_{i0 <= i < i1} dW_t[j, i] x[t, i] (+ db_t[j] if ``with_bias``).

    The per-probe conductance offsets of one row tile; ``perturbation`` is in the flat
    ``[W.ravel(), b]`` layout. Same accumulation order as :mod:`devices.ideal`.
    """
    n_probe, n_in = x.shape
    bias0 = n_out * n_in
    for t in range(n_probe):
        for j in range(n_out):
            acc = perturbation[t, bias0 + j] if with_bias else 0.0
            row = j * n_in
            for i in range(i0, i1):
                acc += perturbation[t, row + i] * x[t, i]
            out[t, j] += acc


def add_tile_perturbation_np(x, perturbation, n_out, i0, i1, with_bias, out):
    """NumPy twin of :func:`add_tile_perturbation`."""
    n_probe, n_in = x.shape
    dw = perturbation[:, : n_out * n_in].reshape(n_probe, n_out, n_in)[:, :, i0:i1]
    out += np.einsum("tji,ti->tj", dw, x[:, i0:i1])
    if with_bias:
        out += perturbation[:, n_out * n_in:]


def _ziggurat_tables(layers=256, r=3.6541528853610088, v=4.92867323399e-3):
    """Layer edges x_i, ratios x_{i+1} / x_i and densities exp(-x_i^2 / 2) of a
    ZIGNOR-style ziggurat with 256 layers (98.5 % of draws end at the first compare)."""
    x = np.zeros(layers + 1)
    f = np.exp(-0.5 * r * r)
    x[0], x[1] = v / f, r
    for i in range(2, layers):
        x[i] = np.sqrt(-2.0 * np.log(v / x[i - 1] + f))
        f = np.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1], np.exp(-0.5 * x * x)


# read-only constants, frozen into the kernels
_ZIG_X, _ZIG_RATIO, _ZIG_F = _ziggurat_tables()
_ZIG_R = 3.6541528853610088  # start of the tail
_ZIG_MASK = np.uint64(255)   # low word bits that pick the layer
_PAIR_WORDS = 32   # 64-bit words reserved per pair of normal draws (16 per draw)
_HALF = np.uint64(0xFFFFFFFF)  # (the twin's mask; kernels work on signed words)


@njit(cache=True)
def normal(key, index):
    """Standard normal draw ``index`` of the stream with this key (ziggurat, J. A. Doornik,
    "An improved ziggurat method to generate normal random samples", 2005).

    Draws 2p and 2p + 1 share word ``32 p``: draw 2p + h reads its half h (32 bits),
    whose low 8 bits pick one of 256 layers and whose top 24 bits give a uniform in
    [-1, 1) (first attempts land on a grid of 2^-23 of the layer width: invisible
    next to float32 rounding); 98.5 % of draws end at that first compare, so a pair
    mostly costs one hash. A rejected draw continues in its own 16 words from
    ``32 p + 16 h``: the wedge test (one exponential, against tabulated densities)
    reads the next word, further attempts (52-bit uniforms) every second word, the
    tail from the next word on. An attempt is rejected with probability below 1.5 %,
    so reading past the 16 words has probability below 1e-15. Used for pulse noise
    (one draw at a time); reads draw in bulk from :func:`devsim.crng.normals32`.
    """
    p = np.uint64(index) >> np.uint64(1)
    h = np.int64(np.uint64(index) & np.uint64(1))
    word = np.int64(crng.bits(key, p * np.uint64(_PAIR_WORDS)))
    return _normal_half(key, p, h, (word >> (32 * h)) & 0xFFFFFFFF)


@njit(cache=True)
def _normal_half(key, p, h, half):
    """Draw 2p + h of :func:`normal` from its 32-bit half word (as an int64: signed
    integers convert to float in one instruction, unsigned 64-bit ones do not)."""
    i = half & 255
    u = float(half >> 8) * 2.0 ** -23 - 1.0
    if abs(u) < _ZIG_RATIO[i]:
        return u * _ZIG_X[i]
    return _normal_rejected(key, p * np.uint64(_PAIR_WORDS) + np.uint64(16 * h), i, u)


@njit(cache=True)
def _normal_rejected(key, c, i, u):
    """The rest of :func:`normal` after a first attempt at word ``c`` fell outside its layer."""
    while True:
        if i == 0:
            t = c + np.uint64(1)
            while True:
                x = np.log(1.0 - crng.uniform(key, t)) / _ZIG_R
                y = np.log(1.0 - crng.uniform(key, t + np.uint64(1)))
                t += np.uint64(2)
                if -2.0 * y >= x * x:
                    return x - _ZIG_R if u < 0.0 else _ZIG_R - x
        x = u * _ZIG_X[i]
        f0, f1 = _ZIG_F[i], _ZIG_F[i + 1]
        if f1 + crng.uniform(key, c + np.uint64(1)) * (f0 - f1) < np.exp(-0.5 * x * x):
            return x
        c += np.uint64(2)
        word = crng.bits(key, c)
        i = np.int64(word & _ZIG_MASK)
        u = float(np.int64(word >> np.uint64(12))) * 2.0 ** -51 - 1.0
        if abs(u) < _ZIG_RATIO[i]:
            return u * _ZIG_X[i]


def _normal_tail_np(key, t, negative):
    while True:
        x = np.log(1.0 - crng.uniform_np(key, t)) / _ZIG_R
        y = np.log(1.0 - crng.uniform_np(key, t + np.uint64(1)))
        t += np.uint64(2)
        if -2.0 * y >= x * x:
            return x - _ZIG_R if negative else _ZIG_R - x


def normal_np(key, indices):
    """NumPy twin of :func:`normal` over an array of indices."""
    idx = np.asarray(indices, dtype=np.uint64)
    p, h = idx >> np.uint64(1), idx & np.uint64(1)
    half = (crng.bits_np(key, p * np.uint64(_PAIR_WORDS)) >> (h * np.uint64(32))) & _HALF
    i = (half & _ZIG_MASK).astype(np.int64)
    u = (half >> np.uint64(8)).astype(np.float64) * 2.0 ** -23 - 1.0
    out = u * _ZIG_X[i]
    # rejected first attempts continue at word c = 32 p + 16 h, attempt a at c + 2a
    c = p * np.uint64(_PAIR_WORDS) + h * np.uint64(16)
    todo = ~(np.abs(u) < _ZIG_RATIO[i])
    while todo.any():
        where = np.flatnonzero(todo)
        ii, uu, cc = i.flat[where], u.flat[where], c.flat[where]
        x = uu * _ZIG_X[ii]
        done = np.zeros(where.size, dtype=bool)
        wedge = ii > 0
        f0, f1 = _ZIG_F[ii], _ZIG_F[ii + 1]
        done |= wedge & (f1 + crng.uniform_np(key, cc + np.uint64(1)) * (f0 - f1)
                         < np.exp(-0.5 * x * x))
        for k in np.flatnonzero(~wedge):  # the tail: rare, one at a time
            x[k] = _normal_tail_np(key, cc[k] + np.uint64(1), uu[k] < 0.0)
            done[k] = True
        out.flat[where[done]] = x[done]
        # the next attempt: a fresh 64-bit word, as in the kernel
        nxt = where[~done]
        cn = cc[~done] + np.uint64(2)
        word = crng.bits_np(key, cn)
        i.flat[nxt] = (word & _ZIG_MASK).astype(np.int64)
        u.flat[nxt] = (word >> np.uint64(12)).astype(np.float64) * 2.0 ** -51 - 1.0
        c.flat[nxt] = cn
        accept = np.abs(u.flat[nxt]) < _ZIG_RATIO[i.flat[nxt]]
        out.flat[nxt[accept]] = u.flat[nxt[accept]] * _ZIG_X[i.flat[nxt[accept]]]
        todo[...] = False
        todo.flat[nxt[~accept]] = True
    return out


_DRAWS_PER_BLOCK = 4096
"""Normal draws a readout makes per call of :func:`devsim.crng.normals32`: whole
blocks of rows at once, so that narrow layers (10 outputs) do not pay a call and a
loop start per row (64 x 10 readout 6.4 -> 3.9 us), in a work array that stays in L1."""


@njit(cache=True)
def draw_block(n_out, n_groups):
    """Normal draws reserved per probe and row tile: one per output and per reference
    column, rounded up to even so that every probe's draws start a fresh pair
    (:func:`devsim.crng.normals32` then needs no odd-start step)."""
    return (n_out + n_groups + 1) & ~1


@njit(cache=True, nogil=True, error_model="numpy")
def readout_rows(acc, bias, out, accumulate, row_sq, var_scale, var_tj, out_var, shared_var,
                 group, n_groups, key, key_round, base, first, adc_step, adc_bound,
                 stochastic, t0, t1):
    """Column noise and ADC of one row tile for probes t0 <= t < t1, into ``out``.

    For probe t and output j: ``y = acc[t, j] + bias[j] + N(0, v) - s[t, group[j]]`` with
    ``v = row_sq[t] * var_scale + var_tj[t, j] + out_var`` (terms with empty arrays
    are left out) and ``s`` the common-mode noise of a shared reference column
    (variance ``shared_var[t, g]``); then ADC clipping to +-adc_bound and rounding to
    ``adc_step`` (if > 0); ``y`` is added to ``out`` or written there. Probe p uses
    normal draws ``base + p * draw_block(n, n_groups) + j`` of
    :func:`devsim.crng.normal32` (j = n + g for group g's reference) and, for
    stochastic rounding, uniform draws ``base + p * n + j`` of ``key_round``.

    Arithmetic is in the precision of ``out`` (and ``bias``, which must match it):
    float32 arrays add, scale and round in float32, over twice the SIMD lanes of
    float64 (22 -> 14 us for 64 x 256 outputs); variances, square roots and
    stochastic rounding are float64 in both. Each probe's row goes through short
    single-purpose loops (draws, noise, ADC, store) so that LLVM vectorises them.
    Row t is probe ``first + t`` of its call (a call split across threads passes each
    part's first probe).
    """
    n = acc.shape[1]
    real = out.dtype.type
    base = np.uint64(base)
    stride = np.uint64(draw_block(n, n_groups))
    has_bias = bias.shape[0] > 0
    has_sq = row_sq.shape[0] > 0
    has_tj = var_tj.shape[0] > 0
    has_shared = shared_var.shape[0] > 0
    noisy = out_var > 0.0 or has_sq or has_tj
    common = np.zeros(n_groups, dtype=out.dtype)
    y = np.empty(n, dtype=out.dtype)
    z = np.empty(n)
    step, bound = real(adc_step), real(adc_bound)
    inv_step = real(1.0 / adc_step if adc_step > 0.0 else 0.0)
    # the draws of consecutive probes are consecutive: made for a block of rows at once
    per_row = draw_block(n, n_groups)
    block = max(1, _DRAWS_PER_BLOCK // per_row)
    draws = np.empty(min(block, max(t1 - t0, 0)) * per_row, dtype=np.float32)
    for t in range(t0, t1):
        p = np.uint64(first + t)
        k = (t - t0) % block
        if k == 0 and (noisy or has_shared):
            rows = min(block, t1 - t)
            crng.normals32(key, base + p * stride, draws[:rows * per_row])
        zn = draws[k * per_row:(k + 1) * per_row]
        rbase = base + p * np.uint64(n)
        a = acc[t]
        if has_bias:
            for j in range(n):
                y[j] = real(a[j]) + bias[j]
        else:
            for j in range(n):
                y[j] = a[j]
        if noisy:
            var = out_var + (row_sq[t] * var_scale if has_sq else 0.0)
            if has_tj:
                v = var_tj[t]
                for j in range(n):
                    y[j] += real(np.sqrt(var + v[j])) * real(zn[j])
            else:
                sd = real(np.sqrt(var))
                for j in range(n):
                    y[j] += sd * real(zn[j])
        if has_shared:
            for g in range(n_groups):
                common[g] = real(np.sqrt(shared_var[t, g])) * real(zn[n + g])
            for j in range(n):
                y[j] -= common[group[j]]
        if adc_step > 0.0:
            if stochastic:
                for j in range(n):
                    z[j] = crng.uniform(key_round, rbase + np.uint64(j))
                for j in range(n):
                    v = np.float64(min(max(y[j], -bound), bound))
                    y[j] = np.floor(v * (1.0 / adc_step) + z[j]) * adc_step
            else:
                for j in range(n):
                    v = min(max(y[j], -bound), bound)
                    y[j] = np.rint(v * inv_step) * step
        o = out[t]
        if accumulate:
            for j in range(n):
                o[j] += y[j]
        else:
            for j in range(n):
                o[j] = y[j]


def readout_np(acc, bias, out, accumulate, row_sq, var_scale, var_tj, out_var, shared_var,
               group, n_groups, key, key_round, base, first, adc_step, adc_bound, stochastic):
    """NumPy twin of :func:`readout_rows` over all probes (same draws, same precision,
    vectorised)."""
    n_probe, n = acc.shape
    real = out.dtype.type
    t = np.uint64(first) + np.arange(n_probe, dtype=np.uint64)[:, None]
    first = np.uint64(base) + t * np.uint64(draw_block(n, n_groups))
    v = np.full((n_probe, n), float(out_var))
    if row_sq.shape[0]:
        v += row_sq[:, None] * var_scale
    if var_tj.shape[0]:
        v += var_tj
    y = acc.astype(out.dtype)
    if bias.shape[0]:
        y += bias
    if out_var > 0 or row_sq.shape[0] or var_tj.shape[0]:
        z = crng.normal32_np(key, first + np.arange(n, dtype=np.uint64)[None, :])
        y = y + np.sqrt(v).astype(out.dtype) * z.astype(out.dtype)
    if shared_var.shape[0]:
        z = crng.normal32_np(key, first + np.uint64(n)
                             + np.arange(n_groups, dtype=np.uint64)[None, :])
        y = y - (np.sqrt(shared_var).astype(out.dtype) * z.astype(out.dtype))[:, group]
    if adc_step > 0:
        y = np.clip(y, -real(adc_bound), real(adc_bound))
        if stochastic:
            u = crng.uniform_np(key_round, np.uint64(base) + t * np.uint64(n)
                                + np.arange(n, dtype=np.uint64)[None, :])
            y = (np.floor(y.astype(np.float64) * (1.0 / adc_step) + u) * adc_step
                 ).astype(out.dtype)
        else:
            y = np.rint(y * real(1.0 / adc_step)) * real(adc_step)
    if accumulate:
        out += y
    else:
        out[...] = y


@njit(cache=True)
def _pulse_step(u, lo, hi, up, step_up, step_down, noise, soft):
    """Conductance (range units) of one device after one pulse."""
    step = (step_up if up else step_down) * (1.0 + noise)
    if soft and hi > lo:
        step *= ((hi - u) if up else (u - lo)) / (hi - lo)
    u = u + step if up else u - step
    return min(max(u, lo), hi)


@njit(cache=True)
def pulse_kernel(request, u_pos, u_neg, lo_pos, hi_pos, lo_neg, hi_neg, stuck_pos,
                 stuck_neg, up_pos, down_pos, up_neg, down_neg, differential, dw_std,
                 soft, stochastic, max_pulses, key, key_round, base, counts):
    """Apply pulse trains; ``request`` is the wanted change of each cell in pulses.

    Cell k gets ``n = round(|request[k]|)`` pulses (stochastically rounded if asked,
    at most ``max_pulses``), recorded in ``counts[k]``. A differential pair keeps the
    weight on one device with its partner near the floor: an up pulse depresses G-
    while G- is above its floor by more than half a step, else potentiates G+ (and
    symmetrically for down pulses). A reference-mapped cell pulses its one device.
    Stuck devices take pulses without moving. Pulse p of cell k uses normal draw
    ``base + k * max_pulses + p`` for its cycle-to-cycle step noise.
    """
    n_cells = request.shape[0]
    for k in range(n_cells):
        r = request[k]
        up = r > 0.0
        mag = abs(r)
        n = np.floor(mag)
        frac = mag - n
        if stochastic:
            if crng.uniform(key_round, base + np.uint64(k)) < frac:
                n += 1.0
        elif frac >= 0.5:
            n += 1.0
        n_pulses = min(int(n), max_pulses)
        counts[k] = n_pulses
        for p in range(n_pulses):
            noise = 0.0
            if dw_std > 0.0:
                noise = dw_std * normal(key, base + np.uint64(k) * np.uint64(max_pulses)
                                        + np.uint64(p))
            if differential:
                # the partner to move away from its floor, else the carrier toward it
                if up:
                    use_neg = u_neg[k] - lo_neg[k] > 0.5 * down_neg[k]
                else:
                    use_neg = not (u_pos[k] - lo_pos[k] > 0.5 * down_pos[k])
                if use_neg:
                    if stuck_neg[k] == 0:
                        u_neg[k] = _pulse_step(u_neg[k], lo_neg[k], hi_neg[k], not up,
                                               up_neg[k], down_neg[k], noise, soft)
                    continue
            if stuck_pos[k] == 0:
                u_pos[k] = _pulse_step(u_pos[k], lo_pos[k], hi_pos[k], up,
                                       up_pos[k], down_pos[k], noise, soft)


def _pulse_step_np(u, lo, hi, up, step_up, step_down, noise, soft):
    """NumPy twin of :func:`_pulse_step` over arrays."""
    step = np.where(up, step_up, step_down) * (1.0 + noise)
    if soft:
        span = hi - lo
        factor = np.where(up, hi - u, u - lo) / np.where(span > 0, span, 1.0)
        step = np.where(span > 0, step * factor, step)
    u = np.where(up, u + step, u - step)
    return np.minimum(np.maximum(u, lo), hi)


def pulse_np(request, u_pos, u_neg, lo_pos, hi_pos, lo_neg, hi_neg, stuck_pos, stuck_neg,
             up_pos, down_pos, up_neg, down_neg, differential, dw_std, soft, stochastic,
             max_pulses, key, key_round, base, counts):
    """NumPy twin of :func:`pulse_kernel`: all cells at once, one pulse index at a time."""
    k = np.arange(request.size, dtype=np.uint64)
    up = request > 0.0
    mag = np.abs(request)
    n = np.floor(mag)
    frac = mag - n
    if stochastic:
        n += crng.uniform_np(key_round, np.uint64(base) + k) < frac
    else:
        n += frac >= 0.5
    n = np.minimum(n.astype(np.int64), max_pulses)
    counts[:] = n
    for p in range(int(n.max(initial=0))):
        active = n > p
        noise = np.zeros(request.size)
        if dw_std > 0:
            noise = dw_std * normal_np(key, np.uint64(base) + k * np.uint64(max_pulses)
                                       + np.uint64(p))
        use_neg = np.zeros(request.size, dtype=bool)
        if differential:
            use_neg = np.where(up, u_neg - lo_neg > 0.5 * down_neg,
                               ~(u_pos - lo_pos > 0.5 * down_pos))
        move = active & use_neg & (stuck_neg == 0)
        u_neg[move] = _pulse_step_np(u_neg, lo_neg, hi_neg, ~up, up_neg, down_neg, noise,
                                     soft)[move]
        move = active & ~use_neg & (stuck_pos == 0)
        u_pos[move] = _pulse_step_np(u_pos, lo_pos, hi_pos, up, up_pos, down_pos, noise,
                                     soft)[move]


# ---------------------------------------------------------------- the array
class Crossbar(RowSplitArray, ClockedArray):
    """One layer's weights on tiled analog arrays; fulfils :class:`devsim.device.DenseDevice`.

    Device state is kept in range units: ``u = (G - g_min) / (g_max - g_min)`` with
    nominal g_min, g_max (``u_pos`` the G+ devices, ``u_neg`` the G- devices or the
    reference column), on the augmented (n_out, n_in + 1) matrix ``[W | b]``.
    """

    def __init__(self, params: CrossbarParams, weights: np.ndarray, bias: np.ndarray,
                 rng: np.random.Generator):
        p = self.params = params
        self.shape = tuple(weights.shape)
        self.meter = Meter()
        n_out, n_in = self.shape
        m = n_in + 1  # the bias is one more row, driven at 1
        self._rng = rng
        self._seed = int(rng.integers(2 ** 63))
        self._keys = {s: np.uint64(crng.stream_key(self._seed, s)) for s in
                      (_STREAM_READ, _STREAM_ROUND, _STREAM_PULSE, _STREAM_PULSE_ROUND)}
        self._buffers = {}           # work arrays of forward, by thread
        self.version = 0             # counts the refreshes of what reads use
        self._accumulated = np.zeros((n_out, m))  # mixed precision: requests not yet written
        self._reads = 0              # probes read so far, the position in the read streams
        self._writes = np.uint64(0)  # draw counter of the pulse streams
        self._key_read, self._key_round = self._keys[_STREAM_READ], self._keys[_STREAM_ROUND]
        self._dac_bound = p.input_range or 0.0
        self._dac_step = quant_step(self._dac_bound, p.dac_bits)
        self._adc_bound = p.output_range or 0.0
        self._adc_step = quant_step(self._adc_bound, p.adc_bits)
        self._adc_stochastic = p.adc_stochastic_rounding
        self._out_var = p.out_noise ** 2
        self._diff = p.mapping == "differential"
        self._k = p.w_max if self._diff else 2.0 * p.w_max
        self._dtype = np.dtype(p.precision)
        self._g_range = p.g_max - p.g_min
        self._g0 = p.g_min / self._g_range  # g_min in range units

        # tiles: row tiles over the augmented inputs, column tiles over the outputs
        self._row_tiles = [(r0, min(r0 + p.tile_rows, m)) for r0 in range(0, m, p.tile_rows)]
        self._tile_keys = self._read_keys(len(self._row_tiles))
        self._tile_starts = np.array([min(r0, n_in) for r0, _ in self._row_tiles] + [n_in],
                                     dtype=np.int64)  # the tiles' input ranges
        self._group = (np.arange(n_out) // p.tile_cols).astype(np.int64)
        self._n_groups = int(self._group[-1]) + 1
        self._draw_block = int(draw_block(n_out, self._n_groups))
        cells = m * (2 * n_out if self._diff else n_out + self._n_groups)
        conversions = n_out * len(self._row_tiles)
        self._read_energy_j = cells * p.cell_read_energy_j + conversions * p.adc_energy_j

        # static device-to-device properties; a reference column is one device per
        # row of each array, so its draws are shared by the outputs of that array
        self._first = np.searchsorted(self._group, np.arange(self._n_groups))
        self._lo_pos, self._hi_pos = self._draw_bounds((n_out, m))
        self._lo_neg, self._hi_neg = map(self._per_array, self._draw_bounds((n_out, m)))
        self._stuck_pos = self._draw_stuck((n_out, m))
        self._stuck_neg = tuple(map(self._per_array, self._draw_stuck((n_out, m))))
        self._up_pos, self._down_pos = self._draw_steps((n_out, m))
        self._up_neg, self._down_neg = self._draw_steps((n_out, m))

        # programming
        self._u_pos = np.zeros((n_out, m))
        self._u_neg = np.zeros((n_out, m))
        if not self._diff:
            self._u_neg[...] = self._per_array(self._programmed(
                np.full((n_out, m), 0.5), self._lo_neg, self._hi_neg, self._stuck_neg))
        self._program(np.concatenate([weights, bias[:, None]], axis=1).astype(np.float64),
                      None)
        self._nu_pos = self._draw_nu(self._u_pos)
        self._nu_neg = self._per_array(self._draw_nu(self._u_neg))
        self._t = p.t_inference_s
        self._draw_1f()
        self._refresh()

    def _read_keys(self, n_tiles):
        """(read, rounding) stream keys of each row tile: the array's read streams for the
        first, streams of their own for the others."""
        return [(self._key_read, self._key_round)] + [
            (np.uint64(crng.stream_key(self._seed, _STREAM_TILES + 2 * r)),
             np.uint64(crng.stream_key(self._seed, _STREAM_TILES + 2 * r + 1)))
            for r in range(1, n_tiles)]

    def _per_array(self, a):
        """``a`` as a reference column holds it: the first output's row in each array."""
        return a if self._diff else np.ascontiguousarray(a[self._first][self._group])

    # ---- static draws
    def _draw_bounds(self, shape):
        """Each device's own (g_min, g_max) in range units, spread by the ``_dtod`` sigmas."""
        p, rng = self.params, self._rng
        lo = np.zeros(shape)
        hi = np.ones(shape)
        if p.g_min_dtod > 0:
            g = np.maximum(p.g_min * (1.0 + p.g_min_dtod * rng.standard_normal(shape)), 0.0)
            lo = (g - p.g_min) / self._g_range
        if p.g_max_dtod > 0:
            g = p.g_max * (1.0 + p.g_max_dtod * rng.standard_normal(shape))
            hi = np.maximum((g - p.g_min) / self._g_range, lo + 1e-3)  # keep a range open
        return lo, hi

    def _draw_stuck(self, shape):
        """Fault code of each device and, for stuck-at-random, its place in its range."""
        p = self.params
        code = np.zeros(shape, dtype=np.int8)
        probs = (p.stuck_at_gmin_prob, p.stuck_at_gmax_prob, p.stuck_at_random_prob)
        if sum(probs) == 0:
            return code, np.zeros(shape)
        u = self._rng.random(shape)
        edges = np.cumsum(probs)
        code[u < edges[2]] = _STUCK_RANDOM
        code[u < edges[1]] = _STUCK_MAX
        code[u < edges[0]] = _STUCK_MIN
        return code, self._rng.random(shape)

    def _draw_steps(self, shape):
        """Each device's (potentiating, depressing) pulse step in range units."""
        p, rng = self.params, self._rng
        step = np.full(shape, p.dw_min / self._k)  # one pulse moves k * step in weight
        if p.dw_min_dtod > 0:
            step *= np.maximum(1.0 + p.dw_min_dtod * rng.standard_normal(shape), 0.0)
        asym = np.full(shape, p.up_down)
        if p.up_down_dtod > 0:
            asym = np.clip(asym + p.up_down_dtod * rng.standard_normal(shape), -0.99, 0.99)
        return step * (1.0 + asym), step * (1.0 - asym)

    def _draw_nu(self, u):
        """Each device's drift exponent, given its programmed conductance ``u``."""
        p = self.params
        if p.drift_model == "pcm":
            g_rel = np.maximum((self._g0 + u) * self._g_range / p.g_max, 1e-6)
            mu = np.clip(-0.0155 * np.log(g_rel) + 0.0244, 0.049, 0.1)
            sig = np.clip(-0.0125 * np.log(g_rel) - 0.0059, 0.008, 0.045)
            return np.abs(mu + sig * self._rng.standard_normal(u.shape))
        nu = np.full(u.shape, p.drift_nu)
        if p.drift_nu_dtod > 0:
            nu = np.maximum(nu + p.drift_nu_dtod * self._rng.standard_normal(u.shape), 0.0)
        return nu

    # ---- programming
    def _programmed(self, target, lo, hi, stuck):
        """Conductances (range units) a program-and-verify of ``target`` leaves behind."""
        p = self.params
        u = np.clip(target, 0.0, 1.0)
        if p.bits_per_cell:
            levels = 2 ** p.bits_per_cell - 1
            u = np.rint(u * levels) / levels
        if p.prog_noise > 0:
            if p.prog_noise_model == "constant":
                sigma = np.full(u.shape, p.prog_noise)
            elif p.prog_noise_model == "proportional":
                sigma = p.prog_noise * (self._g0 + u)
            else:
                g_rel = (self._g0 + u) * self._g_range / p.g_max
                poly = np.zeros(u.shape)
                for c in p.pcm_prog_coeffs[::-1]:
                    poly = poly * g_rel + c
                sigma = p.prog_noise * poly * (p.g_max / 25.0) / self._g_range
            u = u + sigma * self._rng.standard_normal(u.shape)
        u = np.minimum(np.maximum(u, lo), hi)
        code, where = stuck
        if code.any():
            u = np.where(code == _STUCK_MIN, lo, u)
            u = np.where(code == _STUCK_MAX, hi, u)
            u = np.where(code == _STUCK_RANDOM, lo + (hi - lo) * where, u)
        return u

    def _program(self, target_w, mask):
        """Program-and-verify the cells of the augmented matrix where ``mask`` holds (all
        when None) to weights ``target_w``; only those cells draw programming noise."""
        if mask is None:
            mask = np.ones(target_w.shape, dtype=bool)
        t = target_w[mask]

        def program(target, lo, hi, stuck):
            return self._programmed(target, lo[mask], hi[mask], (stuck[0][mask], stuck[1][mask]))

        if self._diff:
            w_max = self.params.w_max
            new_neg = program(np.maximum(-t, 0.0) / w_max, self._lo_neg, self._hi_neg,
                              self._stuck_neg)
            new_pos = program(np.maximum(t, 0.0) / w_max, self._lo_pos, self._hi_pos,
                              self._stuck_pos)
            self._u_neg[mask] = new_neg
        else:
            new_pos = program(self._u_neg[mask] + t / self._k, self._lo_pos, self._hi_pos,
                              self._stuck_pos)
        self._u_pos[mask] = new_pos

    # ---- what a read sees
    def _draw_1f(self):
        """Fresh standard-normal draws of the accumulated 1/f noise (one per device)."""
        shape = self._u_pos.shape
        self._z1f = None
        if self.params.read_noise_1f_scale > 0:
            self._z1f = (self._rng.standard_normal(shape),
                         self._per_array(self._rng.standard_normal(shape)))

    def _conductances(self):
        """(G+, G-) in range units as read at the current inference time (no read noise)."""
        p = self.params
        gp, gn = self._g0 + self._u_pos, self._g0 + self._u_neg
        t = self._t + p.drift_t0_s
        if self._t > 0:
            gp = gp * (t / p.drift_t0_s) ** (-self._nu_pos)
            gn = gn * (t / p.drift_t0_s) ** (-self._nu_neg)
        if self._z1f is not None:
            spread = p.read_noise_1f_scale * np.sqrt(np.log((t + p.t_read_s) / (2.0 * p.t_read_s)))
            gp = self._add_1f(gp, self._g0 + self._u_pos, spread, self._z1f[0])
            gn = self._add_1f(gn, self._g0 + self._u_neg, spread, self._z1f[1])
        return gp, gn

    def _add_1f(self, g, g_prog, spread, z):
        g_rel = g_prog * self._g_range / self.params.g_max
        q_s = np.minimum(0.0088 / np.maximum(np.abs(g_rel) ** 0.65, 1e-3), 0.2)
        return np.maximum(g + np.abs(g) * q_s * spread * z, 0.0)

    def _ir_attenuation(self, gp, gn):
        """First-order IR drop: the voltage reaching each device, as a fraction of the driven one.

        Rows are driven from one end. Wire segment s of a row carries the current of
        every device past it, so the drop to column position c is
        ``r * sum_{s <= c} sum_{d >= s} G_d V`` to first order (the devices' own
        currents computed at the undropped voltage); column wires are taken as ideal.
        Pairs sit side by side (G+ then G-); the reference column is last in its array.
        """
        p = self.params
        r_g = p.wire_resistance_ohm * self._g_range * 1e-6  # ohm * (range units -> S)
        ap, an = np.ones_like(gp), np.ones_like(gn)
        for g in range(self._n_groups):
            cols = np.flatnonzero(self._group == g)
            if self._diff:
                row = np.empty((gp.shape[1], 2 * cols.size))
                row[:, 0::2], row[:, 1::2] = gp[cols].T, gn[cols].T
            else:
                row = np.concatenate([gp[cols].T, gn[cols[:1]].T], axis=1)
            load = np.cumsum(row[:, ::-1], axis=1)[:, ::-1]      # current past segment s
            a = np.maximum(1.0 - r_g * np.cumsum(load, axis=1), 0.0)
            if self._diff:
                ap[cols], an[cols] = a[:, 0::2].T, a[:, 1::2].T
            else:
                ap[cols], an[cols] = a[:, :-1].T, a[:, -1:].T
        return ap, an

    def _refresh(self):
        """Recompute what reads use: effective weights per row tile, noise variances."""
        p = self.params
        physical = self._t > 0 or p.read_noise_1f_scale > 0 or p.wire_resistance_ohm > 0
        if physical:
            gp, gn = self._conductances()
            if p.wire_resistance_ohm > 0:
                ap, an = self._ir_attenuation(gp, gn)
                gp, gn = gp * ap, gn * an
            w_aug = self._k * (gp - gn)
        else:
            gp, gn = self._g0 + self._u_pos, self._g0 + self._u_neg
            w_aug = self._k * (self._u_pos - self._u_neg)
        self._w_aug = w_aug
        self._alpha = 1.0
        if p.drift_compensation and self._t > 0:
            w_ref = self._k * (self._u_pos - self._u_neg)
            self._alpha = np.abs(w_ref.sum(axis=1)).sum() / np.abs(w_aug.sum(axis=1)).sum()
        n_in = self.shape[1]
        self._w_operands = [self._gemm_operand(w_aug[:, r0:min(r1, n_in)])
                            for r0, r1 in self._row_tiles]
        self._bias = np.ascontiguousarray(w_aug[:, n_in], dtype=self._dtype)
        # read-noise variances in weight units
        s2 = (self._k * p.read_noise) ** 2
        self._var_scale, self._var_mats, self._shared_mats = 0.0, None, None
        if s2 > 0 and p.read_noise_model == "constant":
            self._var_scale = s2 if not self._diff else 2.0 * s2
        elif s2 > 0:
            dev = s2 * (gp ** 2 + (gn ** 2 if self._diff else 0.0))
            self._var_mats = [np.ascontiguousarray(dev[:, r0:r1]) for r0, r1 in self._row_tiles]
            if not self._diff:
                ref = s2 * gn[self._first] ** 2  # (n_groups, m)
                self._shared_mats = [np.ascontiguousarray(ref[:, r0:r1])
                                     for r0, r1 in self._row_tiles]
        self._readout = (s2 > 0 or p.out_noise > 0 or p.adc_bits > 0)
        self.version += 1

    def chain_layer(self):
        """What :mod:`devices.crossbar_chain` needs to run this layer in a compiled pass:
        ``(ints, floats, arrays)`` (``arrays`` are the ones ``ints`` holds the addresses
        of; they change when :attr:`version` does), or None where the layer needs more
        than one row tile, per-device read-noise variances or a reference column's
        common-mode noise, or has a single output (NumPy's matrix-vector product)."""
        if (len(self._row_tiles) > 1 or self._var_mats is not None or self.shape[0] < 2
                or (not self._diff and self._var_scale > 0)):
            return None
        w = self._w_operands[0]
        transposed = not w.flags.c_contiguous  # the (n_out, n_in) rows seen as their .T
        rows = w.T if transposed else w
        arrays = (rows, self._bias, self._group)
        ints = (self.shape[1], self.shape[0], rows.ctypes.data, int(transposed),
                self._bias.ctypes.data, int(self._readout), int(self._adc_stochastic),
                int(self._key_read.view(np.int64)), int(self._key_round.view(np.int64)),
                self._group.ctypes.data, self._n_groups)
        floats = (self._dac_bound, self._dac_step, self._var_scale, self._out_var,
                  self._adc_step, self._adc_bound, self._alpha)
        return ints, floats, arrays

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffers"] = {}  # work arrays, keyed by this process's threads
        return state

    def forked(self, stream):
        """A copy in the present state whose reads (and ADC rounding) draw from streams
        of their own, numbered from ``stream``, starting at their first draw."""
        fork = copy.copy(self)
        fork._buffers, fork.meter = {}, Meter()
        fork._seed = int(crng.stream_key_np(self._seed, _STREAM_FORKS + stream)) >> 1
        fork._reads = 0
        fork._key_read = np.uint64(crng.stream_key(fork._seed, _STREAM_READ))
        fork._key_round = np.uint64(crng.stream_key(fork._seed, _STREAM_ROUND))
        fork._tile_keys = fork._read_keys(len(self._row_tiles))
        return fork

    def _gemm_operand(self, w):
        """A tile's weights as the right operand of ``x @ operand``. float32 tiles of 32
        or more outputs are stored transposed: OpenBLAS multiplies a row-major (n_in,
        n_out) operand 1.2-1.3x faster at batch 64. float64 keeps the layout of
        :mod:`devices.ideal`, whose products it reproduces exactly."""
        if self._dtype == np.float32 and w.shape[0] >= 32:
            return np.ascontiguousarray(w.T, dtype=self._dtype)
        return np.ascontiguousarray(w, dtype=self._dtype).T

    # ---- DenseDevice
    def forward(self, x, node_perturbation=None, weight_perturbation=None, out=None):
        """Pre-activations of ``x`` (float32 or float64 rows), in the array's precision;
        written into ``out`` when it is a C-contiguous array of their shape and type
        (a caller that keeps its arrays spares the page faults of a fresh one per call:
        a third of a 64-256-256-10 pass at batch 1024).

        Calls of many probes split their rows across threads (:mod:`devsim.parallel`).
        """
        x, weight_perturbation = self._inputs(x, weight_perturbation)
        n_probe = x.shape[0]
        call = self.begin_forward(n_probe)
        out = self._output(out, n_probe)
        threads = parallel.row_threads(n_probe)
        if threads == 1:
            self._forward_rows(x, call, 0, node_perturbation, weight_perturbation, out)
            return out

        def rows(t0, t1):
            self._forward_rows(x[t0:t1], call, t0,
                               None if node_perturbation is None else node_perturbation[t0:t1],
                               None if weight_perturbation is None
                               else weight_perturbation[t0:t1], out[t0:t1])

        parallel.run_split(rows, n_probe, threads)
        return out

    # ---- RowSplitDevice
    def begin_forward(self, n_probe):
        """Open a call of ``n_probe`` probes: meter its reads and reserve their noise
        draws; returns the call's first draw (a Python int: ``np.uint64()`` costs
        0.4 us; the kernels take it as uint64). Probe p of the array's life draws
        ``p * draw_block(n_out, n_groups) + j`` of each row tile's streams (tile r has
        keys of its own), so its noise does not depend on how probes are grouped into
        calls."""
        base = self._reads * self._draw_block
        if self._readout:
            self._reads += n_probe
        self.meter.reads += n_probe
        self.meter.time_s += n_probe * self.params.mvm_time_s
        self.meter.energy_j += n_probe * self._read_energy_j
        return base

    def forward_rows(self, call, x, first, node_perturbation=None, weight_perturbation=None,
                     out=None):
        """Pre-activations of probes ``first, first + 1, ...`` of an opened call, as
        :meth:`forward` computes them in that call; parts of one call may run at once.
        They are written into ``out`` when it is an array of their shape and type."""
        x, weight_perturbation = self._inputs(x, weight_perturbation)
        out = self._output(out, x.shape[0])
        self._forward_rows(x, call, first, node_perturbation, weight_perturbation, out)
        return out

    def _output(self, out, n_probe):
        """``out`` if it can hold the pre-activations of ``n_probe`` probes, else a new array."""
        if (out is None or out.shape != (n_probe, self.shape[0]) or out.dtype != self._dtype
                or not out.flags.c_contiguous):
            return np.empty((n_probe, self.shape[0]), dtype=self._dtype)
        return out

    @staticmethod
    def _inputs(x, weight_perturbation):
        x = np.ascontiguousarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        if weight_perturbation is not None:
            weight_perturbation = np.ascontiguousarray(weight_perturbation, dtype=np.float64)
        return x, weight_perturbation

    def _forward_rows(self, x, base, first, node_perturbation, weight_perturbation, out):
        """Probes ``first, first + 1, ...`` of a call whose draws start at ``base``,
        into ``out``; safe to run concurrently on disjoint rows (work arrays are per thread)."""
        n_probe, n_in = x.shape
        n_out = self.shape[0]
        n_tiles = len(self._row_tiles)
        xq, tile_acc, row_sq = self._work(n_probe)
        if self._dac_bound > 0 or x.dtype != self._dtype or row_sq.shape[0]:
            dac_kernel(x, self._dac_bound, self._dac_step, xq, self._tile_starts, row_sq)
        else:
            xq = x
        for r, (r0, r1) in enumerate(self._row_tiles):
            last = r == n_tiles - 1
            i1 = min(r1, n_in)
            xs = xq if n_tiles == 1 else xq[:, r0:i1]
            # a tile read through the periphery, or added to an earlier one, is consumed
            # here: its sums live in scratch
            acc = out if r == 0 and not self._readout else tile_acc
            parallel.matmul(xs, self._w_operands[r], acc, first)
            if last and not self._readout:  # a readout adds it on the way
                acc += self._bias
            if weight_perturbation is not None:
                add_tile_perturbation(xq, weight_perturbation, n_out, r0, i1, last, acc)
            if last and node_perturbation is not None:
                acc += node_perturbation
            if self._readout:
                self._read_columns(acc, out, r > 0, xq, row_sq, r, last, base, first)
            elif r > 0:
                out += acc
        if self._alpha != 1.0:
            out *= self._alpha

    def _work(self, n_probe):
        """This thread's work arrays for ``n_probe`` probes (fresh arrays of this size
        cost page faults on every call): the converted inputs, one row tile's sums, and
        the tiles' row sums of squares where the read noise needs them."""
        key = threading.get_ident()
        work = self._buffers.get(key)
        if work is None or work[0].shape[0] != n_probe:
            (n_out, n_in), n_tiles = self.shape, len(self._row_tiles)
            work = self._buffers[key] = (
                np.empty((n_probe, n_in), dtype=self._dtype),
                np.empty((n_probe, n_out), dtype=self._dtype),
                np.empty((n_tiles, n_probe)) if self._var_scale > 0 else _EMPTY2)
        return work

    def _read_columns(self, acc, out, accumulate, xq, row_sq, r, last, base, first):
        """Column noise and ADC of row tile ``r`` (see :func:`readout_rows`), into ``out``,
        for probes ``first, first + 1, ...`` of a call whose tile draws start at ``base``;
        ``row_sq`` holds the tiles' row sums of squares of ``xq`` (from :func:`dac_kernel`)
        where the read noise is uniform."""
        n_probe, n_out = acc.shape
        var_tj, shared = _EMPTY2, _EMPTY2
        if self._var_scale > 0:
            row_sq = row_sq[r]
            if not self._diff:
                shared = np.repeat((row_sq * self._var_scale)[:, None], self._n_groups, axis=1)
        else:
            row_sq = _EMPTY1
        if self._var_mats is not None:
            r0, r1 = self._row_tiles[r]
            x2 = np.square(xq[:, r0:min(r1, self.shape[1])], dtype=np.float64)
            mat = self._var_mats[r]
            var_tj = parallel.matmul(x2, mat[:, :x2.shape[1]].T,
                                     np.empty((n_probe, n_out)), first)
            if last:
                var_tj += mat[:, -1]
            if self._shared_mats is not None:
                ref = self._shared_mats[r]
                shared = parallel.matmul(x2, ref[:, :x2.shape[1]].T,
                                         np.empty((n_probe, self._n_groups)), first)
                if last:
                    shared += ref[:, -1]
        readout_rows(acc, self._bias if last else _EMPTY1, out, accumulate, row_sq,
                     self._var_scale, var_tj, self._out_var, shared, self._group,
                     self._n_groups, *self._tile_keys[r], base, first, self._adc_step, self._adc_bound,
                     self._adc_stochastic, 0, n_probe)

    def write(self, delta):
        p = self.params
        n_out, n_in = self.shape
        d = np.concatenate([delta[: n_out * n_in].reshape(n_out, n_in),
                            delta[n_out * n_in:, None]], axis=1)
        if p.update_threshold > 0:
            d = self._transfer(d)
            if not d.any():  # nothing reached a device: no write happens at all
                return
        if p.dw_min == 0:
            mask = d != 0
            current = self._k * (self._u_pos - self._u_neg)
            self._program(current + d, mask)
            counts = mask.astype(np.int64) * (2 if self._diff else 1)
        else:
            counts = np.zeros(d.size, dtype=np.int64)
            base = self._writes
            self._writes += np.uint64(d.size * p.max_pulses)
            shape = self._u_pos.shape
            u_pos, u_neg = self._u_pos.reshape(-1), self._u_neg.reshape(-1)
            pulse_kernel((d / p.dw_min).reshape(-1), u_pos, u_neg,
                         self._lo_pos.reshape(-1), self._hi_pos.reshape(-1),
                         self._lo_neg.reshape(-1), self._hi_neg.reshape(-1),
                         self._stuck_pos[0].reshape(-1), self._stuck_neg[0].reshape(-1),
                         self._up_pos.reshape(-1), self._down_pos.reshape(-1),
                         self._up_neg.reshape(-1), self._down_neg.reshape(-1),
                         self._diff, p.dw_min_std, p.soft_bounds,
                         p.pulse_rounding == "stochastic", p.max_pulses,
                         self._keys[_STREAM_PULSE], self._keys[_STREAM_PULSE_ROUND], base,
                         counts)
            counts = counts.reshape(shape)
        total = int(counts.sum())
        self.meter.pulses += total
        self.meter.energy_j += total * p.pulse_energy_j
        self.meter.time_s += float(counts.max(axis=0).sum()) * p.pulse_time_s
        self._refresh()

    def _transfer(self, d):
        """Mixed precision: add ``d`` to the accumulator and return the whole multiples
        of ``update_threshold`` it now holds (the part the devices get), keeping the rest."""
        self._accumulated += d
        step = self.params.update_threshold
        transfer = np.trunc(self._accumulated / step) * step
        self._accumulated -= transfer
        return transfer

    def pending(self):
        """Requested changes held in the mixed-precision accumulator, not yet on the
        devices (flat layer layout; zeros without ``update_threshold``)."""
        n_in = self.shape[1]
        return np.concatenate([self._accumulated[:, :n_in].ravel(), self._accumulated[:, n_in]])

    def read(self):
        """Effective weights (drift, 1/f noise and IR drop included; no read noise)."""
        n_out, n_in = self.shape
        w = self._w_aug * self._alpha
        return np.concatenate([w[:, :n_in].ravel(), w[:, n_in]])

    # ---- beyond the DeviceArray contract
    def set_time(self, t_inference_s: float) -> None:
        """Read the array ``t_inference_s`` seconds after t0 (drift, fresh 1/f draw)."""
        if t_inference_s < 0:
            raise ValueError(f"t_inference_s must be >= 0, got {t_inference_s}")
        self._t = float(t_inference_s)
        self._draw_1f()
        self._refresh()

    @property
    def stuck(self) -> tuple[np.ndarray, np.ndarray]:
        """Fault codes of the (G+, G-) devices: 0 ok, 1 at g_min, 2 at g_max, 3 random."""
        return self._stuck_pos[0].copy(), self._stuck_neg[0].copy()

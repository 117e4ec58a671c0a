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

from devices.crossbar_conductance import Conductances
from devices.crossbar_periphery import (add_tile_perturbation, dac_kernel, draw_block,
                                        quant_step, readout_rows)
from devices.crossbar_writes import pulse_kernel
from devsim import crng, parallel
from devsim.device import ClockedArray, DeviceParams, Meter, RowSplitArray
from devsim.params import ParamError, param

_STREAM_READ, _STREAM_ROUND, _STREAM_PULSE, _STREAM_PULSE_ROUND = 1, 2, 3, 4
_STREAM_TILES = 16  # streams 16 + 2r and 17 + 2r: reads and rounding of row tile r >= 1
_STREAM_FORKS = 1 << 32  # seeds of forked copies (evaluation reads): this plus the fork
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
    """Rescale outputs digitally by the ratio of a calibration read at programming time
    to the same read now: the mean absolute output of one-hot inputs, one per row, the
    bias row included (aihwkit 1.2's ``GlobalDriftCompensation``), read exactly."""

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


# ---------------------------------------------------------------- the array
class Crossbar(RowSplitArray, ClockedArray):
    """One layer's weights on tiled analog arrays: its devices
    (:class:`~devices.crossbar_conductance.Conductances`), the periphery of each tile,
    the noise streams of its reads and writes, and the meter."""

    def __init__(self, params: CrossbarParams, weights: np.ndarray, bias: np.ndarray,
                 rng: np.random.Generator):
        p = self.params = params
        self.shape = tuple(weights.shape)
        self.meter = Meter()
        n_out, n_in = self.shape
        m = n_in + 1  # the bias is one more row, driven at 1
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
        self._dtype = np.dtype(p.precision)

        # tiles: row tiles over the augmented inputs, column tiles over the outputs
        self._row_tiles = [(r0, min(r0 + p.tile_rows, m)) for r0 in range(0, m, p.tile_rows)]
        self._tile_keys = self._read_keys(len(self._row_tiles))
        self._tile_starts = np.array([min(r0, n_in) for r0, _ in self._row_tiles] + [n_in],
                                     dtype=np.int64)  # the tiles' input ranges
        self._group = (np.arange(n_out) // p.tile_cols).astype(np.int64)
        self._n_groups = int(self._group[-1]) + 1
        self._draw_block = int(draw_block(n_out, self._n_groups))
        self._diff = p.mapping == "differential"
        n_cells = m * (2 * n_out if self._diff else n_out + self._n_groups)
        conversions = n_out * len(self._row_tiles)
        self._read_energy_j = n_cells * p.cell_read_energy_j + conversions * p.adc_energy_j

        self.cells = Conductances(p, (n_out, m), self._group, rng)
        """The layer's devices: conductances, faults, drift."""
        self.cells.program(np.concatenate([weights, bias[:, None]], axis=1).astype(np.float64))
        self.cells.start(p.t_inference_s)
        self._refresh()

    def _read_keys(self, n_tiles):
        """(read, rounding) stream keys of each row tile: the array's read streams for the
        first, streams of their own for the others."""
        return [(self._key_read, self._key_round)] + [
            (np.uint64(crng.stream_key(self._seed, _STREAM_TILES + 2 * r)),
             np.uint64(crng.stream_key(self._seed, _STREAM_TILES + 2 * r + 1)))
            for r in range(1, n_tiles)]

    def _refresh(self):
        """Recompute what reads use: effective weights per row tile, noise variances."""
        p, cells = self.params, self.cells
        s2 = (cells.k * p.read_noise) ** 2  # read-noise variance in weight units
        if cells.drifted or (s2 > 0 and p.read_noise_model != "constant"):
            gp, gn = cells.read()  # (only where used: two arrays of the layer's size)
        w_aug = cells.k * (gp - gn) if cells.drifted else cells.programmed_weights()
        self._w_aug = w_aug
        self._alpha = 1.0
        if p.drift_compensation and cells.t > 0:  # one-hot reads: every weight alone
            self._alpha = np.abs(cells.programmed_weights()).sum() / np.abs(w_aug).sum()
        n_in = self.shape[1]
        self._w_operands = [self._gemm_operand(w_aug[:, r0:min(r1, n_in)])
                            for r0, r1 in self._row_tiles]
        self._bias = np.ascontiguousarray(w_aug[:, n_in], dtype=self._dtype)
        self._var_scale, self._var_mats, self._shared_mats = 0.0, None, None
        if s2 > 0 and p.read_noise_model == "constant":
            self._var_scale = s2 if not self._diff else 2.0 * s2
        elif s2 > 0:
            dev = s2 * (gp ** 2 + (gn ** 2 if self._diff else 0.0))
            self._var_mats = [np.ascontiguousarray(dev[:, r0:r1]) for r0, r1 in self._row_tiles]
            if not self._diff:
                ref = s2 * gn[cells.first] ** 2  # (n_groups, m)
                self._shared_mats = [np.ascontiguousarray(ref[:, r0:r1])
                                     for r0, r1 in self._row_tiles]
        self._readout = (s2 > 0 or p.out_noise > 0 or p.adc_bits > 0)
        self.version += 1

    def chain_layer(self):
        """What :mod:`devices.crossbar_chain` needs to run this layer in a compiled pass:
        ``(ints, floats, arrays)`` (``arrays`` are the ones ``ints`` holds the addresses
        of; they change when :attr:`version` does), or None where the layer needs more
        than one row tile, per-device read-noise variances or a reference column's
        common-mode noise."""
        if (len(self._row_tiles) > 1 or self._var_mats is not None
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
        cells = self.cells
        if p.dw_min == 0:
            mask = d != 0
            target = cells.programmed_weights()
            target += d
            cells.program(target, mask)
            per_weight = 2 if self._diff else 1  # devices re-programmed per changed weight
            total = per_weight * int(np.count_nonzero(mask))
            rounds = per_weight * int(np.count_nonzero(mask.any(axis=0)))
        else:
            counts = np.zeros(d.size, dtype=np.int64)
            base = self._writes
            self._writes += np.uint64(d.size * p.max_pulses)
            shape = cells.u_pos.shape
            pulse_kernel((d / p.dw_min).reshape(-1), cells.u_pos.reshape(-1),
                         cells.u_neg.reshape(-1), cells.lo_pos.reshape(-1),
                         cells.hi_pos.reshape(-1), cells.lo_neg.reshape(-1),
                         cells.hi_neg.reshape(-1), cells.stuck_pos[0].reshape(-1),
                         cells.stuck_neg[0].reshape(-1), cells.up_pos.reshape(-1),
                         cells.down_pos.reshape(-1), cells.up_neg.reshape(-1),
                         cells.down_neg.reshape(-1), self._diff, p.dw_min_std, p.soft_bounds,
                         p.pulse_rounding == "stochastic", p.max_pulses,
                         self._keys[_STREAM_PULSE], self._keys[_STREAM_PULSE_ROUND], base,
                         counts)
            total = int(counts.sum())
            rounds = int(counts.reshape(shape).max(axis=0).sum())
        self.meter.pulses += total
        self.meter.energy_j += total * p.pulse_energy_j
        self.meter.time_s += float(rounds) * p.pulse_time_s
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
        self.cells.set_time(t_inference_s)
        self._refresh()

    @property
    def stuck(self) -> tuple[np.ndarray, np.ndarray]:
        """Fault codes of the (G+, G-) devices: 0 ok, 1 at g_min, 2 at g_max, 3 random."""
        return self.cells.stuck_pos[0].copy(), self.cells.stuck_neg[0].copy()

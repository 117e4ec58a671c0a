"""Stochastic magnetic tunnel junctions: a two-state telegraph process with Néel–Brown rates.

A superparamagnetic MTJ's free layer hops between two states, written here as m = +1
(the state a positive current stabilises) and m = -1. Each state is left at the
Néel–Brown rate with a linear spin-transfer-torque tilt of the barrier,

    k±(I) = exp(-Δ (1 ± x)) / τ0,     x = (I - I_off) / I_c0,

so the mean dwell times are τ± = τ0 exp(Δ (1 ± x)), the occupancy is
P(m = +1) = 1 / (1 + exp(-2 Δ x)) (⟨m⟩ = tanh(Δ x): the p-bit sigmoid) and the
correlation time is τc = (1/τ+ + 1/τ-)⁻¹ (Camsari et al., PRX 2017; the sMTJ
telegraph model of Koenders et al., Phys. Rev. Applied 2025).

The device is read every ``dt`` with the current held over each sample. The per-sample
flip probabilities are the exact ones of the continuous-time chain over ``dt``,

    p± = k± / (k+ + k-) · (1 - exp(-(k+ + k-) dt)),

which tend to 1 - exp(-dt/τ±) when dt ≪ τ∓ and keep the occupancy and the step
correlation exp(-dt/τc) exact at any ``dt`` (the first-passage form 1 - exp(-dt/τ±)
alone would bias the occupancy once dt is comparable to τ). The model uses the linear
tilt at every current; it has no precessional (Sun) regime above I_c0.

Random numbers come from :mod:`devsim.crng`: sample s of device j of an array of n is
draw ``s*n + j`` of the array's key, so results do not depend on the thread count,
and the state carries over from one call to the next.

Three uses share one junction model: :class:`MTJArray` (n devices with
device-to-device spread), the p-bit neuron ``activation: {type: mtj_pbit}`` and the
intrinsic node noise ``node_noise: {type: mtj_telegraph}``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np
from numba import carray, cfunc, njit, prange, types

from devsim.device import Meter, NoiseSource, NoiseSourceParams
from devsim import crng
from devsim.activations import Activation, ActivationParams, CompiledNeuron
from devsim.params import Params, param

_BLOCK = 256
"""Devices per parallel work item: each writes 2 kB stretches of every output row, which
stream far better than one cache line per row."""
_PARALLEL_SAMPLES = 1 << 22
"""Calls with fewer samples run serially: waking the thread pool costs microseconds on an
idle machine but milliseconds on a busy one (measured in BENCHMARKS.md)."""
_S11 = np.uint64(11)


# ----------------------------------------------------------------------- kernels
@njit(cache=True)
def threshold(p):
    """The integer form of a flip probability: ``crng.bits(k, c) >> 11 < threshold(p)``
    exactly when ``crng.uniform(k, c) < p``, without a float conversion per draw."""
    return np.uint64(np.ceil(p * 2.0**53))


@njit(cache=True)
def leave_probabilities(x, delta, log_rate0):
    """Exact per-sample probabilities (p+, p-) of leaving m = +1 and m = -1.

    ``x`` is the reduced current (I - I_off)/I_c0 and ``log_rate0`` is ln(dt/τ0).
    """
    log_plus = log_rate0 - delta * (1.0 + x)  # ln(k+ dt)
    log_minus = log_rate0 - delta * (1.0 - x)
    leave = -np.expm1(-(np.exp(log_plus) + np.exp(log_minus)))
    return (leave / (1.0 + np.exp(log_minus - log_plus)),
            leave / (1.0 + np.exp(log_plus - log_minus)))


@njit(cache=True)
def telegraph_drive_block(state, current, offset, ic0, delta, log_rate0, n_sub, key, start,
                          out, lo, hi):
    """Devices lo..hi-1 of :func:`telegraph_drive`, serially; returns their switch count."""
    n_steps, n = current.shape
    count = 0
    for t in range(n_steps):
        first = start + t * n_sub
        for j in range(lo, hi):
            p_plus, p_minus = leave_probabilities(
                (current[t, j] - offset[j]) / ic0[j], delta[j], log_rate0)
            base = threshold(p_minus)  # flip iff draw < base + diff * up: the
            diff = threshold(p_plus) - base  # threshold of the current state (mod 2^64)
            up = np.uint64(state[j] > 0)
            ups = 0
            for k in range(n_sub):  # branch-free: flips are unpredictable
                flip = crng.bits(key, (first + k) * n + j) >> _S11 < base + diff * up
                up ^= np.uint64(flip)
                count += flip
                ups += np.int64(up)
            state[j] = 2 * np.int64(up) - 1
            out[t, j] = (2 * ups - n_sub) / n_sub
    return count


@njit(cache=True, parallel=True)
def telegraph_drive(state, current, offset, ic0, delta, log_rate0, n_sub, key, start, out):
    """Drive n devices through T steps of ``n_sub`` samples each; returns the switch count.

    Row t of ``current`` (T, n) is held over step t; ``out[t, j]`` receives the mean of
    m over that step's samples. ``state`` (n,) int8 is updated in place; ``start`` is
    the index of the first sample (samples already taken by this array). Blocks of
    devices run in parallel.
    """
    n = current.shape[1]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    switches = np.zeros(n_blocks, np.int64)
    for b in prange(n_blocks):
        switches[b] = telegraph_drive_block(state, current, offset, ic0, delta, log_rate0,
                                            n_sub, key, start, out, b * _BLOCK,
                                            min((b + 1) * _BLOCK, n))
    return switches.sum()


@njit(cache=True)
def telegraph_hold_block(state, p_plus, p_minus, key, start, out, lo, hi):
    """Devices lo..hi-1 of :func:`telegraph_hold`, serially; returns their switch count."""
    n_steps, n = out.shape
    width = hi - lo
    base = np.empty(width, np.uint64)  # as in telegraph_drive
    diff = np.empty(width, np.uint64)
    up = np.empty(width, np.uint64)
    for i in range(width):
        base[i] = threshold(p_minus[lo + i])
        diff[i] = threshold(p_plus[lo + i]) - base[i]
        up[i] = state[lo + i] > 0
    count = 0
    for t in range(n_steps):
        first = (start + t) * n + lo
        for i in range(width):  # branch-free: flips are unpredictable
            flip = crng.bits(key, first + i) >> _S11 < base[i] + diff[i] * up[i]
            up[i] ^= np.uint64(flip)
            count += flip
            out[t, lo + i] = 2.0 * up[i] - 1.0
    for i in range(width):
        state[lo + i] = 2 * np.int64(up[i]) - 1
    return count


@njit(cache=True)
def telegraph_hold_single(state, p_plus, p_minus, key, start, out):
    """:func:`telegraph_hold` for one device, its state in a register: a single chain is
    bound by the latency of one sample's update, not by throughput."""
    base = threshold(p_minus[0])
    diff = threshold(p_plus[0]) - base
    up = np.uint64(state[0] > 0)
    count = 0
    for t in range(out.shape[0]):
        flip = crng.bits(key, start + t) >> _S11 < base + diff * up
        up ^= np.uint64(flip)
        count += flip
        out[t, 0] = 2.0 * up - 1.0
    state[0] = 2 * np.int64(up) - 1
    return count


@njit(cache=True, parallel=True)
def telegraph_hold(state, p_plus, p_minus, key, start, out):
    """Sample n devices at fixed flip probabilities for T steps; returns the switch count.

    ``out[t, j]`` (T, n) receives m of device j at sample ``start + t``; ``state`` is
    updated in place. Same draws as :func:`telegraph_drive` with ``n_sub = 1``; blocks
    of devices run in parallel.
    """
    n = out.shape[1]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    switches = np.zeros(n_blocks, np.int64)
    for b in prange(n_blocks):
        switches[b] = telegraph_hold_block(state, p_plus, p_minus, key, start, out,
                                           b * _BLOCK, min((b + 1) * _BLOCK, n))
    return switches.sum()


_PBIT_SIGNATURE = types.void(types.CPointer(types.float64), types.int64, types.int64,
                             types.CPointer(types.int64), types.CPointer(types.float64),
                             types.CPointer(types.int8))


@cfunc(_PBIT_SIGNATURE, cache=True)
def pbit_pass(z_at, rows, n, ints_at, floats_at, state_at):
    """A p-bit layer's pass for compiled executors (:class:`devsim.activations.
    CompiledNeuron`): the (rows, n) pre-activations at ``z_at`` become the neurons'
    outputs in place, as :meth:`MTJNeuron.__call__` computes them. ``ints``: the
    switches of the call (out), samples per read window, the stream key (int64 bits),
    the first sample (advanced), binary levels?; ``floats``: offsets, I_c0 and Δ of the
    n devices, then the current per unit input and ln(dt/τ0); ``state``: the devices'."""
    z = carray(z_at, (rows, n))
    ints, floats = carray(ints_at, (5,)), carray(floats_at, (3 * n + 2,))
    state = carray(state_at, (n,))
    amps, log_rate0 = floats[3 * n], floats[3 * n + 1]
    current = np.empty((rows, n))
    for t in range(rows):
        for j in range(n):
            current[t, j] = z[t, j] * amps
    n_sub = ints[1]
    ints[0] = telegraph_drive_block(state, current, floats[:n], floats[n:2 * n],
                                    floats[2 * n:3 * n], log_rate0, n_sub,
                                    np.uint64(ints[2]), ints[3], z, 0, n)
    ints[3] += rows * n_sub
    if ints[4]:
        for t in range(rows):
            for j in range(n):
                z[t, j] = 0.5 * (1.0 + z[t, j])


# ------------------------------------------------------------------ NumPy twins
def leave_probabilities_np(x, delta, log_rate0):
    """NumPy twin of :func:`leave_probabilities` (broadcasting)."""
    log_plus = log_rate0 - delta * (1.0 + x)
    log_minus = log_rate0 - delta * (1.0 - x)
    with np.errstate(over="ignore"):
        leave = -np.expm1(-(np.exp(log_plus) + np.exp(log_minus)))
        return (leave / (1.0 + np.exp(log_minus - log_plus)),
                leave / (1.0 + np.exp(log_plus - log_minus)))


def telegraph_drive_np(state, current, offset, ic0, delta, log_rate0, n_sub, key, start, out):
    """NumPy twin of :func:`telegraph_drive`: vectorised over devices, stepping in time,
    comparing float uniforms where the kernel compares integer thresholds."""
    n_steps, n = current.shape
    devices = np.arange(n, dtype=np.uint64)
    m = state.astype(np.int64)
    switches = 0
    for t in range(n_steps):
        p_plus, p_minus = leave_probabilities_np((current[t] - offset) / ic0, delta, log_rate0)
        acc = np.zeros(n, np.int64)
        for k in range(n_sub):
            sample = np.uint64(start + t * n_sub + k)
            flip = crng.uniform_np(key, sample * np.uint64(n) + devices) < np.where(
                m > 0, p_plus, p_minus)
            m = np.where(flip, -m, m)
            switches += int(flip.sum())
            acc += m
        out[t] = acc / n_sub
    state[:] = m
    return switches


def telegraph_hold_np(state, p_plus, p_minus, key, start, out):
    """NumPy twin of :func:`telegraph_hold`."""
    n_steps, n = out.shape
    devices = np.arange(n, dtype=np.uint64)
    m = state.astype(np.int64)
    switches = 0
    for t in range(n_steps):
        sample = np.uint64(start + t)
        flip = crng.uniform_np(key, sample * np.uint64(n) + devices) < np.where(
            m > 0, p_plus, p_minus)
        m = np.where(flip, -m, m)
        switches += int(flip.sum())
        out[t] = m
    state[:] = m
    return switches


# ------------------------------------------------------------------- the junction
@dataclass(frozen=True)
class MTJParams(Params):
    """A superparamagnetic MTJ read every ``dt``, with device-to-device spread.

    The noise source and the p-bit neuron take these fields too, so the same names
    appear flat under ``node_noise:`` and ``activation:`` in YAML.
    """

    delta: float = param(2.3, gt=0.0, unit="1")
    """Thermal stability Δ = E_b / (k_B T) of the free layer at zero current."""
    tau0: float = param(1e-9, gt=0.0, unit="s")
    """Attempt time τ0 of the Néel–Brown law τ = τ0 exp(Δ)."""
    ic0: float = param(46e-6, gt=0.0, unit="A")
    """Critical current I_c0 of the spin-transfer-torque tilt of the barrier."""
    dt: float = param(1e-9, gt=0.0, unit="s")
    """Sampling interval: the time between two reads of a device."""
    delta_dtod: float = param(0.0, ge=0.0, unit="1")
    """Device-to-device spread of Δ: each device has Δ·exp(delta_dtod·ε), ε ~ N(0, 1)."""
    ic0_dtod: float = param(0.0, ge=0.0, unit="1")
    """Device-to-device spread of I_c0: each device has I_c0·exp(ic0_dtod·ε)."""
    offset_dtod: float = param(0.0, ge=0.0, unit="A")
    """Standard deviation across devices of the current offset I_off (stray fields,
    stack asymmetry): the current at which a device sits in either state half the time."""
    read_energy: float = param(0.0, ge=0.0, unit="J")
    """Energy of one read of one device (0: not modelled)."""
    switch_energy: float = param(0.0, ge=0.0, unit="J")
    """Energy the read-out circuit spends per state change of a device (0: not modelled)."""

    def junction(self) -> "MTJParams":
        """The junction fields alone (without those of a neuron or noise source)."""
        return MTJParams(**{f.name: getattr(self, f.name) for f in fields(MTJParams)})

    def build_array(self, n: int, rng: np.random.Generator, current=0.0) -> "MTJArray":
        """An array of ``n`` junctions, each with its own draw of the spread, in states
        drawn from equilibrium at ``current`` (A; a scalar or one value per device)."""
        return MTJArray(self.junction(), n, rng, current)


class MTJArray:
    """``n`` junctions with their own Δ, I_c0 and I_off; the state carries across calls.

    ``delta``, ``ic0`` and ``offset`` hold the drawn per-device values: device
    internals for tests and analysis, not a controller-side signal.
    """

    def __init__(self, params: MTJParams, n: int, rng: np.random.Generator, current=0.0):
        self.params = params
        self.n = n
        self.delta = params.delta * np.exp(params.delta_dtod * rng.standard_normal(n))
        self.ic0 = params.ic0 * np.exp(params.ic0_dtod * rng.standard_normal(n))
        self.offset = params.offset_dtod * rng.standard_normal(n)
        self.log_rate0 = float(np.log(params.dt / params.tau0))
        self.key = crng.stream_key_np(int(rng.integers(2**63)), 0)
        p_up = 0.5 * (1.0 + np.tanh(self.delta * (current - self.offset) / self.ic0))
        self.state = np.where(rng.random(n) < p_up, 1, -1).astype(np.int8)
        self.samples = 0
        """Samples taken from every device so far (the position in the random stream)."""
        self.meter = Meter()

    def drive(self, current: np.ndarray, n_sub: int = 1) -> np.ndarray:
        """Mean m of each device over each step: (T, n) currents in A, each held for
        ``n_sub`` samples."""
        current = np.ascontiguousarray(current, dtype=np.float64)
        if current.ndim != 2 or current.shape[1] != self.n:
            raise ValueError(f"current has shape {current.shape}, expected (T, {self.n})")
        out = np.empty(current.shape)
        args = (self.state, current, self.offset, self.ic0, self.delta, self.log_rate0,
                n_sub, self.key, self.samples, out)
        if self.n > _BLOCK and current.size * n_sub >= _PARALLEL_SAMPLES:
            switches = telegraph_drive(*args)
        else:
            switches = telegraph_drive_block(*args, 0, self.n)
        self._count(current.shape[0] * n_sub, switches)
        return out

    def hold(self, current, n_steps: int) -> np.ndarray:
        """m of each device at ``n_steps`` successive samples (n_steps, n) under a
        constant current (A; a scalar or one value per device)."""
        p_plus, p_minus = self.leave_probabilities(current)
        out = np.empty((n_steps, self.n))
        args = (self.state, p_plus, p_minus, self.key, self.samples, out)
        if self.n == 1:
            switches = telegraph_hold_single(*args)
        elif self.n > _BLOCK and out.size >= _PARALLEL_SAMPLES:
            switches = telegraph_hold(*args)
        else:
            switches = telegraph_hold_block(*args, 0, self.n)
        self._count(n_steps, switches)
        return out

    def leave_probabilities(self, current) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample flip probabilities (p+, p-) of every device at ``current`` (A)."""
        x = (np.broadcast_to(np.asarray(current, np.float64), (self.n,)) - self.offset) / self.ic0
        return leave_probabilities_np(x, self.delta, self.log_rate0)

    def _count(self, samples: int, switches: int) -> None:
        self.samples += samples
        reads = samples * self.n
        self.meter.reads += reads
        self.meter.time_s += samples * self.params.dt
        self.meter.energy_j += (reads * self.params.read_energy
                                + int(switches) * self.params.switch_energy)


# ---------------------------------------------------------------- p-bit neuron
@dataclass(frozen=True)
class MTJNeuronParams(ActivationParams, MTJParams, kind="mtj_pbit"):
    """A binary stochastic neuron (p-bit): one sMTJ per neuron, driven by its input.

    The pre-activation z drives the current I = z · gain · I_c0 / (2Δ) (nominal Δ and
    I_c0), so a nominal device in equilibrium reads +1 with probability sigmoid(gain·z).
    Each probe is one read window of ``read_samples`` samples; the neuron outputs the
    window's mean. The device state carries over from probe to probe and call to call,
    so a short window on a slow device remembers earlier inputs: that is the physics.
    """

    gain: float = param(1.0, gt=0.0, unit="1/pre-activation")
    """Slope of the nominal switching sigmoid per unit of pre-activation."""
    read_samples: int = param(1, ge=1)
    """Samples averaged per probe (the read window); 1 gives a binary output."""
    levels: str = param("binary", choices=("binary", "bipolar"))
    """Output of a sample: ``binary`` (0 or 1) or ``bipolar`` (-1 or +1)."""

    def build(self, n, rng):
        return MTJNeuron(self, self.build_array(n, rng))


class MTJNeuron(Activation):
    """A layer of p-bit neurons: ``neuron(z)`` samples, ``mean`` and ``derivative`` give
    the nominal device's equilibrium response (for the reference baseline only)."""

    stateful = True

    def __init__(self, params: MTJNeuronParams, array: MTJArray):
        self.params = params
        self.array = array
        self.meter = array.meter
        self._amps = params.gain * params.ic0 / (2.0 * params.delta)
        self._binary = params.levels == "binary"
        super().__init__(self._sample, self._slope)

    def forked(self, stream):
        """A copy in the present device states, drawing from a stream of its own."""
        fork = copy.deepcopy(self)
        fork.array.key = crng.stream_key_np(int(self.array.key), 1 + stream)
        fork.array.samples = 0
        return fork

    def _sample(self, z):
        m = self.array.drive(z * self._amps, self.params.read_samples)
        return 0.5 * (1.0 + m) if self._binary else m

    def compiled(self) -> CompiledNeuron:
        """:func:`pbit_pass` with this layer's devices, their live states and the
        position in their stream."""
        a, n_sub = self.array, self.params.read_samples
        key = np.array([a.key], dtype=np.uint64).view(np.int64)[0]
        ints = np.array([0, n_sub, key, a.samples, self._binary], dtype=np.int64)
        floats = np.concatenate([a.offset, a.ic0, a.delta, [self._amps, a.log_rate0]])
        return CompiledNeuron(pbit_pass.address, ints, floats, a.state,
                              lambda rows, switches: a._count(rows * n_sub, switches))

    def mean(self, z: np.ndarray) -> np.ndarray:
        """Expected output of a nominal device in equilibrium at input ``z``."""
        s = 0.5 * (1.0 + np.tanh(0.5 * self.params.gain * z))
        return s if self._binary else 2.0 * s - 1.0

    def _slope(self, z):
        s = 0.5 * (1.0 + np.tanh(0.5 * self.params.gain * z))
        return (1.0 if self._binary else 2.0) * self.params.gain * s * (1.0 - s)


# ----------------------------------------------------------------- noise source
@dataclass(frozen=True)
class MTJTelegraphNoiseParams(NoiseSourceParams, MTJParams, kind="mtj_telegraph"):
    """Read-out of telegraph sMTJs added to the pre-activations in a noisy pass.

    Sample value: mean + amplitude·m + read_noise·N(0, 1) (pre-activation units; the
    Koenders et al. code adds the read-out voltage in volts directly). By default every
    node has its own device, read once per probe. With ``shared``, one device is read
    T·n_nodes times per call and its successive samples go to successive nodes, row
    after row, as in the hardware demonstration of Koenders et al., so neighbouring
    nodes see correlated noise.
    """

    mean: float = param(0.0, unit="pre-activation")
    """Mean read-out level (pre-activation units)."""
    amplitude: float = param(0.01, ge=0.0, unit="pre-activation")
    """Half the distance between the two read-out levels (pre-activation units)."""
    read_noise: float = param(0.0, ge=0.0, unit="pre-activation")
    """Standard deviation of the Gaussian read-out noise (pre-activation units)."""
    bias: float = param(0.0, unit="A")
    """Constant current through the devices; tilts the occupancy towards m = +1."""
    shared: bool = False
    """One device time-multiplexed over all nodes instead of one device per node."""

    def build(self, n_nodes, rng):
        array = self.build_array(1 if self.shared else n_nodes, rng, self.bias)
        return MTJTelegraphNoise(self, array, n_nodes, rng.spawn(1)[0])


class MTJTelegraphNoise(NoiseSource):
    """Telegraph read-out noise of ``n_nodes`` nodes; the device state carries across calls."""

    stateful = True

    def __init__(self, params: MTJTelegraphNoiseParams, array: MTJArray, n_nodes: int,
                 rng: np.random.Generator):
        self.params = params
        self.array = array
        self.meter = array.meter
        self.n_nodes = n_nodes
        self._rng = rng

    def sample(self, n_probes: int) -> np.ndarray:
        p = self.params
        if p.shared:
            m = self.array.hold(p.bias, n_probes * self.n_nodes).reshape(n_probes, self.n_nodes)
        else:
            m = self.array.hold(p.bias, n_probes)
        noise = p.mean + p.amplitude * m
        if p.read_noise:
            noise += p.read_noise * self._rng.standard_normal(m.shape)
        return noise

"""A FeFET synapse array: an example of a device model that plugs into devsim.

Each weight is one ferroelectric FET whose channel conductance follows the partial
polarization ``p`` in [0, 1] of its gate ferroelectric, read against a reference at
mid-range:

    w = w_max (2 q(p) - 1) g,

with ``q`` the device's programmable states (``levels`` evenly spaced values; 0 for a
continuous conductance) and ``g`` the device's own conductance scale, lognormal across
devices (``g = exp(d2d_sigma * e)``, e ~ N(0, 1), drawn once). The bias is one more
device per output, driven at an input of 1.

Writes are pulse trains: the write circuit turns a requested change ``dw`` into
``round(dw / (2 w_max step_up))`` pulses (its nominal step; it knows neither ``g`` nor
the asymmetry), at most ``max_pulses``; each moves ``p`` up by ``step_up`` or down by
``step_down``, clipped to [0, 1]. Unequal steps make depression land differently from
potentiation, and the levels quantize what a read sees.

Reads add Gaussian noise of ``read_noise`` (weight units) to every output of every
probe, drawn from devsim's counter-based generator keyed on the array's seed and the
probe's place in the array's life: the same bits for any thread count or grouping of
probes into calls. Weight perturbations add to the effective weights (conductance
offsets), node perturbations to the outputs.

What makes this a plugin is only its packaging: ``pyproject.toml`` names
:class:`FeFETParams` in the ``devsim.devices`` entry-point group and the ``presets``
folder in ``devsim.presets``. Nothing in devsim refers to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devsim import crng
from devsim.device import DeviceArray, DeviceParams, Meter, split_flat
from devsim.params import param

__all__ = ["FeFETParams", "FeFETArray"]


@dataclass(frozen=True)
class FeFETParams(DeviceParams, kind="fefet"):
    """A FeFET synapse array: a few conductance levels, lognormal device-to-device
    variation, asymmetric pulsed writes, read noise (see the module docstring)."""

    levels: int = param(32, ge=0)
    """Programmable conductance states, evenly spaced (0: continuous)."""
    w_max: float = param(1.0, gt=0.0, unit="weight")
    """Weight of a device at full polarization (p = 1) and nominal scale."""
    step_up: float = param(1.0 / 31.0, gt=0.0, le=1.0, unit="1")
    """Polarization change of one potentiating pulse, as a fraction of the range."""
    step_down: float = param(1.0 / 31.0, gt=0.0, le=1.0, unit="1")
    """Polarization change of one depressing pulse, as a fraction of the range."""
    max_pulses: int = param(64, ge=1)
    """Most pulses one device receives in one write."""
    d2d_sigma: float = param(0.0, ge=0.0, unit="1")
    """Spread of ln g, each device's conductance scale (multiplicative, lognormal)."""
    read_noise: float = param(0.0, ge=0.0, unit="weight")
    """Standard deviation of the Gaussian noise on every output of every read."""

    def build(self, weights, bias, rng):
        return FeFETArray(self, weights, bias, rng)

    def without_nonidealities(self):
        """Continuous conductance, no spread, no read noise, symmetric pulses."""
        return self.replace(levels=0, d2d_sigma=0.0, read_noise=0.0, step_down=self.step_up)


class FeFETArray(DeviceArray):
    """One layer of FeFET synapses; polarization ``p`` on the augmented (n_out, n_in + 1)
    matrix ``[W | b]``."""

    def __init__(self, params: FeFETParams, weights, bias, rng: np.random.Generator):
        self.params = params
        self.shape = tuple(np.shape(weights))
        self.meter = Meter()
        n_out, n_in = self.shape
        self._key = crng.stream_key_np(int(rng.integers(2 ** 63)), 0)
        self._scale = np.exp(params.d2d_sigma * rng.standard_normal((n_out, n_in + 1)))
        target = np.concatenate([weights, np.reshape(bias, (-1, 1))], axis=1) / params.w_max
        self._p = np.clip((target + 1.0) / 2.0, 0.0, 1.0)  # programmed at build
        self._reads = 0  # probes read so far: the position in the read-noise stream
        self._refresh()

    def _refresh(self):
        """The effective weights [W | b] that reads see."""
        levels = self.params.levels
        q = np.rint(self._p * (levels - 1)) / (levels - 1) if levels > 1 else self._p
        self._w = self.params.w_max * (2.0 * q - 1.0) * self._scale

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        x = np.asarray(x, dtype=np.float64)
        n_probe, (n_out, n_in) = x.shape[0], self.shape
        out = x @ self._w[:, :n_in].T + self._w[:, n_in]
        if weight_perturbation is not None:
            dw, db = weight_perturbation[:, :n_out * n_in], weight_perturbation[:, n_out * n_in:]
            out += np.einsum("tji,ti->tj", dw.reshape(n_probe, n_out, n_in), x) + db
        if node_perturbation is not None:
            out += node_perturbation
        if self.params.read_noise > 0:
            index = (self._reads + np.arange(n_probe))[:, None] * n_out + np.arange(n_out)
            out += self.params.read_noise * crng.normal_np(self._key, index)
        self._reads += n_probe
        self.meter.reads += n_probe
        return out

    def write(self, delta):
        p = self.params
        n_out, n_in = self.shape
        dw, db = split_flat(np.asarray(delta, dtype=np.float64), self.shape)
        request = np.concatenate([dw, db[:, None]], axis=1)
        pulses = np.minimum(np.rint(np.abs(request) / (2.0 * p.w_max * p.step_up)),
                            p.max_pulses)
        step = np.where(request > 0, p.step_up, -p.step_down)
        self._p = np.clip(self._p + pulses * step, 0.0, 1.0)
        self.meter.pulses += int(pulses.sum())
        self._refresh()

    def read(self):
        n_in = self.shape[1]
        return np.concatenate([self._w[:, :n_in].ravel(), self._w[:, n_in]])

    def write_tolerance(self):
        """Half a nominal pulse: the write circuit rounds each request to whole pulses."""
        return self.params.w_max * self.params.step_up

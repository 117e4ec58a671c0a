"""Convolution, pooling and flatten layers on any dense array model.

A device model realises dense layers (:class:`devsim.device.DeviceArray`); a network
also needs the other layer kinds (:mod:`devsim.layers`). A model may offer its own
(:meth:`devsim.device.DeviceParams.build_conv` and friends: the ideal device's float
kernels, an MCU's int8 TFLM kernels); for every other model, plugins included, they are
made here from what any model has:

- :class:`ArrayConv2D` holds the unrolled kernel (c_out, kh*kw*c_in) on one array of the
  model and reads it once per output position, on that position's window row: on a
  crossbar one DAC conversion, read-noise draw and ADC conversion per position, metered
  as a read (time and energy per read), as CrossSim and aihwkit map convolutions;
- :class:`ArrayDepthwise` gives every input channel an array of its own (see there why);
- :class:`FloatPool` pools in float and :class:`Flatten` passes the map on: digital
  periphery, no parameters, no nodes, no noise.

Maps are flat NHWC rows (T, H*W*C), kernels unrolled as in :mod:`devsim.conv_geometry`;
a layer's flat parameters are ``[W.ravel(), b]`` of its kernel matrix and its nodes are
its output map.
"""
from __future__ import annotations

import copy

import numpy as np
from numba import njit

from devsim.conv_geometry import ConvGeometry
from devsim.device import ClockedArray, DeviceArray, DeviceParams, Meter, split_flat

POOLS = ("avg_pool", "max_pool")
_REPEAT_BYTES = 16 << 20
"""Most bytes of weight-perturbation rows repeated per output position at once."""
_EMPTY = np.zeros(0)


def pool2d(kind: str, geometry: ConvGeometry, x):
    """``avg_pool`` or ``max_pool`` of flat maps x (T, H*W*C): (T, out_h*out_w*C). The
    average is over the taps inside the map (padding is not counted), as TFLite's; a NaN
    in a window makes its maximum NaN. The Numba kernel :func:`pool_kernel`."""
    if kind not in POOLS:
        raise ValueError(f"pool kind must be one of {POOLS}, got {kind!r}")
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty((x.shape[0], geometry.n_positions * geometry.in_c), dtype=x.dtype)
    pool_kernel(x, kind == "avg_pool", *geometry.args, out)
    return out


@njit(cache=True)
def pool_kernel(x, average, in_h, in_w, in_c, kernel_h, kernel_w, stride_h, stride_w,
                pad_top, pad_left, out_h, out_w, out):
    """out[t] = the mean (``average``) or maximum of every window of map t, channel by
    channel, over the taps inside the map, summed in tap order (dy, dx)."""
    acc = np.empty(in_c, dtype=x.dtype)
    for t in range(x.shape[0]):
        for oy in range(out_h):
            y0 = oy * stride_h - pad_top
            fy0, fy1 = max(0, -y0), min(kernel_h, in_h - y0)
            for ox in range(out_w):
                x0 = ox * stride_w - pad_left
                fx0, fx1 = max(0, -x0), min(kernel_w, in_w - x0)
                for c in range(in_c):
                    acc[c] = 0.0 if average else -np.inf
                for fy in range(fy0, fy1):
                    for fx in range(fx0, fx1):
                        src = ((y0 + fy) * in_w + x0 + fx) * in_c
                        for c in range(in_c):
                            v = x[t, src + c]
                            if average:
                                acc[c] += v
                            elif v > acc[c] or v != v:
                                acc[c] = v
                dst = (oy * out_w + ox) * in_c
                count = (fy1 - fy0) * (fx1 - fx0)
                for c in range(in_c):
                    out[t, dst + c] = acc[c] / count if average else acc[c]


def pool2d_np(kind: str, geometry: ConvGeometry, x):
    """NumPy twin of :func:`pool2d`, through the window index map."""
    if kind not in POOLS:
        raise ValueError(f"pool kind must be one of {POOLS}, got {kind!r}")
    g = geometry
    n_probe = x.shape[0]
    maps = x.reshape(n_probe, g.in_h * g.in_w, g.in_c)
    fill = -np.inf if kind == "max_pool" else 0.0
    padded = np.concatenate([maps, np.full((n_probe, 1, g.in_c), fill, dtype=x.dtype)], axis=1)
    windows = padded[:, g.window_index]                                 # (T, P, taps, C)
    if kind == "max_pool":
        out = windows.max(axis=2)
    else:
        out = windows.sum(axis=2) / (g.window_index >= 0).sum(axis=1)[None, :, None]
    return out.reshape(n_probe, g.n_positions * g.in_c)


class ParameterlessLayer(DeviceArray):
    """A layer with no parameters and no nodes: perturbations of it are empty, writes
    change nothing, and its meter counts one read per probe."""

    shape = (0, 0)

    @property
    def n_nodes(self) -> int:
        return 0

    def write(self, delta):
        if np.size(delta):
            raise ValueError(f"a layer without parameters takes no update, got "
                             f"{np.size(delta)} values")

    def read(self):
        return _EMPTY.copy()

    def local_gradient(self, node_signal, x):
        return _EMPTY.copy()


class FloatPool(ParameterlessLayer):
    """Average or max pooling in float (:func:`pool2d`)."""

    def __init__(self, kind: str, geometry: ConvGeometry):
        if kind not in POOLS:
            raise ValueError(f"pool kind must be one of {POOLS}, got {kind!r}")
        self.kind, self.geometry, self.meter = kind, geometry, Meter()

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        self.meter.reads += x.shape[0]
        return pool2d(self.kind, self.geometry, np.ascontiguousarray(x))


class Flatten(ParameterlessLayer):
    """A map read as a flat vector: the flat NHWC rows pass on as they are (a copy, which
    the network's activation may overwrite)."""

    def __init__(self, size: int):
        self.size, self.meter = size, Meter()

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        if x.shape[1] != self.size:
            raise ValueError(f"flatten expects rows of {self.size} values, got {x.shape[1]}")
        self.meter.reads += x.shape[0]
        return np.array(x, dtype=np.float64)


# ------------------------------------------------------------------ convolutions on arrays
def per_position_forward(array, rows, node_rows, weight_perturbation, n_pos):
    """``array.forward`` of window rows (T*P, K) in which probe t's weight perturbation
    applies to its P rows: the perturbation rows are repeated per position, a few probes
    at a time; a row-splittable array (:class:`devsim.device.RowSplitArray`) runs the
    parts as one call (the noise of a single call), others as successive calls."""
    n_probe = weight_perturbation.shape[0]
    chunk = max(1, _REPEAT_BYTES // (n_pos * weight_perturbation.shape[1] * 8))
    call = array.begin_forward(n_probe * n_pos) if hasattr(array, "begin_forward") else None
    parts = []
    for t0 in range(0, n_probe, chunk):
        t1 = min(n_probe, t0 + chunk)
        part = slice(t0 * n_pos, t1 * n_pos)
        node = None if node_rows is None else node_rows[part]
        repeated = np.repeat(weight_perturbation[t0:t1], n_pos, axis=0)
        if call is None:
            parts.append(array.forward(rows[part], node, repeated))
        else:
            parts.append(array.forward_rows(call, rows[part], t0 * n_pos, node, repeated))
    return np.concatenate(parts)


class ArrayConv2D(DeviceArray):
    """A 2-D convolution on a dense array model holding the unrolled kernel (c_out,
    kh*kw*c_in) (one more row for the bias, as the array model maps it).

    Every output position of every probe is one MVM on its window row: on a crossbar, one
    DAC conversion, read-noise draw and ADC conversion per position, metered as a read
    (time and energy per read), so a probe costs out_h * out_w reads. Weight
    perturbations are the array's own (a conductance offset) and stay the same for all
    positions of a probe; node perturbations enter each position's columns. Writes,
    reads and the flat layout are the array's.
    """

    def __init__(self, geometry: ConvGeometry, array: DeviceArray):
        if array.shape[1] != geometry.patch_size:
            raise ValueError(f"the array has {array.shape[1]} inputs, the kernel needs "
                             f"{geometry.patch_size}")
        self.geometry, self.array, self.shape = geometry, array, tuple(array.shape)

    @classmethod
    def build(cls, device: DeviceParams, geometry: ConvGeometry, weights, bias,
              rng: np.random.Generator) -> "ArrayConv2D":
        """The kernel realised on a new array of ``device`` (a clocked layer where the
        array is read at a time after programming)."""
        array = device.build(np.asarray(weights, dtype=np.float64),
                             np.asarray(bias, dtype=np.float64), rng)
        return (ClockedArrayConv2D if isinstance(array, ClockedArray) else cls)(geometry, array)

    @property
    def stateful(self) -> bool:
        return self.array.stateful

    @property
    def meter(self) -> Meter:
        return self.array.meter

    @property
    def n_nodes(self) -> int:
        return self.geometry.n_positions * self.shape[0]

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        g = self.geometry
        n_probe, n_pos = x.shape[0], g.n_positions
        rows = g.im2col(np.ascontiguousarray(x)).reshape(n_probe * n_pos, g.patch_size)
        node = (None if node_perturbation is None
                else np.ascontiguousarray(node_perturbation).reshape(n_probe * n_pos, -1))
        if weight_perturbation is None:
            out = self.array.forward(rows, node, None)
        else:
            out = per_position_forward(self.array, rows, node,
                                       np.ascontiguousarray(weight_perturbation), n_pos)
        return out.reshape(n_probe, n_pos * self.shape[0])

    def write(self, delta):
        self.array.write(delta)

    def read(self):
        return self.array.read()

    def write_tolerance(self):
        return self.array.write_tolerance()

    def ideal_error_bound(self, x):
        g = self.geometry
        rows = g.im2col(np.ascontiguousarray(x)).reshape(-1, g.patch_size)
        bound = np.broadcast_to(self.array.ideal_error_bound(rows), (len(rows), self.shape[0]))
        return bound.reshape(x.shape[0], -1)

    def local_gradient(self, node_signal, x):
        return self.geometry.kernel_gradient(node_signal, x, self.shape[0])

    def forked(self, stream):
        fork = copy.copy(self)
        fork.array = self.array.forked(stream)
        return fork


class ClockedArrayConv2D(ArrayConv2D, ClockedArray):
    """:class:`ArrayConv2D` on an array read at a time after programming."""

    def set_time(self, seconds):
        self.array.set_time(seconds)


class ArrayDepthwise(DeviceArray):
    """A depthwise convolution on one small array per input channel: array c holds the
    (dm, kh*kw) taps of output channels c*dm ... c*dm + dm - 1 (and their bias row) and
    reads channel c's window taps at every output position.

    Why not one block-diagonal array (C*kh*kw + 1 rows, C*dm outputs, zeros off the
    blocks)? Only 1/C of its devices would hold weights; the others would still add read
    noise (a constant-sigma device is noisy at g_min too), could be stuck at a fault or
    drift, and writes and weight perturbations could move them off zero, so the layer
    would no longer be depthwise. Per-channel arrays carry exactly the model's parameters
    (the flat layout of the kernel maps onto them slice by slice) and each column sees the
    noise of its own kh*kw + 1 devices, at the price of C sets of periphery (counted: the
    energy is every array's). The arrays work in parallel: a position is one read of the
    layer, and the layer's time is the longest array's.
    """

    def __init__(self, geometry: ConvGeometry, arrays: list):
        shapes = {tuple(a.shape) for a in arrays}
        if len(arrays) != geometry.in_c or len(shapes) != 1 or shapes.pop()[1] != geometry.taps:
            raise ValueError(f"need {geometry.in_c} arrays of shape (dm, {geometry.taps}), "
                             f"got {[tuple(a.shape) for a in arrays]}")
        self.geometry, self.arrays = geometry, list(arrays)
        self.depth_multiplier = arrays[0].shape[0]
        self.shape = (geometry.in_c * self.depth_multiplier, geometry.taps)

    @classmethod
    def build(cls, device: DeviceParams, geometry: ConvGeometry, weights, bias,
              rng: np.random.Generator) -> "ArrayDepthwise":
        """The kernel (C*dm, kh*kw) realised on C new arrays of ``device``."""
        weights = np.asarray(weights, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        if weights.shape[0] % geometry.in_c:
            raise ValueError(f"{weights.shape[0]} output channels are no multiple of the "
                             f"{geometry.in_c} input channels")
        dm = weights.shape[0] // geometry.in_c
        arrays = [device.build(weights[c * dm:(c + 1) * dm], bias[c * dm:(c + 1) * dm], rng)
                  for c in range(geometry.in_c)]
        clocked = all(isinstance(a, ClockedArray) for a in arrays)
        return (ClockedArrayDepthwise if clocked else cls)(geometry, arrays)

    @property
    def stateful(self) -> bool:
        return any(a.stateful for a in self.arrays)

    @property
    def meter(self) -> Meter:
        """The layer's activity: reads per position, the arrays' pulses and energy summed,
        the longest array's time."""
        meters = [a.meter for a in self.arrays]
        return Meter(reads=max(m.reads for m in meters), pulses=sum(m.pulses for m in meters),
                     time_s=max(m.time_s for m in meters),
                     energy_j=sum(m.energy_j for m in meters))

    @property
    def n_nodes(self) -> int:
        return self.geometry.n_positions * self.shape[0]

    def channel_params(self, flat, c: int) -> np.ndarray:
        """Array c's slice of the layer's flat parameters (or rows of them)."""
        dm, taps = self.depth_multiplier, self.geometry.taps
        n_w = self.shape[0] * taps
        return np.concatenate([flat[..., c * dm * taps:(c + 1) * dm * taps],
                               flat[..., n_w + c * dm:n_w + (c + 1) * dm]], axis=-1)

    def _flat(self, per_channel: list[np.ndarray]) -> np.ndarray:
        """The layer's flat layout of the arrays' flat vectors (the inverse of
        :meth:`channel_params`)."""
        parts = [split_flat(p, a.shape) for p, a in zip(per_channel, self.arrays)]
        return np.concatenate([np.concatenate([w.ravel() for w, _ in parts]),
                               np.concatenate([b for _, b in parts])])

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        g, dm = self.geometry, self.depth_multiplier
        n_probe, n_pos = x.shape[0], g.n_positions
        cols = g.im2col(np.ascontiguousarray(x)).reshape(n_probe * n_pos, g.taps, g.in_c)
        node = (None if node_perturbation is None
                else np.asarray(node_perturbation).reshape(n_probe * n_pos, g.in_c, dm))
        out = None
        for c, array in enumerate(self.arrays):
            rows = np.ascontiguousarray(cols[:, :, c])
            node_c = None if node is None else np.ascontiguousarray(node[:, c])
            if weight_perturbation is None:
                y = array.forward(rows, node_c, None)
            else:
                y = per_position_forward(array, rows, node_c,
                                         self.channel_params(weight_perturbation, c), n_pos)
            if out is None:
                out = np.empty((n_probe * n_pos, g.in_c, dm), dtype=y.dtype)
            out[:, c] = y
        return out.reshape(n_probe, n_pos * self.shape[0])

    def write(self, delta):
        for c, array in enumerate(self.arrays):
            array.write(self.channel_params(delta, c))

    def read(self):
        return self._flat([a.read() for a in self.arrays])

    def write_tolerance(self):
        return self._flat([np.broadcast_to(a.write_tolerance(), (a.n_params,))
                           for a in self.arrays])

    def ideal_error_bound(self, x):
        g, dm = self.geometry, self.depth_multiplier
        cols = g.im2col(np.ascontiguousarray(x)).reshape(-1, g.taps, g.in_c)
        bound = np.stack([np.broadcast_to(a.ideal_error_bound(cols[:, :, c]), (len(cols), dm))
                          for c, a in enumerate(self.arrays)], axis=1)
        return bound.reshape(x.shape[0], -1)

    def local_gradient(self, node_signal, x):
        return self.geometry.depthwise_kernel_gradient(node_signal, x, self.depth_multiplier)

    def forked(self, stream):
        fork = copy.copy(self)
        fork.arrays = [a.forked(stream) for a in self.arrays]
        return fork


class ClockedArrayDepthwise(ArrayDepthwise, ClockedArray):
    """:class:`ArrayDepthwise` on arrays read at a time after programming."""

    def set_time(self, seconds):
        for array in self.arrays:
            array.set_time(seconds)

"""Convolution and pooling in float: the ideal device's layers and conv layers on arrays.

Maps are flat NHWC rows (T, H*W*C) and kernels are unrolled matrices
(:mod:`devsim.conv_geometry`): a 2-D convolution's is (c_out, kh*kw*c_in), the OHWI
filter reshaped; a depthwise convolution's is (c_in*dm, kh*kw), row o = c*dm + m the taps
of output channel o, which sees input channel c only. A conv layer's flat parameters are
``[W.ravel(), b]`` of that matrix, as for a dense layer, and its nodes (pre-activations)
are its output map, (T, out_h*out_w*c_out).

- :func:`conv2d` is im2col and one GEMM; a weight perturbation is a per-probe kernel
  offset dW_t (and bias offset db_t), added as one batched product of each probe's
  window rows with its dW_t; a node perturbation is added to the output map.
- :func:`depthwise_conv2d` sums kh*kw broadcast products of the window taps.
- :func:`pool2d` averages (over the taps inside the map, as TFLite does) or takes the
  maximum of each window, channel by channel.

The ``*_reference`` functions compute the same from the padded map with NumPy's
``sliding_window_view`` and ``einsum``, not through the index maps: the tests' second,
independent implementation.

:class:`ArrayConv2D` puts a convolution on any dense array model (a crossbar, say): the
array holds the unrolled kernel, and every output position is one MVM of the array on
that position's window row, with its own DAC, read noise and ADC, metered as one read.
:class:`ArrayDepthwise` gives every input channel its own small array (see there why).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from devsim.conv_geometry import ConvGeometry
from devsim.device import DeviceParams, Meter, layer_size, split_flat

POOLS = ("avg_pool", "max_pool")
_REPEAT_BYTES = 16 << 20
"""Most bytes of weight-perturbation rows repeated per output position at once."""


# ------------------------------------------------------------------ float kernels
def conv2d(geometry: ConvGeometry, w, b, x, node_perturbation=None, weight_perturbation=None):
    """2-D convolution of flat maps x (T, H*W*C) with the unrolled kernel w (c_out,
    kh*kw*C) and bias b: (T, out_h*out_w*c_out). ``weight_perturbation`` (T, c_out*K +
    c_out) offsets probe t's kernel and bias; ``node_perturbation`` (T, nodes) its output."""
    g = geometry
    n_out, n_k = w.shape
    n_probe, n_pos = x.shape[0], g.n_positions
    cols = g.im2col(x)
    out = cols.reshape(n_probe * n_pos, n_k) @ w.T
    out += b
    if weight_perturbation is not None:
        dw = weight_perturbation[:, :n_out * n_k].reshape(n_probe, n_out, n_k)
        per_probe = out.reshape(n_probe, n_pos, n_out)
        per_probe += np.matmul(cols, dw.transpose(0, 2, 1))
        per_probe += weight_perturbation[:, None, n_out * n_k:]
    out = out.reshape(n_probe, n_pos * n_out)
    if node_perturbation is not None:
        out += node_perturbation
    return out


def depthwise_conv2d(geometry: ConvGeometry, w, b, x, node_perturbation=None,
                     weight_perturbation=None):
    """Depthwise convolution of flat maps x (T, H*W*C) with the kernel w (C*dm, kh*kw):
    (T, out_h*out_w*C*dm); perturbations as in :func:`conv2d`."""
    g = geometry
    n_out, taps = w.shape
    dm = n_out // g.in_c
    n_probe, n_pos = x.shape[0], g.n_positions
    cols = g.im2col(x).reshape(n_probe, n_pos, taps, g.in_c)
    kernel = w.reshape(g.in_c, dm, taps).transpose(2, 0, 1)            # (taps, C, dm)
    dw = (None if weight_perturbation is None else
          weight_perturbation[:, :n_out * taps].reshape(n_probe, 1, g.in_c, dm, taps))
    out = np.zeros((n_probe, n_pos, g.in_c, dm), dtype=np.result_type(cols, w))
    for k in range(taps):
        tap = cols[:, :, k, :, None]
        out += tap * kernel[k]
        if dw is not None:
            out += tap * dw[..., k]
    out = out.reshape(n_probe, n_pos, n_out)
    out += b
    if weight_perturbation is not None:
        out += weight_perturbation[:, None, n_out * taps:]
    out = out.reshape(n_probe, n_pos * n_out)
    if node_perturbation is not None:
        out += node_perturbation
    return out


def pool2d(kind: str, geometry: ConvGeometry, x):
    """``avg_pool`` or ``max_pool`` of flat maps x (T, H*W*C): (T, out_h*out_w*C). The
    average is over the taps inside the map (padding is not counted), as TFLite's."""
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


# ------------------------------------------------------------------ independent references
def _windows_reference(maps, g: ConvGeometry, fill):
    """(T, out_h, out_w, C, kh, kw) windows of (T, H, W, C) maps padded with ``fill``."""
    pad_bottom = max((g.out_h - 1) * g.stride_h + g.kernel_h - g.in_h - g.pad_top, 0)
    pad_right = max((g.out_w - 1) * g.stride_w + g.kernel_w - g.in_w - g.pad_left, 0)
    padded = np.pad(maps, ((0, 0), (g.pad_top, pad_bottom), (g.pad_left, pad_right), (0, 0)),
                    constant_values=fill)
    windows = sliding_window_view(padded, (g.kernel_h, g.kernel_w), axis=(1, 2))
    return windows[:, ::g.stride_h, ::g.stride_w][:, :g.out_h, :g.out_w]


def conv2d_reference(maps, filter_ohwi, b, geometry: ConvGeometry):
    """(T, out_h, out_w, c_out) convolution of (T, H, W, C) maps with an OHWI filter."""
    windows = _windows_reference(maps, geometry, 0.0)
    return np.einsum("tyxcij,oijc->tyxo", windows, filter_ohwi) + b


def depthwise_conv2d_reference(maps, filter_1hwo, b, geometry: ConvGeometry):
    """(T, out_h, out_w, C*dm) depthwise convolution with a TFLite (1, kh, kw, C*dm) filter."""
    g = geometry
    kernel = filter_1hwo.reshape(g.kernel_h, g.kernel_w, g.in_c, -1)
    out = np.einsum("tyxcij,ijcm->tyxcm", _windows_reference(maps, g, 0.0), kernel)
    return out.reshape(*out.shape[:3], -1) + b


def pool2d_reference(kind: str, maps, geometry: ConvGeometry):
    """(T, out_h, out_w, C) pooling of (T, H, W, C) maps; the average counts the taps
    inside the map (the windows of a map of ones)."""
    if kind == "max_pool":
        return _windows_reference(maps, geometry, -np.inf).max(axis=(4, 5))
    total = _windows_reference(maps, geometry, 0.0).sum(axis=(4, 5))
    count = _windows_reference(np.ones_like(maps[:1]), geometry, 0.0).sum(axis=(4, 5))
    return total / count


# ------------------------------------------------------------------ the ideal device
class IdealConv2D:
    """A 2-D convolution on the ideal device: the unrolled kernel held exactly in float64.

    Like :class:`devices.ideal.IdealDense` on the kernel matrix, with maps in and out;
    every output position is metered as one read (one MVM of an ideal array).
    """

    kernel = staticmethod(conv2d)

    def __init__(self, geometry: ConvGeometry, weights: np.ndarray, bias: np.ndarray):
        columns = self._columns(geometry)
        if weights.ndim != 2 or weights.shape[1] != columns:
            raise ValueError(f"weights have shape {weights.shape}, the kernel needs "
                             f"(c_out, {columns})")
        self.geometry = geometry
        self.shape = weights.shape
        self._flat = np.concatenate([weights.ravel(), bias]).astype(np.float64)
        self.meter = Meter()

    @staticmethod
    def _columns(geometry: ConvGeometry) -> int:
        return geometry.patch_size

    @property
    def w(self) -> np.ndarray:
        return split_flat(self._flat, self.shape)[0]

    @property
    def b(self) -> np.ndarray:
        return split_flat(self._flat, self.shape)[1]

    @property
    def n_nodes(self) -> int:
        """Outputs of one probe, out_h * out_w * c_out."""
        return self.geometry.n_positions * self.shape[0]

    @property
    def n_params(self) -> int:
        return layer_size(self.shape)

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        x = np.ascontiguousarray(x, dtype=np.float64)
        self.meter.reads += x.shape[0] * self.geometry.n_positions
        return self.kernel(self.geometry, self.w, self.b, x, node_perturbation,
                           weight_perturbation)

    def write(self, delta):
        self._flat += delta

    def read(self):
        return self._flat.copy()


class IdealDepthwise(IdealConv2D):
    """A depthwise convolution on the ideal device: kernel (c_in*dm, kh*kw)."""

    kernel = staticmethod(depthwise_conv2d)

    def __init__(self, geometry, weights, bias):
        if weights.shape[0] % geometry.in_c:
            raise ValueError(f"{weights.shape[0]} output channels are no multiple of the "
                             f"{geometry.in_c} input channels")
        super().__init__(geometry, weights, bias)

    @staticmethod
    def _columns(geometry):
        return geometry.taps


# ------------------------------------------------------------------ conv on arrays
def per_position_forward(array, rows, node_rows, weight_perturbation, n_pos):
    """``array.forward`` of window rows (T*P, K) in which probe t's weight perturbation
    applies to its P rows: the perturbation rows are repeated per position, a few probes
    at a time; a row-splittable array (:class:`devsim.device.RowSplitDevice`) runs the
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


class ArrayConv2D:
    """A 2-D convolution on a dense array model holding the unrolled kernel (c_out,
    kh*kw*c_in) (one more row for the bias, as the array model maps it).

    Every output position of every probe is one MVM on its window row: on a crossbar, one
    DAC conversion, read-noise draw and ADC conversion per position, metered as a read
    (time and energy per read), so a probe costs out_h * out_w reads. Weight
    perturbations are the array's own (a conductance offset) and stay the same for all
    positions of a probe; node perturbations enter each position's columns. Writes,
    reads and the flat layout are the array's.
    """

    def __init__(self, geometry: ConvGeometry, array):
        if array.shape[1] != geometry.patch_size:
            raise ValueError(f"the array has {array.shape[1]} inputs, the kernel needs "
                             f"{geometry.patch_size}")
        self.geometry, self.array, self.shape = geometry, array, tuple(array.shape)

    @classmethod
    def build(cls, device: DeviceParams, geometry: ConvGeometry, weights, bias,
              rng: np.random.Generator) -> "ArrayConv2D":
        """The kernel realised on a new array of ``device``."""
        return cls(geometry, device.build(np.asarray(weights, dtype=np.float64),
                                          np.asarray(bias, dtype=np.float64), rng))

    @property
    def meter(self) -> Meter:
        return self.array.meter

    @property
    def n_nodes(self) -> int:
        return self.geometry.n_positions * self.shape[0]

    @property
    def n_params(self) -> int:
        return layer_size(self.shape)

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


class ArrayDepthwise:
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
        return cls(geometry, [device.build(weights[c * dm:(c + 1) * dm],
                                           bias[c * dm:(c + 1) * dm], rng)
                              for c in range(geometry.in_c)])

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

    @property
    def n_params(self) -> int:
        return layer_size(self.shape)

    def channel_params(self, flat, c: int) -> np.ndarray:
        """Array c's slice of the layer's flat parameters (or rows of them)."""
        dm, taps = self.depth_multiplier, self.geometry.taps
        n_w = self.shape[0] * taps
        return np.concatenate([flat[..., c * dm * taps:(c + 1) * dm * taps],
                               flat[..., n_w + c * dm:n_w + (c + 1) * dm]], axis=-1)

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
        parts = [split_flat(a.read(), a.shape) for a in self.arrays]
        return np.concatenate([np.concatenate([w.ravel() for w, _ in parts]),
                               np.concatenate([b for _, b in parts])])

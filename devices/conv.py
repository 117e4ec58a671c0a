"""Convolution in float: the ideal device's conv layers, and the references for pooling.

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

The ``*_reference`` functions compute the same, and pooling
(:func:`devsim.array_layers.pool2d`), from the padded map with NumPy's
``sliding_window_view`` and ``einsum``, not through the index maps: the tests' second,
independent implementation.

:class:`IdealConv2D` and :class:`IdealDepthwise` are the ideal device's conv layers
(:meth:`devices.ideal.IdealParams.build_conv`); other models get theirs from
:mod:`devsim.array_layers` (the kernel unrolled onto their arrays) or their own.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from devsim.conv_geometry import ConvGeometry
from devsim.device import DeviceArray, Meter, split_flat

_COLS_BYTES = 2 << 20
"""Bytes of window rows (im2col) made at once: a few probes' worth, kept in cache for the
product instead of the whole batch's written to and read back from memory."""


# ------------------------------------------------------------------ float kernels
def conv2d(geometry: ConvGeometry, w, b, x, node_perturbation=None, weight_perturbation=None):
    """2-D convolution of flat maps x (T, H*W*C) with the unrolled kernel w (c_out,
    kh*kw*C) and bias b: (T, out_h*out_w*c_out). ``weight_perturbation`` (T, c_out*K +
    c_out) offsets probe t's kernel and bias; ``node_perturbation`` (T, nodes) its output."""
    g = geometry
    n_out, n_k = w.shape
    n_probe, n_pos = x.shape[0], g.n_positions
    out = np.empty((n_probe, n_pos * n_out), dtype=np.result_type(x, w))
    block = max(1, _COLS_BYTES // (n_pos * n_k * out.itemsize))
    w_t = w.T
    for t0 in range(0, n_probe, block):  # the window rows of a few probes at a time
        t1 = min(n_probe, t0 + block)
        cols = g.im2col(x[t0:t1])
        part = out[t0:t1].reshape(-1, n_out)
        np.matmul(cols.reshape(-1, n_k), w_t, out=part)
        part += b
        if weight_perturbation is not None:
            wp = weight_perturbation[t0:t1]
            dw = wp[:, :n_out * n_k].reshape(t1 - t0, n_out, n_k)
            per_probe = part.reshape(t1 - t0, n_pos, n_out)
            per_probe += np.matmul(cols, dw.transpose(0, 2, 1))
            per_probe += wp[:, None, n_out * n_k:]
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
class IdealConv2D(DeviceArray):
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

    def forward(self, x, node_perturbation=None, weight_perturbation=None):
        x = np.ascontiguousarray(x, dtype=np.float64)
        self.meter.reads += x.shape[0] * self.geometry.n_positions
        return self.kernel(self.geometry, self.w, self.b, x, node_perturbation,
                           weight_perturbation)

    def write(self, delta):
        self._flat += delta

    def read(self):
        return self._flat.copy()

    def local_gradient(self, node_signal, x):
        return self.geometry.kernel_gradient(node_signal, x, self.shape[0])


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

    def local_gradient(self, node_signal, x):
        return self.geometry.depthwise_kernel_gradient(node_signal, x,
                                                       self.shape[0] // self.geometry.in_c)

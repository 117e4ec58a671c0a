"""Where the windows of a 2-D convolution or pooling fall: sizes, padding, im2col.

Feature maps are NHWC, as in TensorFlow Lite, and a network passes them flat: probe t's
map is row t of a (T, H*W*C) array, element ((y * W + x) * C + c). An unrolled kernel
matrix has one row per output channel and one column per tap ``(dy, dx, c)`` in that
same order, ``(dy * kw + dx) * C + c``: a TFLite CONV_2D filter (OHWI) reshaped to
(c_out, kh*kw*C). Output sizes and padding are TFLite's (``ComputeOutSize``,
``ComputePaddingWithOffset`` in ``tensorflow/lite/kernels/padding.h``):

- ``same``: out = ceil(in / stride); the total padding max((out - 1) stride + k - in, 0)
  is split with the smaller half before (top, left), the odd pixel after;
- ``valid``: out = floor((in - k) / stride) + 1, no padding.

im2col copies every output position's window into a row of length kh*kw*C (padding
taps take a given value: 0.0 in float, the input zero point in int8, which is what
TFLM's skipping of outside taps amounts to); col2im is its adjoint, adding every row
back onto the map. Both are Numba kernels that copy whole runs of a window row; their
NumPy twins go through the explicit index map :meth:`ConvGeometry.patch_index`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

PADDINGS = ("same", "valid")


@dataclass(frozen=True)
class ConvGeometry:
    """The windows of a kh x kw kernel (or pooling filter) sliding over an H x W x C map."""

    in_h: int
    in_w: int
    in_c: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    padding: str = "same"

    def __post_init__(self):
        for name in ("in_h", "in_w", "in_c", "kernel_h", "kernel_w", "stride_h", "stride_w"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"a {self.kernel_h}x{self.kernel_w} kernel with 'valid' padding "
                             f"does not fit a {self.in_h}x{self.in_w} map")

    # ---- sizes (TFLite's rules)
    @staticmethod
    def out_size(size: int, kernel: int, stride: int, padding: str) -> int:
        """Output length along one axis (``ComputeOutSize``)."""
        if padding == "same":
            return (size + stride - 1) // stride
        return (size - kernel + stride) // stride

    @staticmethod
    def pad_before(size: int, kernel: int, stride: int, out: int) -> int:
        """Padding in front along one axis (``ComputePaddingWithOffset``: the odd pixel of
        the total goes behind)."""
        return max((out - 1) * stride + kernel - size, 0) // 2

    @property
    def out_h(self) -> int:
        return self.out_size(self.in_h, self.kernel_h, self.stride_h, self.padding)

    @property
    def out_w(self) -> int:
        return self.out_size(self.in_w, self.kernel_w, self.stride_w, self.padding)

    @property
    def pad_top(self) -> int:
        return self.pad_before(self.in_h, self.kernel_h, self.stride_h, self.out_h)

    @property
    def pad_left(self) -> int:
        return self.pad_before(self.in_w, self.kernel_w, self.stride_w, self.out_w)

    @property
    def n_positions(self) -> int:
        """Output positions out_h * out_w (one MVM each on an unrolled array)."""
        return self.out_h * self.out_w

    @property
    def taps(self) -> int:
        """Spatial taps of one window, kh * kw."""
        return self.kernel_h * self.kernel_w

    @property
    def patch_size(self) -> int:
        """Length of one im2col row, kh * kw * C."""
        return self.taps * self.in_c

    @property
    def in_size(self) -> int:
        """Length of one flat input map, H * W * C."""
        return self.in_h * self.in_w * self.in_c

    @property
    def args(self) -> tuple[int, ...]:
        """What the kernels take: (H, W, C, kh, kw, stride_h, stride_w, pad_top,
        pad_left, out_h, out_w)."""
        return (self.in_h, self.in_w, self.in_c, self.kernel_h, self.kernel_w, self.stride_h,
                self.stride_w, self.pad_top, self.pad_left, self.out_h, self.out_w)

    # ---- index maps
    @cached_property
    def window_index(self) -> np.ndarray:
        """(positions, kh*kw) int64: the flat pixel y * W + x under each tap of each
        output position's window, -1 where the tap falls on padding."""
        oy, ox = np.divmod(np.arange(self.n_positions), self.out_w)
        dy, dx = np.divmod(np.arange(self.taps), self.kernel_w)
        y = (oy * self.stride_h - self.pad_top)[:, None] + dy[None, :]
        x = (ox * self.stride_w - self.pad_left)[:, None] + dx[None, :]
        inside = (y >= 0) & (y < self.in_h) & (x >= 0) & (x < self.in_w)
        return np.where(inside, y * self.in_w + x, -1)

    @cached_property
    def patch_index(self) -> np.ndarray:
        """(positions, kh*kw*C) int64: the flat element of the map behind every entry of
        the im2col matrix, -1 for padding."""
        pixel = self.window_index[:, :, None]
        index = pixel * self.in_c + np.arange(self.in_c)[None, None, :]
        return np.where(pixel >= 0, index, -1).reshape(self.n_positions, self.patch_size)

    # ---- im2col and col2im
    def im2col(self, x: np.ndarray, pad_value=0) -> np.ndarray:
        """(T, positions, kh*kw*C) windows of the flat maps ``x`` (T, H*W*C), padding
        taps set to ``pad_value``; in x's dtype."""
        x = np.ascontiguousarray(x).reshape(-1, self.in_size)
        out = np.empty((x.shape[0], self.n_positions, self.patch_size), dtype=x.dtype)
        im2col_kernel(x, *self.args, x.dtype.type(pad_value), out)
        return out

    def col2im(self, cols: np.ndarray) -> np.ndarray:
        """(T, H*W*C) sums of the window rows ``cols`` (T, positions, kh*kw*C) at the
        places they were taken from (padding taps dropped): the adjoint of im2col, what
        backpropagation through a convolution needs for the input gradient."""
        cols = np.ascontiguousarray(cols)
        out = np.zeros((cols.shape[0], self.in_size), dtype=cols.dtype)
        col2im_kernel(cols, *self.args, out)
        return out

    def kernel_gradient(self, signal: np.ndarray, x: np.ndarray, c_out: int) -> np.ndarray:
        """What every weight of a convolution with ``c_out`` filters accumulates from the
        output-map signal (T, positions*c_out) and the input maps x (T, H*W*C): the flat
        ``[dW.ravel(), db]`` of sum over probes and positions of signal (x) window, the
        unrolled kernel's share of each product (a shared weight sums over the positions
        it serves; backpropagation's weight gradient for a signal dC/d(output))."""
        cols = self.im2col(np.ascontiguousarray(x, dtype=np.float64))
        g = np.asarray(signal, dtype=np.float64).reshape(-1, c_out)
        return np.concatenate([(g.T @ cols.reshape(-1, self.patch_size)).ravel(),
                               g.sum(axis=0)])

    def depthwise_kernel_gradient(self, signal: np.ndarray, x: np.ndarray,
                                  depth_multiplier: int) -> np.ndarray:
        """:meth:`kernel_gradient` of a depthwise kernel (C*dm, kh*kw): output channel
        c*dm + m correlates with input channel c's window taps only."""
        n = x.shape[0]
        cols = self.im2col(np.ascontiguousarray(x, dtype=np.float64)).reshape(
            n, self.n_positions, self.taps, self.in_c)
        g = np.asarray(signal, dtype=np.float64).reshape(n, self.n_positions, self.in_c,
                                                         depth_multiplier)
        dw = np.einsum("tpcm,tpkc->cmk", g, cols)
        return np.concatenate([dw.ravel(), g.sum(axis=(0, 1)).ravel()])

    def im2col_np(self, x: np.ndarray, pad_value=0) -> np.ndarray:
        """NumPy twin of :meth:`im2col`, through :attr:`patch_index`."""
        x = np.asarray(x).reshape(-1, self.in_size)
        padded = np.concatenate([x, np.full((x.shape[0], 1), pad_value, dtype=x.dtype)], axis=1)
        return padded[:, self.patch_index]

    def col2im_np(self, cols: np.ndarray) -> np.ndarray:
        """NumPy twin of :meth:`col2im`, through :attr:`patch_index`."""
        cols = np.asarray(cols)
        out = np.zeros((cols.shape[0], self.in_size + 1), dtype=cols.dtype)
        np.add.at(out, (slice(None), self.patch_index), cols)
        return out[:, :-1]


@njit(cache=True)
def window_row(y, x0, in_h, in_w, kernel_w):
    """The taps [dx0, dx1) of one window row (input row ``y``, first column ``x0``) that
    fall inside the map; an empty range where the row is outside."""
    if y < 0 or y >= in_h:
        return kernel_w, kernel_w
    dx0 = min(max(0, -x0), kernel_w)
    return dx0, max(min(kernel_w, in_w - x0), dx0)


@njit(cache=True)
def im2col_kernel(x, in_h, in_w, in_c, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                  pad_left, out_h, out_w, pad_value, out):
    """out[t, p] = window p of map t, flattened (dy, dx, c); padding taps = ``pad_value``.

    Each window row is copied as one run of (valid taps) * C contiguous elements.
    """
    n_probe = x.shape[0]
    run = kernel_w * in_c
    for t in range(n_probe):
        for oy in range(out_h):
            for ox in range(out_w):
                p = oy * out_w + ox
                x0 = ox * stride_w - pad_left
                for dy in range(kernel_h):
                    y = oy * stride_h - pad_top + dy
                    dx0, dx1 = window_row(y, x0, in_h, in_w, kernel_w)
                    base = dy * run
                    for k in range(dx0 * in_c):
                        out[t, p, base + k] = pad_value
                    src = (y * in_w + x0 + dx0) * in_c
                    for k in range((dx1 - dx0) * in_c):
                        out[t, p, base + dx0 * in_c + k] = x[t, src + k]
                    for k in range(dx1 * in_c, run):
                        out[t, p, base + k] = pad_value


@njit(cache=True)
def col2im_kernel(cols, in_h, in_w, in_c, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                  pad_left, out_h, out_w, out):
    """out[t] += every window row of cols[t] at the elements it came from (the adjoint
    of :func:`im2col_kernel`); ``out`` must start at zero."""
    n_probe = cols.shape[0]
    run = kernel_w * in_c
    for t in range(n_probe):
        for oy in range(out_h):
            for ox in range(out_w):
                p = oy * out_w + ox
                x0 = ox * stride_w - pad_left
                for dy in range(kernel_h):
                    y = oy * stride_h - pad_top + dy
                    dx0, dx1 = window_row(y, x0, in_h, in_w, kernel_w)
                    src = dy * run + dx0 * in_c
                    dst = (y * in_w + x0 + dx0) * in_c
                    for k in range((dx1 - dx0) * in_c):
                        out[t, dst + k] += cols[t, p, src + k]

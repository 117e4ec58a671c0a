"""Convolution geometry: TFLite's output sizes and padding by hand, im2col by hand, the
Numba kernels against their index-map twins, col2im as im2col's adjoint."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from devsim.conv_geometry import ConvGeometry


@pytest.mark.parametrize("size, kernel, stride, padding, out, before", [
    (5, 3, 1, "same", 5, 1),     # total 2: one each side
    (5, 3, 2, "same", 3, 1),     # ceil(5/2) = 3; total (3-1)*2 + 3 - 5 = 2
    (6, 3, 2, "same", 3, 0),     # total 4 + 3 - 6 = 1: the odd pixel goes behind
    (4, 4, 1, "same", 4, 1),     # total 3: 1 before, 2 behind
    (7, 1, 3, "same", 3, 0),     # total 6 + 1 - 7 = 0
    (2, 5, 1, "same", 2, 2),     # kernel wider than the map: total 1 + 5 - 2 = 4
    (5, 3, 1, "valid", 3, 0),
    (6, 3, 2, "valid", 2, 0),    # floor(3 / 2) + 1
    (8, 2, 2, "valid", 4, 0),
    (3, 3, 3, "valid", 1, 0),
])
def test_out_size_and_padding_by_hand(size, kernel, stride, padding, out, before):
    assert ConvGeometry.out_size(size, kernel, stride, padding) == out
    g = ConvGeometry(size, 1, 1, kernel, 1, stride, 1, padding)
    assert (g.out_h, g.pad_top) == (out, before)


def test_im2col_by_hand():
    # 3x3 map of one channel, values 1..9; 2x2 kernel, stride 2, 'same': out 2x2, total
    # padding (2-1)*2 + 2 - 3 = 1, all of it behind (bottom, right).
    g = ConvGeometry(3, 3, 1, 2, 2, 2, 2, "same")
    x = np.arange(1, 10, dtype=np.float64)[None, :]
    cols = g.im2col(x, pad_value=-1.0)
    assert cols[0].tolist() == [[1, 2, 4, 5], [3, -1, 6, -1], [7, 8, -1, -1], [9, -1, -1, -1]]
    # two channels: taps ordered (dy, dx, c)
    g2 = ConvGeometry(1, 2, 2, 1, 2, 1, 1, "valid")
    assert g2.im2col(np.array([[10, 11, 20, 21]], np.int8)).tolist() == [[[10, 11, 20, 21]]]


def geometries():
    for h, w, c, kh, kw, sh, sw, pad in itertools.product(
            [1, 3, 6], [2, 5], [1, 3], [1, 3, 4], [1, 2, 5], [1, 2], [1, 3], ["same", "valid"]):
        try:
            yield ConvGeometry(h, w, c, kh, kw, sh, sw, pad)
        except ValueError:   # 'valid' kernels larger than the map
            continue


def test_kernels_match_index_map_twins():
    rng = np.random.default_rng(0)
    n = 0
    for g in geometries():
        x = rng.normal(size=(3, g.in_size))
        cols = g.im2col(x, pad_value=2.5)
        assert cols.shape == (3, g.n_positions, g.patch_size)
        assert np.array_equal(cols, g.im2col_np(x, pad_value=2.5))
        x8 = rng.integers(-128, 128, (2, g.in_size)).astype(np.int8)
        assert np.array_equal(g.im2col(x8, -7), g.im2col_np(x8, -7))
        y = rng.normal(size=cols.shape)
        assert np.allclose(g.col2im(y), g.col2im_np(y), rtol=1e-13, atol=1e-13)
        # adjoint: <im2col(x), y> = <x, col2im(y)> (padding taps contribute nothing)
        assert np.isclose(np.sum(g.im2col(x) * y), np.sum(x * g.col2im(y)), rtol=1e-12)
        n += 1
    assert n > 250


def test_window_index_counts_inside_taps():
    # 'same' 3x3 over 4x4: corners see 4 pixels, edges 6, the inside 9
    g = ConvGeometry(4, 4, 2, 3, 3)
    counts = (g.window_index >= 0).sum(axis=1).reshape(4, 4)
    assert counts.tolist() == [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_h=0), "kernel_h"),
    (dict(stride_w=1.5), "stride_w"),
    (dict(padding="full"), "padding"),
    (dict(kernel_h=5, padding="valid"), "does not fit"),
])
def test_rejects_bad_geometry(kwargs, match):
    base = dict(in_h=4, in_w=4, in_c=1, kernel_h=3, kernel_w=3)
    with pytest.raises(ValueError, match=match):
        ConvGeometry(**{**base, **kwargs})

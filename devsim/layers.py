"""The layers a network is made of: a family, selected in YAML with ``type:``.

- ``dense`` (a layer that names no type is dense, as in every config written before
  convolutions): ``units`` neurons, each seeing the whole flat input;
- ``conv2d``: ``channels`` filters of a ``kernel`` sliding over an H x W x C map with a
  ``stride`` and ``same`` or ``valid`` padding (TFLite's sizes, :mod:`devsim.conv_geometry`);
- ``depthwise_conv2d``: one kernel per input channel (``depth_multiplier`` of them);
- ``avg_pool``, ``max_pool``: windows of a map reduced channel by channel;
- ``flatten``: a map read as a flat vector (maps are passed flat, NHWC, so it moves no
  data; it marks where a dense layer may follow a map).

An activation is a flat vector ``(n,)`` or a map ``(H, W, C)``; :func:`layer_shapes`
follows it through the layers from ``network.input_shape`` and reports, as one-line
errors naming the layer, every layer that does not fit its input. Layers with
parameters hold them as a matrix, one row per output unit or channel, in the flat
layout ``[W.ravel(), b]`` every device speaks: (units, n_in) for dense,
(channels, kh*kw*C) for conv2d (the OHWI filter unrolled, as in
:mod:`devsim.conv_geometry`), (C*dm, kh*kw) for depthwise_conv2d. Their nodes (the
pre-activations node perturbation reaches) are their outputs; pooling and flatten have
neither parameters nor nodes.

Each layer is realised on a device model: weighted layers on their own ``device`` or the
network's, pooling and flatten on the device of the layer before them (the periphery of
that chip). :meth:`NetworkLayerParams.build` asks the device model for the array
(:meth:`devsim.device.DeviceParams.build`, ``build_conv``, ``build_depthwise``,
``build_pool``); where a model has no convolution or pooling of its own, the kernel is
unrolled onto arrays of that model and pooling runs in float in its periphery
(:mod:`devsim.array_layers`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from devsim.activations import ActivationParams, Identity, ReLU, Sigmoid
from devsim.array_layers import ArrayConv2D, ArrayDepthwise, Flatten, FloatPool
from devsim.conv_geometry import PADDINGS, ConvGeometry
from devsim.device import DeviceArray, DeviceParams
from devsim.params import ParamError, Params, param

__all__ = ["NetworkLayerParams", "LayerParams", "Conv2DParams", "DepthwiseConv2DParams",
           "AvgPoolParams", "MaxPoolParams", "FlattenParams", "LayerShape", "layer_shapes"]


class LayerShape(NamedTuple):
    """Where a layer sits: its input and output shapes, parameter matrix and windows."""

    kind: str
    """The layer's type (``dense``, ``conv2d``, ...)."""
    in_shape: tuple[int, ...]
    """Input: (n,) flat or (H, W, C) map."""
    out_shape: tuple[int, ...]
    """Output: (n,) flat or (H, W, C) map."""
    matrix: tuple[int, int]
    """(rows, columns) of the parameter matrix; (0, 0) for a layer without parameters."""
    geometry: ConvGeometry | None = None
    """The windows of a convolution or pooling layer."""

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    @property
    def n_params(self) -> int:
        return self.matrix[0] * self.matrix[1] + self.matrix[0]

    @property
    def fans(self) -> tuple[int, int]:
        """(fan in, fan out) of one weight for initialisation: inputs feeding one output,
        and outputs one input feeds (kernel taps times output channels for convolutions,
        as Keras counts them)."""
        rows, cols = self.matrix
        if self.kind == "conv2d":
            return cols, self.geometry.taps * rows
        if self.kind == "depthwise_conv2d":
            return cols, cols * rows // self.geometry.in_c
        return cols, rows


def _map_size(shape: tuple[int, ...]) -> str:
    """``8x8x1 map`` or ``vector of 64``."""
    return "x".join(map(str, shape)) + " map" if len(shape) == 3 else f"vector of {shape[0]}"


@dataclass(frozen=True)
class NetworkLayerParams(Params, family="layer"):
    """Base of the network's layers; select one with ``type:`` (``dense`` when absent)."""

    default_kind: ClassVar[str] = "dense"
    """The member a mapping without ``type`` is (configs written before other kinds)."""
    has_params: ClassVar[bool] = True
    """Whether the layer holds weights (and a bias) on a device."""

    def shape(self, in_shape: tuple[int, ...]) -> LayerShape:
        """The layer on an input of ``in_shape``; :class:`ParamError` (path within the
        layer) where it does not fit."""
        raise NotImplementedError

    def build(self, shape: LayerShape, device: DeviceParams, weights: np.ndarray | None,
              bias: np.ndarray | None, rng: np.random.Generator) -> DeviceArray:
        """The layer's array on ``device`` (``weights`` and ``bias`` None without params)."""
        raise NotImplementedError

    def nonlinearity(self) -> ActivationParams:
        """The activation after the layer (identity for a layer that has none)."""
        return getattr(self, "activation", None) or Identity()


def _pair(name: str, value: tuple[int, ...]) -> None:
    if len(value) != 2:
        raise ParamError((name,), f"must be [height, width], got {list(value)}")


def _geometry(in_shape, window, stride, padding, kind, key) -> ConvGeometry:
    """The windows of a layer of type ``kind`` whose window size is field ``key``."""
    if len(in_shape) != 3:
        raise ParamError((), f"a {kind} layer needs a map input (H, W, C), got a "
                             f"{_map_size(in_shape)}")
    try:
        return ConvGeometry(*in_shape, *window, *stride, padding)
    except ValueError:
        raise ParamError((key,), f"a {window[0]}x{window[1]} window with 'valid' padding "
                                 f"does not fit the {_map_size(in_shape)} it gets") from None


@dataclass(frozen=True)
class LayerParams(NetworkLayerParams, kind="dense"):
    """A dense (fully-connected) layer: its width, non-linearity and (optionally) device."""

    units: int = param(ge=1)
    """Number of neurons (outputs of the layer)."""
    activation: ActivationParams = field(default_factory=Sigmoid)
    """Non-linearity applied to the pre-activations (name or ``{type: ..., ...}``)."""
    device: DeviceParams | None = None
    """Device holding this layer's weights; defaults to ``network.device``."""
    bias: bool = True
    """Whether the layer has a trainable bias. Without one the bias stays at its initial
    zero: writes to and weight perturbations of its slots are dropped (the flat layout
    keeps the slots, so every layer has the same ``[W.ravel(), b]`` shape)."""

    def shape(self, in_shape):
        if len(in_shape) != 1:
            raise ParamError((), f"a dense layer takes a flat input, got a "
                                 f"{_map_size(in_shape)}; put {{type: flatten}} before it")
        return LayerShape("dense", in_shape, (self.units,), (self.units, in_shape[0]))

    def build(self, shape, device, weights, bias, rng):
        return device.build(weights, bias, rng)


@dataclass(frozen=True)
class Conv2DParams(NetworkLayerParams, kind="conv2d"):
    """A 2-D convolution of a map (TFLite CONV_2D): ``channels`` filters of kh x kw x C."""

    channels: int = param(ge=1)
    """Output channels (filters)."""
    kernel: tuple[int, ...] = param((3, 3), ge=1)
    """Kernel [height, width]."""
    stride: tuple[int, ...] = param((1, 1), ge=1)
    """Stride [vertical, horizontal]."""
    padding: str = param("same", choices=PADDINGS)
    """``same``: output ceil(in / stride), zero padding split as TFLite splits it;
    ``valid``: no padding."""
    activation: ActivationParams = field(default_factory=ReLU)
    """Non-linearity applied to every output (name or ``{type: ..., ...}``)."""
    device: DeviceParams | None = None
    """Device holding this layer's kernel; defaults to ``network.device``."""
    bias: bool = True
    """Whether each output channel has a trainable bias (see the dense layer's ``bias``)."""

    def validate(self):
        _pair("kernel", self.kernel)
        _pair("stride", self.stride)

    def shape(self, in_shape):
        g = _geometry(in_shape, self.kernel, self.stride, self.padding, "conv2d", "kernel")
        return LayerShape("conv2d", in_shape, (g.out_h, g.out_w, self.channels),
                          (self.channels, g.patch_size), g)

    def build(self, shape, device, weights, bias, rng):
        return (device.build_conv(shape.geometry, weights, bias, rng)
                or ArrayConv2D.build(device, shape.geometry, weights, bias, rng))


@dataclass(frozen=True)
class DepthwiseConv2DParams(NetworkLayerParams, kind="depthwise_conv2d"):
    """A depthwise convolution (TFLite DEPTHWISE_CONV_2D): every input channel has
    ``depth_multiplier`` kernels of its own and sees no other channel."""

    depth_multiplier: int = param(1, ge=1)
    """Output channels per input channel."""
    kernel: tuple[int, ...] = param((3, 3), ge=1)
    """Kernel [height, width]."""
    stride: tuple[int, ...] = param((1, 1), ge=1)
    """Stride [vertical, horizontal]."""
    padding: str = param("same", choices=PADDINGS)
    """``same`` or ``valid``, as for conv2d."""
    activation: ActivationParams = field(default_factory=ReLU)
    """Non-linearity applied to every output (name or ``{type: ..., ...}``)."""
    device: DeviceParams | None = None
    """Device holding this layer's kernels; defaults to ``network.device``."""
    bias: bool = True
    """Whether each output channel has a trainable bias (see the dense layer's ``bias``)."""

    def validate(self):
        _pair("kernel", self.kernel)
        _pair("stride", self.stride)

    def shape(self, in_shape):
        g = _geometry(in_shape, self.kernel, self.stride, self.padding, "depthwise_conv2d",
                      "kernel")
        rows = g.in_c * self.depth_multiplier
        return LayerShape("depthwise_conv2d", in_shape, (g.out_h, g.out_w, rows),
                          (rows, g.taps), g)

    def build(self, shape, device, weights, bias, rng):
        return (device.build_depthwise(shape.geometry, weights, bias, rng)
                or ArrayDepthwise.build(device, shape.geometry, weights, bias, rng))


@dataclass(frozen=True)
class PoolParams(NetworkLayerParams):
    """Pooling: each window of a map reduced to one value per channel."""

    has_params = False

    pool: tuple[int, ...] = param((2, 2), ge=1)
    """Window [height, width]."""
    stride: tuple[int, ...] | None = param(None, ge=1)
    """Stride [vertical, horizontal]; unset: the window size (windows do not overlap)."""
    padding: str = param("valid", choices=PADDINGS)
    """``valid`` (windows inside the map) or ``same`` (windows at the border hold fewer
    values; an average counts only those)."""

    def validate(self):
        _pair("pool", self.pool)
        if self.stride is not None:
            _pair("stride", self.stride)

    def shape(self, in_shape):
        g = _geometry(in_shape, self.pool, self.stride or self.pool, self.padding, self.kind,
                      "pool")
        return LayerShape(self.kind, in_shape, (g.out_h, g.out_w, g.in_c), (0, 0), g)

    def build(self, shape, device, weights, bias, rng):
        return device.build_pool(self.kind, shape.geometry) or FloatPool(self.kind,
                                                                         shape.geometry)


@dataclass(frozen=True)
class AvgPoolParams(PoolParams, kind="avg_pool"):
    """Average pooling (TFLite AVERAGE_POOL_2D): the mean of the values in each window."""


@dataclass(frozen=True)
class MaxPoolParams(PoolParams, kind="max_pool"):
    """Max pooling (TFLite MAX_POOL_2D): the largest value in each window."""


@dataclass(frozen=True)
class FlattenParams(NetworkLayerParams, kind="flatten"):
    """A map read as a flat vector (NHWC order), so that a dense layer can follow."""

    has_params = False

    def shape(self, in_shape):
        if len(in_shape) != 3:
            raise ParamError((), f"flatten takes a map, got a {_map_size(in_shape)}")
        return LayerShape("flatten", in_shape, (math.prod(in_shape),), (0, 0))

    def build(self, shape, device, weights, bias, rng):
        return Flatten(shape.n_in)


def layer_shapes(layers, in_shape: tuple[int, ...]) -> list[LayerShape]:
    """Each layer's :class:`LayerShape`, following the input through them; a
    :class:`ParamError` at ``layers[i]...`` for the first layer that does not fit."""
    shapes = []
    for i, layer in enumerate(layers):
        try:
            shapes.append(layer.shape(tuple(in_shape)))
        except ParamError as exc:
            raise exc.under(("layers", i)) from None
        in_shape = shapes[-1].out_shape
    return shapes

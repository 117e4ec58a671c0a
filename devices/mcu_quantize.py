"""Post-training quantization: a float network's layers as int8 MCU layers, calibrated on data.

As TFLite's converter does it: the range of every activation tensor is the min/max over
calibration inputs run through the float network; weights become symmetric int8 (per
output channel or per tensor), biases int32 at scale s_in * s_w; ReLU is fused into the
kernel. Layer l's output quantization is layer l+1's input quantization, so the layers
chain exactly; a pooling layer keeps its input's quantization (TFLM requires it) and a
flatten is the reshape TFLite drops (FULLY_CONNECTED reads the map as it is).
"""
from __future__ import annotations

import numpy as np

from devices.conv import conv2d, depthwise_conv2d
from devices.mcu import MCUDense, MCUParams
from devices.mcu_conv import MCUConv2D, MCUDepthwise, MCUPool
from devices.mcu_quant import QuantParams
from devsim.array_layers import Flatten, pool2d
from devsim.layers import LayerShape

_FUSED_FOR = {"identity": "none", "relu": "relu"}


def _float_layer(layer: LayerShape, w, b, h):
    """The float layer's output before its activation."""
    if layer.kind == "dense":
        return h @ np.asarray(w, dtype=np.float64).T + b
    if layer.kind == "conv2d":
        return conv2d(layer.geometry, np.asarray(w, dtype=np.float64), b, h)
    if layer.kind == "depthwise_conv2d":
        return depthwise_conv2d(layer.geometry, np.asarray(w, dtype=np.float64), b, h)
    if layer.kind in ("avg_pool", "max_pool"):
        return pool2d(layer.kind, layer.geometry, h)
    return h  # flatten


def post_training_quantize(weights, biases, activations, calibration_x,
                           params: MCUParams | None = None,
                           layers: list[LayerShape] | None = None) -> list:
    """int8 MCU layers of a float network: ``weights[l]`` the parameter matrix of layer l
    ((n_out, n_in) for a dense layer, the unrolled kernel of a convolution; None without
    parameters), ``biases[l]``, ``activations[l]`` its non-linearity (``"identity"`` or
    ``"relu"``; ReLU is fused into the kernel), ``layers`` their
    :class:`~devsim.layers.LayerShape` (None: a chain of dense layers). Returns
    :class:`~devices.mcu.MCUDense`, :class:`~devices.mcu_conv.MCUConv2D`,
    :class:`~devices.mcu_conv.MCUDepthwise`, :class:`~devices.mcu_conv.MCUPool` and
    :class:`~devsim.array_layers.Flatten` layers in order.
    """
    params = params or MCUParams()
    if layers is None:
        layers = [LayerShape("dense", (np.shape(w)[1],), (np.shape(w)[0],), np.shape(w))
                  for w in weights]
    h = np.asarray(calibration_x, dtype=np.float64)
    q_in = QuantParams.from_range(h.min(), h.max())
    out = []
    for i, (layer, w, b, act) in enumerate(zip(layers, weights, biases, activations,
                                               strict=True)):
        h = _float_layer(layer, w, b, h)
        if layer.kind == "flatten":
            out.append(Flatten(layer.n_in))
            continue
        if not layer.n_params:
            out.append(MCUPool(layer.kind, layer.geometry, q_in, params))
            continue
        if act not in _FUSED_FOR:
            raise ValueError(f"layer {i}: int8 quantization supports activations "
                             f"{sorted(_FUSED_FOR)}, got {act!r}")
        if act == "relu":
            h = np.maximum(h, 0.0)
        q_out = QuantParams.from_range(h.min(), h.max())
        fused = _FUSED_FOR[act] if params.fused_activation == "none" else params.fused_activation
        layer_params = params.replace(fused_activation=fused)
        if layer.kind == "dense":
            out.append(MCUDense.from_float(w, b, q_in, q_out, layer_params))
        else:
            kind = MCUConv2D if layer.kind == "conv2d" else MCUDepthwise
            out.append(kind.from_float(layer.geometry, w, b, q_in, q_out, layer_params))
        q_in = q_out
    return out

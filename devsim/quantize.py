"""int8 deployment: post-training quantization of a float network onto the MCU device.

:func:`quantize_network` turns a trained float network (any device whose ``read``
gives its parameters, typically ``ideal``) into the same layers on the ``mcu``
device, calibrated as TFLite's converter does (min/max of every activation tensor
over calibration inputs, in the ideal float model), so it runs under the same
:class:`~devsim.hardware.Hardware` interface with costs on dequantized outputs. Dense
layers become FULLY_CONNECTED, convolutions CONV_2D and DEPTHWISE_CONV_2D (weights
quantized per output channel or per tensor), pooling AVERAGE_POOL_2D and MAX_POOL_2D on
their input's quantization (TFLM requires it); flatten is the reshape TFLite drops.
"""
from __future__ import annotations

import numpy as np

from devices.mcu import MCUDense, MCUParams, QuantParams
from devices.mcu_conv import MCUConv2D, MCUDepthwise, MCUPool
from devsim.array_layers import Flatten
from devsim.device import split_flat
from devsim.network import Network
from devsim.reference import IdealModel

_FUSED_FOR = {"identity": "none", "relu": "relu"}


def quantize_network(network: Network, calibration_x: np.ndarray,
                     params: MCUParams | None = None) -> Network:
    """A new network of int8 MCU layers with ``network``'s weights, activations and loss.

    Every layer with parameters must use ``identity`` or ``relu`` (ReLU is fused into
    the kernel); ``params`` gives the core, budgets and weight-scale granularity. Layer
    l's output quantization is layer l+1's input quantization, so the layers chain
    exactly.
    """
    params = params or MCUParams()
    x = np.asarray(calibration_x, dtype=np.float64)
    model = IdealModel(network.layers, network.activations, network.params.loss)
    outputs = model.layer_outputs(network.read(), x)
    q_in = QuantParams.from_range(x.min(), x.max())
    arrays = []
    for i, (spec, shape, device) in enumerate(zip(network.params.layers, network.layers,
                                                  network.devices)):
        if shape.kind == "flatten":
            arrays.append(Flatten(shape.n_in))
            continue
        if not spec.has_params:
            arrays.append(MCUPool(shape.kind, shape.geometry, q_in, params))
            continue
        act = spec.nonlinearity().kind
        if act not in _FUSED_FOR:
            raise ValueError(f"layer {i}: int8 quantization supports activations "
                             f"{sorted(_FUSED_FOR)}, got {act!r}")
        q_out = QuantParams.from_range(outputs[i].min(), outputs[i].max())
        fused = _FUSED_FOR[act] if params.fused_activation == "none" else params.fused_activation
        layer_params = params.replace(fused_activation=fused)
        w, b = split_flat(device.read(), device.shape)
        if shape.kind == "dense":
            arrays.append(MCUDense.from_float(w, b, q_in, q_out, layer_params))
        else:
            kind = MCUConv2D if shape.kind == "conv2d" else MCUDepthwise
            arrays.append(kind.from_float(shape.geometry, w, b, q_in, q_out, layer_params))
        q_in = q_out
    net_params = network.params.replace(
        device=params, layers=tuple(layer.replace(device=None) if layer.has_params else layer
                                    for layer in network.params.layers))
    rng = np.random.default_rng(0)  # only fills the layers that are replaced below
    quantized = Network(net_params, network.n_inputs, rng, rng)
    quantized.use_devices(arrays)
    return quantized

"""int8 deployment: post-training quantization of a float network onto the MCU device.

:func:`quantize_network` turns a trained float network (any device whose ``read``
gives its parameters, typically ``ideal``) into the same layers on the ``mcu``
device, calibrated as TFLite's converter does
(:func:`devices.mcu_quantize.post_training_quantize`), so it runs under the same
:class:`~devsim.hardware.Hardware` interface with costs on dequantized outputs. Dense
layers become FULLY_CONNECTED, convolutions CONV_2D and DEPTHWISE_CONV_2D, pooling
AVERAGE_POOL_2D and MAX_POOL_2D; flatten is the reshape TFLite drops.
"""
from __future__ import annotations

import numpy as np

from devices.mcu import MCUParams
from devices.mcu_quantize import post_training_quantize
from devsim.device import split_flat
from devsim.network import Network


def quantize_network(network: Network, calibration_x: np.ndarray,
                     params: MCUParams | None = None) -> Network:
    """A new network of int8 MCU layers with ``network``'s weights, activations and loss.

    Every layer with parameters must use ``identity`` or ``relu`` (ReLU is fused into
    the kernel); ``params`` gives the core, budgets and weight-scale granularity.
    """
    params = params or MCUParams()
    weights, biases = [], []
    for device, layer in zip(network.devices, network.layers):
        w, b = split_flat(device.read(), device.shape) if layer.n_params else (None, None)
        weights.append(w)
        biases.append(b)
    kinds = [layer.nonlinearity().kind for layer in network.params.layers]
    arrays = post_training_quantize(weights, biases, kinds, calibration_x, params,
                                    network.layers)
    net_params = network.params.replace(
        device=params, layers=tuple(layer.replace(device=None) if layer.has_params else layer
                                    for layer in network.params.layers))
    rng = np.random.default_rng(0)  # only fills the layers that are replaced below
    quantized = Network(net_params, network.n_inputs, rng, rng)
    quantized.use_devices(arrays)
    return quantized

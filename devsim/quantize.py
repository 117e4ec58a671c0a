"""int8 deployment: post-training quantization of a float network onto the MCU device.

:func:`quantize_network` turns a trained float network (any device whose ``read``
gives its parameters, typically ``ideal``) into the same layers on the ``mcu``
device, calibrated as TFLite's converter does (min/max of every activation tensor
over calibration inputs), so it runs under the same :class:`~devsim.hardware.Hardware`
interface with costs on dequantized outputs.
"""
from __future__ import annotations

import numpy as np

from devsim.device import split_flat
from devices.mcu import MCUParams, post_training_quantize
from devsim.network import Network


def quantize_network(network: Network, calibration_x: np.ndarray,
                     params: MCUParams | None = None) -> Network:
    """A new network of int8 MCU layers with ``network``'s weights, activations and loss.

    Every layer must use ``identity`` or ``relu`` (ReLU is fused into the kernel);
    ``params`` gives the core, budgets and weight-scale granularity.
    """
    params = params or MCUParams()
    weights, biases = [], []
    for device in network.devices:
        w, b = split_flat(device.read(), device.shape)
        weights.append(w)
        biases.append(b)
    kinds = [layer.activation.kind for layer in network.params.layers]
    layers = post_training_quantize(weights, biases, kinds, calibration_x, params)
    net_params = network.params.replace(
        device=params, layers=tuple(layer.replace(device=None) for layer in network.params.layers))
    rng = np.random.default_rng(0)  # only fills the layers that are replaced below
    quantized = Network(net_params, network.shapes[0][1], rng, rng)
    quantized.use_devices(layers)
    return quantized

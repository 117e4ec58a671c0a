"""int8 deployment: post-training quantization of a float network, and the memory a run needs.

:func:`quantize_network` turns a trained float network (any device whose ``read``
gives its parameters, typically ``ideal``) into the same layers on the ``mcu``
device, calibrated as TFLite's converter does (min/max of every activation tensor
over calibration inputs), so it runs under the same :class:`~devsim.hardware.Hardware`
interface with costs on dequantized outputs. :func:`run_memory` sizes the SRAM and
flash a run on the MCU needs, from the layers and what the estimator trains.
"""
from __future__ import annotations

import numpy as np

from devices.base import split_flat
from devices.mcu import MCUParams, post_training_quantize
from devices.mcu_memory import MemoryReport, memory_report
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


def training_methods(estimator, n_layers: int) -> list[str | None] | None:
    """What trains each layer, in the accountant's terms, or None if not modelled.

    Estimators that train integer chips say so with ``training_methods(n_layers)``;
    reference backpropagation (``backprop``) counts as int8-aware BP on every layer.
    """
    if hasattr(estimator, "training_methods"):
        return estimator.training_methods(n_layers)
    if estimator.kind == "backprop":
        return ["bp"] * n_layers
    return None


def mcu_device(network_params) -> MCUParams | None:
    """The MCU parameters of a network config (the network's device, else its first
    MCU layer's), or None if no layer runs on an MCU."""
    devices = [network_params.device] + [layer.device for layer in network_params.layers]
    return next((d for d in devices if isinstance(d, MCUParams)), None)


def run_memory(network_params, shapes, estimator) -> MemoryReport | None:
    """SRAM and flash of a run on the MCU (None if no layer runs on one).

    Training buffers follow :func:`training_methods`; an estimator the accountant does
    not model is sized as inference only.
    """
    mcu = mcu_device(network_params)
    if mcu is None:
        return None
    methods = training_methods(estimator, len(shapes))
    return memory_report(shapes, methods, per_channel=mcu.per_channel,
                         n_queries=getattr(estimator, "queries", 1))

"""Assembly: a validated run config becomes data, hardware and a training loop."""
from __future__ import annotations

from typing import NamedTuple

from devsim.config import ConfigError
from devsim.data import Dataset
from devsim.hardware import Hardware
from devsim.network import Network
from devsim.params import ParamError
from devsim.rng import streams
from devsim.runconfig import RunConfig
from trainer.loop import TrainingLoop


class Built(NamedTuple):
    """Everything a run needs, constructed from its config."""

    data: Dataset
    hardware: Hardware
    loop: TrainingLoop
    memory: object | None = None
    """The memory the run needs where a device accounts it (an MCU's SRAM and flash,
    :meth:`devsim.device.DeviceParams.memory`; None elsewhere)."""


def build(config: RunConfig, source: str = "<config>") -> Built:
    """Construct data, hardware and training loop (raises ConfigError on mismatch)."""
    rngs = streams(config.seed)
    try:
        data = config.data.load(rngs["data"])
    except ParamError as exc:
        raise ConfigError([f"{source}: {exc.under(('data',))}"]) from None
    n_out = config.network.layers[-1].units
    if n_out != data.n_outputs:
        last = len(config.network.layers) - 1
        raise ConfigError([f"{source}: network.layers[{last}].units: must equal the "
                               f"data set's {data.n_outputs} outputs, got {n_out}"])
    if config.network.loss == "cross_entropy" and n_out < 2:
        raise ConfigError([f"{source}: network.loss: cross_entropy needs at least 2 "
                               f"outputs; use mse for a single output"])
    network = Network(config.network, data.n_inputs, rngs["init"], rngs["device"])
    hardware = Hardware(network, config.network.loss)
    try:
        estimator = config.train.estimator.build(hardware, rngs["estimator"])
    except ParamError as exc:
        raise ConfigError([f"{source}: {exc.under(('train', 'estimator'))}"]) from None
    loop = TrainingLoop(hardware, data.x_train, data.y_train, estimator,
                        config.train.optimizer.build(), config.train.timescales, rngs["sampler"])
    return Built(data, hardware, loop, _check_memory(config, hardware, source))


def _check_memory(config: RunConfig, hardware: Hardware, source: str):
    """The memory the run needs on the first device that accounts memory (network device
    first, then the layers' own), checked against that device's budgets."""
    footprint = config.train.estimator.footprint(len(hardware.layer_shapes))
    methods, queries = footprint if footprint is not None else (None, 1)
    network = config.network
    devices = [(("network", "device"), network.device)] + [
        (("network", "layers", i, "device"), layer.device)
        for i, layer in enumerate(network.layers) if layer.device is not None]
    for path, device in devices:
        try:
            report = device.memory(hardware.layer_shapes, methods, queries)
        except ParamError as exc:
            raise ConfigError([f"{source}: {exc.under(path)}"]) from None
        if report is not None:
            return report
    return None

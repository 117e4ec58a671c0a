"""Assembly: a validated run config becomes data, hardware and a training loop."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from devsim.bench import Bench
from devsim.config import ConfigError
from devsim.data import Dataset
from devsim.hardware import Hardware
from devsim.network import Network
from devsim.params import ParamError
from devsim.rng import streams
from devsim.runconfig import RunConfig

if TYPE_CHECKING:  # imported where a run is built: devsim's API loads before the trainer
    from trainer.loop import TrainingLoop


class Built(NamedTuple):
    """Everything a run needs, constructed from its config."""

    data: Dataset
    bench: Bench
    """The network on the experimenter's bench; ``bench.chip`` is the controller's side."""
    loop: TrainingLoop
    memory: object | None = None
    """The memory the run needs where a device accounts it (an MCU's SRAM and flash,
    :meth:`devsim.device.DeviceParams.memory`; None elsewhere)."""

    @property
    def hardware(self) -> Hardware:
        """The chip's controller side (``bench.chip``)."""
        return self.bench.chip


def build(config: RunConfig, source: str = "<config>", restore=None) -> Built:
    """Construct data, hardware and training loop (raises ConfigError on mismatch);
    ``restore`` (a :class:`devsim.checkpoint.TrainingState`) puts a saved run's
    training state in place of a fresh one."""
    from trainer.base import Setup
    from trainer.executors import select
    from trainer.loop import TrainingLoop
    rngs = streams(config.seed)
    try:
        data = config.data.load(rngs["data"])
    except ParamError as exc:
        raise ConfigError([f"{source}: {exc.under(('data',))}"]) from None
    try:
        n_out = config.network.shapes(data.n_inputs)[-1].n_out
    except ParamError as exc:
        raise ConfigError([f"{source}: {exc.under(('network',))}"]) from None
    if n_out != data.n_outputs:
        last = len(config.network.layers) - 1
        key = ".units" if config.network.layers[-1].kind == "dense" else ""
        raise ConfigError([f"{source}: network.layers[{last}]{key}: must equal the "
                           f"data set's {data.n_outputs} outputs, got {n_out}"])
    if config.network.loss == "cross_entropy" and n_out < 2:
        raise ConfigError([f"{source}: network.loss: cross_entropy needs at least 2 "
                           f"outputs; use mse for a single output"])
    train = config.train
    if restore is None:
        network = Network(config.network, data.n_inputs, rngs["init"], rngs["device"])
        bench = Bench(network, config.network.loss)
        setup = Setup(bench.chip, rngs["estimator"], train.timescales,
                      bench if train.estimator.outside_the_rule else None)
        try:
            estimator = train.estimator.build(setup)
        except ParamError as exc:
            raise ConfigError([f"{source}: {exc.under(('train', 'estimator'))}"]) from None
    else:
        bench, estimator = restore.bench, restore.estimator
    diagnose = cosine_diagnostic(bench) if train.diagnose_cosine else None
    loop = TrainingLoop(bench.chip, data.x_train, data.y_train, estimator,
                        train.optimizer.build(), train.timescales, rngs["sampler"],
                        executor=select(bench, estimator, train.optimizer, train.executor),
                        diagnose=diagnose)
    if restore is not None:
        loop.opt_state, loop.stream = restore.optimizer_state, restore.stream
    return Built(data, bench, loop, _check_memory(config, bench, source))


def cosine_diagnostic(bench: Bench):
    """``diagnose(window, estimate)`` for the loop: the cosine of the estimate to the
    ideal model's exact gradient of the window's mean cost (from the bench, outside the
    rule)."""
    def diagnose(window, estimate):
        exact = bench.reference().gradient(bench.read_params(), window.x, window.y)
        norm = np.linalg.norm(estimate) * np.linalg.norm(exact)
        return {"cosine": float(estimate @ exact / norm) if norm > 0 else 0.0}
    return diagnose


def _check_memory(config: RunConfig, bench: Bench, source: str):
    """The memory the run needs on the first device that accounts memory (network device
    first, then the layers' own), checked against that device's budgets; a layer without
    parameters is never trained."""
    layers = bench.network.layers
    footprint = config.train.estimator.footprint(len(layers))
    methods, queries = footprint if footprint is not None else (None, 1)
    if methods is not None:
        methods = [method if layer.n_params else None
                   for method, layer in zip(methods, layers, strict=True)]
    network = config.network
    devices = [(("network", "device"), network.device)] + [
        (("network", "layers", i, "device"), layer.device)
        for i, layer in enumerate(network.layers) if getattr(layer, "device", None) is not None]
    for path, device in devices:
        try:
            report = device.memory(layers, methods, queries)
        except ParamError as exc:
            raise ConfigError([f"{source}: {exc.under(path)}"]) from None
        if report is not None:
            return report
    return None

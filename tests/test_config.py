"""Config loading: every bad input gets a one-line error with file, line and key path."""
import textwrap

import pytest

from devsim.config import ConfigError, dump, loads
from devsim.runner import RunConfig

BASE = """\
name: t
seed: 3
data: {type: digits}
network:
  loss: mse
  layers:
    - {units: 8, activation: tanh}
    - units: 10
      activation: sigmoid
train:
  estimator: {type: mgd, target: nodes, epsilon: 0.1}
  optimizer: {type: sgd, lr: 0.5}
  timescales: {tau_x: 1, tau_theta: 10}
  steps: 1000
"""


def _errors(text, overrides=()):
    with pytest.raises(ConfigError) as info:
        loads(text, RunConfig, source="c.yaml", overrides=overrides)
    return info.value.messages


LAYER0 = "\n  layers:\n    - {units: 8, activation: tanh}"
MAP = "\n  input_shape: [8, 8, 1]\n  layers:\n"
"""The first layer of BASE, and the start of a layer list on an 8x8 image."""

# (description, replace old -> new in BASE, expected start of the single message)
BAD = [
    ("negative seed", ("seed: 3", "seed: -1"), "c.yaml:2: seed: must be >= 0, got -1"),
    ("seed not an int", ("seed: 3", "seed: 1.5"), "c.yaml:2: seed: must be an integer, got 1.5"),
    ("unknown top key", ("name: t", "nmae: t"), "c.yaml:1: nmae: unknown key (did you mean 'name'?)"),
    ("unknown data type", ("{type: digits}", "{type: digts}"),
     "c.yaml:3: data.type: unknown data type 'digts' (did you mean 'digits'?)"),
    ("data without type", ("{type: digits}", "{bits: 3}"), "c.yaml:3: data: unknown data type None"),
    ("test_fraction too big", ("{type: digits}", "{type: digits, test_fraction: 1.0}"),
     "c.yaml:3: data.test_fraction: must be < 1.0, got 1.0"),
    ("bad loss", ("loss: mse", "loss: mae"),
     "c.yaml:5: network.loss: must be one of 'mse', 'cross_entropy', got 'mae'"),
    ("layers not a list", ("  layers:\n    - {units: 8, activation: tanh}\n    - units: 10\n      activation: sigmoid",
                           "  layers: 3"), "c.yaml:6: network.layers: must be a list, got 3"),
    ("zero units", ("{units: 8,", "{units: 0,"), "c.yaml:7: network.layers[0].units: must be >= 1, got 0"),
    ("units as string", ("units: 10", "units: ten"),
     "c.yaml:8: network.layers[1].units: must be an integer, got 'ten'"),
    ("misspelt layer key", ("activation: sigmoid", "activaton: sigmoid"),
     "c.yaml:9: network.layers[1].activaton: unknown key (did you mean 'activation'?)"),
    ("unknown activation", ("activation: tanh", "activation: tahn"),
     "c.yaml:7: network.layers[0].activation.type: unknown activation type 'tahn' (did you mean 'tanh'?)"),
    ("leaky slope out of range", ("activation: tanh}", "activation: {type: leaky_relu, slope: 2}}"),
     "c.yaml:7: network.layers[0].activation.slope: must be <= 1.0, got 2.0"),
    ("logistic negative spread", ("activation: tanh}", "activation: {type: logistic, k_spread: -0.1}}"),
     "c.yaml:7: network.layers[0].activation.k_spread: must be >= 0.0, got -0.1"),
    ("unknown device", ("  loss: mse", "  loss: mse\n  device: {type: memristr}"),
     "c.yaml:6: network.device.type: unknown device type 'memristr'"),
    ("empty layer list", ("  layers:\n    - {units: 8, activation: tanh}\n    - units: 10\n      activation: sigmoid",
                          "  layers: []"), "c.yaml:6: network.layers: must list at least one layer"),
    ("bad init", ("  loss: mse", "  loss: mse\n  init: zeros"),
     "c.yaml:6: network.init: must be one of 'glorot_uniform', 'glorot_normal', 'he_normal', got 'zeros'"),
    ("estimator target", ("target: nodes", "target: synapses"),
     "c.yaml:11: train.estimator.target: must be one of 'nodes', 'weights', got 'synapses'"),
    ("epsilon zero", ("epsilon: 0.1", "epsilon: 0"), "c.yaml:11: train.estimator.epsilon: must be > 0.0, got 0.0"),
    ("unknown optimizer", ("type: sgd", "type: adamw"),
     "c.yaml:12: train.optimizer.type: unknown optimizer type 'adamw' (did you mean 'adam'?)"),
    ("negative lr", ("lr: 0.5", "lr: -0.5"), "c.yaml:12: train.optimizer.lr: must be > 0.0, got -0.5"),
    ("lr not a number", ("lr: 0.5", "lr: fast"), "c.yaml:12: train.optimizer.lr: must be a number, got 'fast'"),
    ("momentum beta", ("{type: sgd, lr: 0.5}", "{type: momentum, lr: 0.5, beta: 1}"),
     "c.yaml:12: train.optimizer.beta: must be < 1.0, got 1.0"),
    ("tau zero", ("tau_x: 1", "tau_x: 0"), "c.yaml:13: train.timescales.tau_x: must be >= 1, got 0"),
    ("steps bool", ("steps: 1000", "steps: yes"), "c.yaml:14: train.steps: must be an integer, got True"),
    ("trace not a mapping", ("name: t", "name: t\ntrace: 5"), "c.yaml:2: trace: must be a mapping, got 5"),
    ("data not a mapping", ("{type: digits}", "5"), "c.yaml:3: data: must be a mapping with a 'type' key, got 5"),
    ("duplicate key", ("seed: 3", "seed: 3\nseed: 4"), "c.yaml:3: seed: duplicate key (first given on line 2)"),
    ("not YAML", ("name: t", "name: [t"), "c.yaml:2: not valid YAML"),
    ("file data without path", ("{type: digits}", "{type: file}"),
     "c.yaml:3: data.path: must name a .npz or .h5 file"),
    # convolution layers: the shape errors name the layer that does not fit its input
    ("conv without input shape", (LAYER0, "\n  layers:\n    - {type: conv2d, channels: 4}"),
     "c.yaml:5: network.input_shape: layers[0] (conv2d) needs a map: give the input's "
     "[H, W, C]"),
    ("input shape of two numbers", (LAYER0, "\n  input_shape: [8, 8]" + LAYER0),
     "c.yaml:6: network.input_shape: must be [H, W, C] (or empty for a flat input), got [8, 8]"),
    ("kernel larger than the map", (LAYER0, MAP + "    - {type: conv2d, channels: 4, "
                                    "kernel: [9, 9], padding: valid}"),
     "c.yaml:8: network.layers[0].kernel: a 9x9 window with 'valid' padding does not fit "
     "the 8x8x1 map it gets"),
    ("pool too large after a strided conv", (LAYER0, MAP + "    - {type: conv2d, channels: 4, "
                                             "stride: [4, 4]}\n    - {type: max_pool, pool: [3, 3]}"),
     "c.yaml:9: network.layers[1].pool: a 3x3 window with 'valid' padding does not fit the "
     "2x2x4 map it gets"),
    ("dense on a map", (LAYER0, MAP + "    - {type: depthwise_conv2d}"),
     "c.yaml:9: network.layers[1]: a dense layer takes a flat input, got a 8x8x1 map; put "
     "{type: flatten} before it"),
    ("flatten of a vector", (LAYER0, MAP + "    - flatten\n    - flatten"),
     "c.yaml:9: network.layers[1]: flatten takes a map, got a vector of 64"),
    ("kernel of one number", (LAYER0, MAP + "    - {type: conv2d, channels: 2, kernel: [3]}"),
     "c.yaml:8: network.layers[0].kernel: must be [height, width], got [3]"),
    ("misspelt layer type", (LAYER0, "\n  layers:\n    - {type: conv_2d, channels: 2}"),
     "c.yaml:7: network.layers[0].type: unknown layer type 'conv_2d' (did you mean 'conv2d'?)"),
    ("decorrelation of a map", (LAYER0, "\n  decorrelation: true" + MAP
                                + "    - {type: conv2d, channels: 2}\n    - flatten"),
     "c.yaml:6: network.decorrelation: needs dense layers only (one square matrix per input "
     "vector), but layers[0] is conv2d"),
]


@pytest.mark.parametrize("old_new,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_file_line_path_and_rule(old_new, expected):
    old, new = old_new
    assert old in BASE
    messages = _errors(BASE.replace(old, new, 1))
    assert len(messages) == 1, messages
    assert messages[0].startswith(expected), messages[0]
    assert "\n" not in messages[0]


def test_all_errors_are_reported_at_once():
    text = BASE.replace("seed: 3", "seed: -2").replace("lr: 0.5", "lr: -1")
    messages = _errors(text)
    assert [m.split(":")[2].strip() for m in messages] == ["seed", "train.optimizer.lr"]


def test_missing_required_key():
    assert _errors("seed: 1\n") == ["c.yaml:1: missing required key 'network'"]


def test_valid_config_loads_with_defaults():
    config = loads(BASE, RunConfig, source="c.yaml")
    assert config.seed == 3 and config.network.layers[1].units == 10
    assert config.network.layers[0].activation.kind == "tanh"
    assert config.train.optimizer.lr == 0.5 and config.trace.log_every == 10_000


def test_scientific_notation_floats():
    config = loads(BASE.replace("lr: 0.5", "lr: 1e-3"), RunConfig)
    assert config.train.optimizer.lr == 1e-3


def test_overrides_set_nested_values_and_are_validated():
    config = loads(BASE, RunConfig, overrides=["train.optimizer.lr=0.25", "network.layers[0].units=16",
                                               "network.layers.1.activation=relu", "seed=9",
                                               "train.optimizer.type=adam"])
    assert config.train.optimizer.lr == 0.25 and config.train.optimizer.kind == "adam"
    assert config.network.layers[0].units == 16 and config.seed == 9
    assert config.network.layers[1].activation.kind == "relu"
    bad = _errors(BASE, overrides=["train.optimizer.lr=-3"])
    assert bad == ["c.yaml:12: train.optimizer.lr: must be > 0.0, got -3.0"]
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        loads(BASE, RunConfig, overrides=["seed"])
    with pytest.raises(ConfigError, match=r"network.layers\[5\].units: index out of range|does not exist"):
        loads(BASE, RunConfig, overrides=["network.layers[5].units=3"])
    with pytest.raises(ConfigError, match="short form 'tanh'"):
        loads(BASE, RunConfig, overrides=["network.layers[0].activation.slope=0.1"])


def test_dump_round_trips():
    config = loads(BASE, RunConfig)
    again = loads(dump(config), RunConfig)
    assert again == config


def test_every_bundled_config_validates():
    from pathlib import Path

    from devsim.runner import load_config
    paths = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        load_config(path)


def test_error_text_is_one_line_per_problem():
    text = textwrap.dedent(BASE).replace("units: 10", "units: -1").replace("epsilon: 0.1", "epsilon: -1")
    messages = _errors(text)
    assert len(messages) == 2 and all("\n" not in m for m in messages)


def test_presets_are_referenced_by_name_with_overrides(tmp_path):
    from pathlib import Path

    from devsim.runner import load_config
    quick = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    config = load_config(quick, ["network.device.preset=crossbar_reram",
                                 "network.device.read_noise=0.05"])
    device = config.network.device
    assert device.kind == "crossbar" and device.read_noise == 0.05
    import yaml
    from devsim.registry import preset_files
    reram = yaml.safe_load(preset_files()["crossbar_reram"].read_text())
    for key, value in reram.items():
        if key not in ("type", "read_noise"):
            assert getattr(device, key) == pytest.approx(value, abs=0), key
    # the resolved config no longer needs the preset file
    assert loads(dump(config), RunConfig) == config
    with pytest.raises(ConfigError, match=r"network.device.preset: no preset 'crossbar_rram'.*did you mean 'crossbar_reram'"):
        load_config(quick, ["network.device.preset=crossbar_rram"])

"""Config loading by its messages and results, on small schemas: duplicate keys name the
first occurrence, family members take (or refuse) their own ``type``, unknown keys list
what the class takes, preset and ``--set`` mistakes, and the resolved dump keeps field
order (devsim/config.py)."""
import dataclasses

import pytest

from devsim.config import ConfigError, dump, from_data, loads, parse_overrides, apply_overrides
from devsim.params import Params
from devsim.runconfig import RunConfig
from trainer.optim import AdamParams, OptimizerParams, SGDParams


@dataclasses.dataclass(frozen=True)
class Empty(Params):
    """A schema with no keys."""


def messages(call):
    with pytest.raises(ConfigError) as caught:
        call()
    return caught.value.messages


def test_every_repeat_of_a_key_names_its_first_line():
    text = "lr: 1.0\nlr: 2.0\nclip_norm: 1.0\nlr: 3.0\n"
    assert messages(lambda: loads(text, SGDParams, source="o.yaml")) == [
        "o.yaml:2: lr: duplicate key (first given on line 1)",
        "o.yaml:4: lr: duplicate key (first given on line 1)"]


def test_a_member_takes_its_own_type_and_refuses_another():
    assert from_data(SGDParams, {"type": "sgd", "lr": 0.5}) == SGDParams(lr=0.5)
    assert from_data(OptimizerParams, {"type": "adam"}) == AdamParams()
    (message,) = messages(lambda: from_data(SGDParams, {"type": "adam", "lr": 0.5}))
    assert message.startswith("<config>: type: unknown key; SGDParams takes: lr, clip_norm")


def test_unknown_keys_list_what_the_class_takes():
    (message,) = messages(lambda: from_data(SGDParams, {"lrr": 0.5}))
    assert message == ("<config>: lrr: unknown key (did you mean 'lr'?); SGDParams takes: "
                       "lr, clip_norm, schedule, decay_updates, final_lr_fraction")
    (message,) = messages(lambda: from_data(Empty, {"x": 1}))
    assert message == "<config>: x: unknown key; Empty takes: no keys"


def test_preset_mistakes(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "listy.yaml").write_text("- 1\n- 2\n")
    config = "network:\n  device: {preset: %s}\n  layers: [{units: 2}]\ndata: {type: parity}\n"
    for name, expected in (("3", "network.device.preset: must name a preset, got 3"),
                           ("listy", "network.device.preset: listy.yaml does not hold a "
                                     "mapping")):
        (message,) = messages(lambda: loads(config % name, RunConfig, source="c.yaml",
                                            base_dir=tmp_path))
        assert message.endswith(expected) and message.startswith("c.yaml:")


def test_set_mistakes_name_the_path():
    with pytest.raises(ConfigError, match=r"^--set a\.\.b: cannot read key path at ''$"):
        parse_overrides(["a..b=1"])
    data = {"network": {"layers": [{"units": 2}, {"units": 3}], "loss": "mse"}}
    with pytest.raises(ConfigError, match=r"^--set network\.layers\[5\]\.units: "
                                          r"network\.layers\[5\] does not exist$"):
        apply_overrides(data, parse_overrides(["network.layers[5].units=4"]))
    with pytest.raises(ConfigError, match=r"^--set network\.loss\.kind\.x: network\.loss is "
                                          r"not a mapping$"):
        apply_overrides(data, parse_overrides(["network.loss.kind.x=1"]))
    assert apply_overrides(data, parse_overrides(["network.layers[1].units=4"])) \
        ["network"]["layers"][1] == {"units": 4}


def test_the_resolved_dump_keeps_the_fields_order():
    text = dump(AdamParams(lr=0.01))
    keys = [line.split(":")[0] for line in text.splitlines()]
    assert keys == ["type"] + [f.name for f in dataclasses.fields(AdamParams)]
    assert loads(text, OptimizerParams) == AdamParams(lr=0.01)

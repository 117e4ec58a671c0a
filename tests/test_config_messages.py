"""Config loading by its messages and results, on small schemas: duplicate keys name the
first occurrence, family members take (or refuse) their own ``type``, unknown keys list
what the class takes, preset and ``--set`` mistakes, and the resolved dump keeps field
order (devsim/config.py)."""
import dataclasses

import pytest
import yaml

from devsim.config import (ConfigError, apply_overrides, dump, from_data, loads,
                           parse_overrides, preset_catalog)
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


def test_a_preset_named_by_its_file_is_read_beside_the_config(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "fast.yaml").write_text("type: adam\nlr: 0.25\n")
    config = "optimizer: {preset: mine/fast.yaml, b1: 0.5}\n"

    @dataclasses.dataclass(frozen=True)
    class Holder(Params):
        """Holds an optimizer."""
        optimizer: OptimizerParams = dataclasses.field(default_factory=SGDParams)

    assert loads(config, Holder, base_dir=tmp_path).optimizer == AdamParams(lr=0.25, b1=0.5)


def test_an_unreadable_preset_is_named_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    locked = tmp_path / "presets" / "locked.yaml"
    locked.write_text("type: crossbar\n")
    real = type(locked).read_text

    def read_text(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(locked), "read_text", read_text)
    config = "network:\n  device: {preset: locked}\n  layers: [{units: 2}]\ndata: {type: parity}\n"
    (message,) = messages(lambda: loads(config, RunConfig, source="c.yaml", base_dir=tmp_path))
    assert message == f"c.yaml:2: network.device.preset: cannot read preset {locked}: " \
                      "Permission denied"


def test_the_catalog_lists_names_kinds_sources_and_shadowing(tmp_path, monkeypatch):
    beside, extra = tmp_path / "presets", tmp_path / "extra"
    beside.mkdir()
    extra.mkdir()
    (beside / "a.b.yaml").write_text("type: crossbar\n# first comment\n# Source: Doe 2024\n")
    (beside / "plain.yaml").write_text("type: mtj\n# only a comment\n")
    (beside / "bare.yaml").write_text("type: ideal\n")
    (beside / "broken.yaml").write_text("type: [\n")
    (extra / "plain.yaml").write_text("# Source: elsewhere\ntype: ideal\n")
    monkeypatch.setenv("DEVSIM_PRESETS", str(extra))
    found = {(p.name, p.origin): p for p in preset_catalog(tmp_path)}
    assert [(p.kind, p.source, p.shadowed) for p in (
        found["a.b", "beside the config"], found["plain", "beside the config"],
        found["bare", "beside the config"], found["plain", "DEVSIM_PRESETS"])] == [
        ("crossbar", "Doe 2024", False), ("mtj", "only a comment", False),
        ("ideal", "(no comment)", False), ("ideal", "elsewhere", True)]
    broken = found["broken", "beside the config"]
    with pytest.raises(yaml.YAMLError) as parse:
        yaml.safe_load("type: [\n")
    assert (broken.kind, broken.source) == (
        "?", f"cannot be read: {str(parse.value).splitlines()[0]}")  # its first line


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
    short = {"network": {"device": {"cell": "crossbar"}}}
    with pytest.raises(ConfigError, match=r"^--set network\.device\.cell\.g_max: "
                                          r"network\.device\.cell is the short form "
                                          r"'crossbar'; set it as a mapping$"):
        apply_overrides(short, parse_overrides(["network.device.cell.g_max=1"]))
    assert apply_overrides(data, parse_overrides(["network.layers[1].units=4"])) \
        ["network"]["layers"][1] == {"units": 4}


def test_the_resolved_dump_keeps_the_fields_order():
    text = dump(AdamParams(lr=0.01))
    keys = [line.split(":")[0] for line in text.splitlines()]
    assert keys == ["type"] + [f.name for f in dataclasses.fields(AdamParams)]
    assert loads(text, OptimizerParams) == AdamParams(lr=0.01)

"""The MCU memory accountant against sizes computed by hand for a 3 -> 4 -> 2 network."""
from __future__ import annotations

import pytest

from devices.mcu_memory import MemoryBudgetError, memory_report

SHAPES = [(4, 3), (2, 4)]   # (n_out, n_in): 3 inputs -> 4 hidden -> 2 outputs


def test_inference_per_channel():
    r = memory_report(SHAPES)
    # flash: weights 12 + 8; biases 4*(4 + 2); float32 scales 4*(4 + 2)
    assert r.flash == {"weights (int8)": 20, "biases (int32)": 24, "weight scales (float32)": 24}
    assert r.flash_bytes == 68
    # SRAM: arena max(3 + 4, 4 + 2) = 7; multiplier + shift, 8 B per channel: 8*(4 + 2)
    assert r.sram == {"activation arena": 7, "requantization params": 48}
    assert r.sram_bytes == 55


def test_inference_per_tensor():
    r = memory_report(SHAPES, per_channel=False)
    assert r.flash_bytes == 20 + 24 + 4 * 2
    assert r.sram_bytes == 7 + 8 * 2


@pytest.mark.parametrize("training, extra", [
    # last layer only, weight perturbation with replayed directions: params 8 + 8,
    # clean loss + 1 query loss, float32: 8
    ([None, "zo_weight"], 16 + 8),
    # first layer, node perturbation: params 12 + 16, cached input/output 3 + 4,
    # node gradient 4*4, weight gradient 4*(12 + 4)
    (["zo_node", None], 28 + 7 + 16 + 64),
    # last layer by BP: params 16, gradients 40, its stored input 4, two float32
    # activation-gradient buffers of width max(2, 4): 2*4*4
    ([None, "bp"], 16 + 40 + 4 + 32),
    # both by BP: params 28 + 16, gradients 64 + 40, stored inputs 3 + 4, buffers 2*4*4
    (["bp", "bp"], 44 + 104 + 7 + 32),
    # mixed by depth: node perturbation first, weight perturbation last
    (["zo_node", "zo_weight"], (28 + 7 + 16 + 64) + (16 + 8)),
])
def test_training_buffers(training, extra):
    r = memory_report(SHAPES, training)
    assert r.sram_bytes == 55 + extra
    assert r.flash_bytes == 68          # the model in flash does not change


def test_weight_perturbation_in_place_and_query_count():
    # in place: params 16, backup 16, int16 gradient accumulators 2*(8 + 2)
    r = memory_report(SHAPES, [None, "zo_weight"], grad_bytes=2, zo_replay=False)
    assert r.sram_bytes == 55 + 16 + 16 + 2 * 10
    # replayed, 50 queries on both layers: params 44, one loss buffer 4*(50 + 1)
    r = memory_report(SHAPES, ["zo_weight", "zo_weight"], n_queries=50)
    assert r.sram_bytes == 55 + 44 + 204


def test_budget_is_enforced_with_a_clear_error():
    r = memory_report(SHAPES, ["bp", "bp"])          # 55 + 187 = 242 B
    r.check(sram_kib=1, flash_kib=1)
    with pytest.raises(MemoryBudgetError) as err:
        r.check(sram_kib=0.2)                         # 204.8 B
    assert err.value.path == ("sram_kib",)
    message = str(err.value)   # names the need, the budget and the largest items
    assert message.startswith("sram_kib: needs 0.2 KiB, over the budget of 0.2 KiB")
    assert "largest: gradient accumulators 0.1 KiB" in message
    with pytest.raises(MemoryBudgetError, match="flash_kib"):
        r.check(flash_kib=0.05)


def test_report_serialises_and_tabulates():
    r = memory_report(SHAPES, [None, "zo_weight"])
    d = r.to_dict()
    assert d["sram_bytes"] == r.sram_bytes and d["flash"]["weights (int8)"] == 20
    assert "zo: query losses" in r.table()


def test_rejects_unknown_method_and_length_mismatch():
    with pytest.raises(ValueError, match="training method"):
        memory_report(SHAPES, ["sgd", None])
    with pytest.raises(ValueError, match="layers"):
        memory_report(SHAPES, ["bp"])
    with pytest.raises(ValueError, match="n_queries"):
        memory_report(SHAPES, n_queries=0)

"""The MCU memory accountant against sizes computed by hand for a 3 -> 4 -> 2 network
and a small CNN."""
from __future__ import annotations

import pytest

from devices.mcu_memory import (MemoryBudgetError, conv_footprint, depthwise_footprint,
                                memory_report, pool_footprint)
from devsim.conv_geometry import ConvGeometry

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


# a CNN for 8x8 digits: conv 3x3 'same' 1 -> 8, depthwise 3x3 stride 2 (8x8 -> 4x4),
# average pool 2x2 stride 2 (-> 2x2), dense 32 -> 10
CNN = [conv_footprint(ConvGeometry(8, 8, 1, 3, 3), 8),
       depthwise_footprint(ConvGeometry(8, 8, 8, 3, 3, 2, 2), 1),
       pool_footprint("avg_pool", ConvGeometry(4, 4, 8, 2, 2, 2, 2)),
       (10, 32)]


def test_cnn_inference_by_hand():
    # activations + scratch: conv 64 + 512 + 2*2*ceil4(9) = 624; depthwise 512 + 128
    # (3x3 with padding <= 1: CMSIS-NN's own kernel, no scratch) = 640; pool 128 + 32 +
    # 4*8 = 192; dense 32 + 10
    assert [f.scratch for f in CNN[:3]] == [48, 0, 32]
    r = memory_report(CNN)
    assert r.flash == {"weights (int8)": 72 + 72 + 320, "biases (int32)": 4 * 26,
                       "weight scales (float32)": 4 * 26}
    assert r.sram == {"activation arena": 640, "requantization params": 8 * 26}
    # per-tensor weights: one scale per layer; TFLM's conv kernels keep a pair per
    # channel regardless, the dense layer one pair
    r = memory_report(CNN, per_channel=False)
    assert r.flash["weight scales (float32)"] == 4 * 3
    assert r.sram["requantization params"] == 8 * (8 + 8 + 1)


@pytest.mark.parametrize("footprint, scratch", [
    (conv_footprint(ConvGeometry(6, 6, 4, 3, 3), 2), 2 * 2 * 36),
    (conv_footprint(ConvGeometry(6, 6, 3, 1, 2), 2), 2 * 2 * 8),       # 6 taps -> 8
    (conv_footprint(ConvGeometry(6, 6, 5, 1, 1, 2, 2), 2), 0),         # 1x1
    (depthwise_footprint(ConvGeometry(9, 9, 4, 5, 5), 1), 2 * 4 * 25),
    (depthwise_footprint(ConvGeometry(9, 9, 4, 5, 5), 2), 0),          # generic kernel
    (depthwise_footprint(ConvGeometry(9, 9, 4, 3, 3, 1, 1, "valid"), 1), 0),
    (pool_footprint("max_pool", ConvGeometry(4, 4, 8, 2, 2, 2, 2)), 0),
])
def test_cmsis_nn_scratch(footprint, scratch):
    assert footprint.scratch == scratch


def test_cnn_training_buffers():
    # node perturbation on the conv layer: parameters 72 + 4*8, cached input/output
    # 64 + 512, node gradient 4*512, weight gradient 4*(72 + 8)
    r = memory_report(CNN, ["zo_node", None, None, None])
    assert r.sram_bytes == 640 + 208 + 104 + 576 + 2048 + 320
    with pytest.raises(ValueError, match="layer 2: has no parameters"):
        memory_report(CNN, [None, None, "bp", None])
    with pytest.raises(ValueError, match="pool kind"):
        pool_footprint("sum", ConvGeometry(4, 4, 1, 2, 2))


def test_a_cnn_run_config_is_accounted_layer_by_layer():
    # The CNN above as a network of a run config (its flatten costs nothing: TFLite's
    # FULLY_CONNECTED reads the map), trained by QZO on every layer with parameters: the
    # pool is never trained, whatever the estimator asks for every layer.
    from devsim.config import ConfigError, loads
    from devsim.runner import RunConfig, build
    config = loads("""
        data: {type: digits}
        network:
          input_shape: [8, 8, 1]
          device: {type: mcu, sram_kib: 256}
          loss: cross_entropy
          layers:
            - {type: conv2d, channels: 8}
            - {type: depthwise_conv2d, stride: [2, 2]}
            - {type: avg_pool, pool: [2, 2]}
            - flatten
            - {units: 10, activation: identity}
        train: {estimator: {type: qzo, queries: 6, node_from: 1}}
        """, RunConfig)
    built = build(config)
    expected = memory_report(CNN, ["zo_weight", "zo_node", None, "zo_node"], n_queries=6)
    assert built.memory == expected and expected.sram_bytes == 4318
    with pytest.raises(ConfigError, match=r"network\.device\.sram_kib: needs 4\.2 KiB"):
        build(config.replace(network=config.network.replace(
            device=config.network.device.replace(sram_kib=4))))


@pytest.mark.parametrize("multiplier", [1, 2, 3])
def test_a_depthwise_layer_is_accounted_with_its_depth_multiplier(multiplier):
    from devices.mcu_memory import footprint
    from devsim.layers import DepthwiseConv2DParams
    shape = DepthwiseConv2DParams(depth_multiplier=multiplier).shape((6, 6, 2))
    assert footprint(shape) == depthwise_footprint(shape.geometry, multiplier)
    assert (footprint(shape).weights, footprint(shape).channels) == (2 * multiplier * 9,
                                                                     2 * multiplier)


def test_a_budget_met_exactly_fits_and_the_error_names_three_largest_items():
    r = memory_report(CNN, ["zo_node", None, None, None])
    r.check(sram_kib=r.sram_bytes / 1024, flash_kib=r.flash_bytes / 1024)   # exactly
    with pytest.raises(MemoryBudgetError) as err:
        r.check(sram_kib=(r.sram_bytes - 1) / 1024)
    largest = sorted(r.sram.items(), key=lambda kv: kv[1], reverse=True)
    assert len(largest) > 3
    detail = str(err.value).split("(largest: ")[1].rstrip(")")
    assert detail == ", ".join(f"{k} {n / 1024:.1f} KiB" for k, n in largest[:3])

"""Quantized zeroth-order training (trainer/qzo.py) on the int8 MCU, and its integration:
the integer ports and suffix execution of Hardware, post-training quantization of a
network (devsim/quantize.py), config validation, the memory budget and the trace."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import build_estimator, chip_of, estimate, lab
from devices.mcu import MCUParams
from devsim.activations import Identity, ReLU, Sigmoid
from devsim.cli import main
from devsim.config import ConfigError
from devsim.hardware import Request, Seeded
from devsim.network import LayerParams, Network, NetworkParams
from devsim.params import ParamError
from devsim.quantize import quantize_network
from devsim.runner import build, load_config, run
from trainer.base import Window
from trainer.loop import Timescales, TrainingLoop
from trainer.optim import SGDParams
from trainer.qzo import QZOParams, weight_directions

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mcu_qzo.yaml"
SPARSE = CONFIG.with_name("mcu_qzo_sparse.yaml")


def quantized_hardware(widths=(4, 3, 2), seed=0, loss="mse"):
    """A float network (ReLU hidden layers, identity output) quantized to int8 MCU layers."""
    rng = np.random.default_rng(seed)
    acts = [ReLU()] * (len(widths) - 2) + [Identity()]
    params = NetworkParams(layers=tuple(LayerParams(units=w, activation=a)
                                        for w, a in zip(widths[1:], acts)), loss=loss)
    net = Network(params, widths[0], rng, rng)
    net.write(rng.normal(0.0, 0.3, net.n_params))  # nonzero biases
    x = rng.uniform(0.0, 1.0, (64, widths[0]))
    return chip_of(quantize_network(net, x), loss), net, x


def suffix_costs(hw, layer, inputs, y, node_perturbation=None, weight_perturbation=None,
                 padded=False):
    """Costs of the network run from layer ``layer``'s recorded ``inputs``, perturbing
    that layer only: its nodes or parameters (``padded``: with zero columns for the
    later layers, the full width of the suffix)."""
    def pad(part, offsets):
        if part is None or not padded:
            return part
        out = np.zeros((len(part), offsets[-1] - offsets[layer]))
        out[:, :part.shape[1]] = part
        return out
    return hw.run(Request(inputs, y, pad(node_perturbation, hw.node_offsets),
                          pad(weight_perturbation, hw.param_offsets), start=layer)).costs


def seeded_costs(hw, layer, inputs, y, key, first, count, mu_weight, mu_bias):
    """Costs (T, count) of the suffix from ``layer`` with in-kernel seeded directions."""
    return hw.run(Request(inputs, y, start=layer,
                          seeded=Seeded(key, first, count, mu_weight, mu_bias))).costs


def batch(x, y):
    return Window(x, y, np.ones(len(x), dtype=bool))


def estimator(hw, seed=1, **kw):
    return build_estimator(QZOParams(**kw), hw, seed)


# ------------------------------------------------------------------ hardware ports
def test_quantize_network_is_close_to_the_float_network():
    hw, net, x = quantized_hardware((6, 8, 3))
    ours, ideal = lab(hw).outputs(x), net.run(x).outputs
    # int8 everywhere: outputs within a few output LSBs of the float network
    lsb_out = hw.capabilities.integer.node_lsb[-1]
    assert np.abs(ours - ideal).max() < 6 * lsb_out
    assert len(np.unique(ours)) > 20


def test_lsbs_are_the_devices_scales():
    hw, _, _ = quantized_hardware()
    ports = hw.capabilities.integer
    assert ports.param_lsb.shape == (hw.n_params,) and ports.node_lsb.shape == (hw.n_nodes,)
    params = lab(hw).read_params()
    ints = params / hw.capabilities.integer.param_lsb
    assert np.array_equal(ints, np.rint(ints))            # parameters are whole LSBs
    assert np.abs(ints[:12]).max() == 127                 # per-channel: each row's max is 127
    ideal = chip_of(Network(NetworkParams(layers=(LayerParams(units=2),)), 3,
                             np.random.default_rng(0), np.random.default_rng(0)), "mse")
    assert ideal.capabilities.integer is None


def test_suffix_probe_equals_full_probe_and_counts_steps():
    hw, _, x = quantized_hardware((5, 4, 3, 2))
    rng = np.random.default_rng(3)
    y = rng.uniform(-1, 1, (16, 2))
    x = x[:16, :5]
    clean = hw.probe(x, y)
    for layer in range(3):
        lo, hi = hw.node_offsets[layer], hw.node_offsets[layer + 1]
        node = np.zeros((16, hw.n_nodes))
        node[:, lo:hi] = rng.integers(-5, 6, (16, hi - lo)) * hw.capabilities.integer.node_lsb[lo:hi]
        full = hw.cost(x, y, node_perturbation=node)
        steps = hw.steps
        suffix = suffix_costs(hw, layer, clean.inputs[layer], y, node_perturbation=node[:, lo:hi])
        assert np.array_equal(suffix, full)
        assert hw.steps == steps + 16
        padded = suffix_costs(hw, layer, clean.inputs[layer], y, padded=True,
                              node_perturbation=node[:, lo:hi])
        assert np.array_equal(padded, full)  # the layer's own columns, or the suffix's
        lo, hi = hw.param_offsets[layer], hw.param_offsets[layer + 1]
        wgt = np.zeros((16, hw.n_params))
        wgt[:, lo:hi] = rng.integers(-3, 4, (16, hi - lo)) * hw.capabilities.integer.param_lsb[lo:hi]
        assert np.array_equal(suffix_costs(hw, layer, clean.inputs[layer], y,
                                              weight_perturbation=wgt[:, lo:hi]),
                              hw.cost(x, y, weight_perturbation=wgt))


def test_seeded_costs_are_the_regenerated_directions():
    # The chip draws directions in its kernel; the trainer's weight_directions
    # regenerates them from the key: passing them explicitly gives the same costs.
    hw, _, x = quantized_hardware((5, 4, 3))
    y = np.random.default_rng(4).uniform(-1, 1, (6, 3))
    x = x[:6, :5]
    inputs = hw.probe(x, y).inputs
    key, first, count, mu_w, mu_b = np.uint64(0x1234_5678_9ABC), 37, 5, 3, 40
    for layer, shape in enumerate(hw.layer_shapes):
        seeded = seeded_costs(hw, layer, inputs[layer], y, key, first, count, mu_w, mu_b)
        u = weight_directions(key, first, count, shape)
        n_w = shape[0] * shape[1]
        mu = np.where(np.arange(u.shape[1]) < n_w, mu_w, mu_b)
        span = slice(hw.param_offsets[layer], hw.param_offsets[layer + 1])
        step = np.tile(u * mu * hw.capabilities.integer.param_lsb[span], (6, 1))
        explicit = suffix_costs(hw, layer, np.repeat(inputs[layer], count, axis=0),
                                   np.repeat(y, count, axis=0), weight_perturbation=step)
        assert seeded.shape == (6, count)
        assert np.array_equal(seeded.ravel(), explicit)


def test_perturbed_models_stay_valid_int8():
    # mu = 200 LSBs pushes most weights past +-127: the probe must equal the int8 model
    # whose weights are clamped to [-127, 127] (written through the device's own write).
    hw, _, x = quantized_hardware((5, 4, 3))
    y = np.random.default_rng(5).uniform(-1, 1, (4, 3))
    x = x[:4, :5]
    inputs = hw.probe(x, y).inputs
    key, layer, mu_w, mu_b = np.uint64(99), 1, 200, 7
    seeded = seeded_costs(hw, layer, inputs[layer], y, key, 0, 3, mu_w, mu_b)
    shape = hw.layer_shapes[layer]
    span = slice(hw.param_offsets[layer], hw.param_offsets[layer + 1])
    clamped = 0
    for p, u in enumerate(weight_directions(key, 0, 3, shape)):
        mu = np.where(np.arange(u.size) < shape[0] * shape[1], mu_w, mu_b)
        copy_bench = copy.deepcopy(lab(hw))
        copy_hw = copy_bench.chip
        before = copy_bench.read_params()[span] / hw.capabilities.integer.param_lsb[span]
        delta = np.zeros(hw.n_params)
        delta[span] = u * mu * hw.capabilities.integer.param_lsb[span]
        copy_hw.write(delta)
        after = np.rint(copy_bench.read_params()[span] / hw.capabilities.integer.param_lsb[span])
        w_after = after[:shape[0] * shape[1]]
        assert np.abs(w_after).max() <= 127
        clamped += np.count_nonzero(np.abs(before[:w_after.size] + u[:w_after.size] * mu_w) > 127)
        assert np.array_equal(copy_hw.cost(x, y), seeded[:, p])
    assert clamped > 10


def test_layers_without_bias_get_no_bias_perturbation():
    params = NetworkParams(layers=(LayerParams(units=3, activation=ReLU(), bias=False),
                                   LayerParams(units=2, activation=Identity())),
                           device=MCUParams(activation_range=(-2.0, 2.0)))
    rng = np.random.default_rng(12)
    hw = chip_of(Network(params, 4, rng, rng), "mse")
    x, y = rng.uniform(0, 1, (8, 4)), rng.uniform(-1, 1, (8, 2))
    inputs = hw.probe(x, y).inputs
    key = np.uint64(5)
    assert np.array_equal(seeded_costs(hw, 0, inputs[0], y, key, 0, 4, 2, 500),
                          seeded_costs(hw, 0, inputs[0], y, key, 0, 4, 2, 0))
    wgt = np.zeros((8, hw.n_params))
    wgt[:, :15] = rng.integers(-3, 4, (8, 15)) * hw.capabilities.integer.param_lsb[:15]
    wgt[:, 12:15] *= 1000                                  # would move the absent biases
    assert np.array_equal(suffix_costs(hw, 0, inputs[0], y, weight_perturbation=wgt[:, :15]),
                          hw.cost(x, y, weight_perturbation=wgt))


# ------------------------------------------------------------------ the estimator
def exact_weight_expectation(hw, layer, x, y, mu_w, mu_b, difference="forward"):
    """E_u[(L(theta + mu u) - L(theta)) u / mu] (forward) or
    E_u[(L(theta + mu u) - L(theta - mu u)) / 2 u / mu] (central) over all 2^d sign
    vectors (d small)."""
    shape = hw.layer_shapes[layer]
    d = shape[0] * shape[1] + shape[0]
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=d)))
    mu = np.where(np.arange(d) < shape[0] * shape[1], mu_w, mu_b)
    span = slice(hw.param_offsets[layer], hw.param_offsets[layer + 1])
    clean = hw.probe(x, y)
    rows = np.repeat(clean.inputs[layer], len(signs), axis=0)
    targets = np.repeat(y, len(signs), axis=0)
    step = np.tile(signs * mu * hw.capabilities.integer.param_lsb[span], (len(x), 1))
    plus = suffix_costs(hw, layer, rows, targets, weight_perturbation=step)
    if difference == "forward":
        change = plus.reshape(len(x), len(signs)).mean(axis=0) - clean.costs.mean()
    else:
        minus = suffix_costs(hw, layer, rows, targets, weight_perturbation=-step)
        change = (plus - minus).reshape(len(x), len(signs)).mean(axis=0) / 2.0
    return change @ signs / len(signs) / mu


def test_weight_estimate_expectation_is_the_exact_smoothed_gradient():
    # Layer 1 is (2, 3): d = 8, so the expectation over all 256 directions is exact.
    # N estimates of n = 4 directions each: per component the mean lies within 4.5
    # standard errors (sample std / sqrt(N)) of it; over 8 components a false failure
    # has probability about 5e-5, and the seeds are fixed.
    hw, _, x = quantized_hardware((4, 3, 2), seed=2)
    x = x[:4]
    y = np.random.default_rng(6).uniform(-1, 1, (4, 2))
    mu_w, mu_b, n, runs = 2, 60, 4, 600
    exact = exact_weight_expectation(hw, 1, x, y, mu_w, mu_b)
    span = slice(hw.param_offsets[1], hw.param_offsets[2])
    est = estimator(hw, queries=n, mu_weight=mu_w, mu_bias=mu_b, train_layers=(1,),
                    scale_correction=False)
    grads = [estimate(est, hw, batch(x, y)).gradient for _ in range(runs)]
    assert not np.any(np.array(grads)[:, :span.start])     # layer 0 is not trained
    samples = np.array(grads)[:, span] * hw.capabilities.integer.param_lsb[span]
    mean, sem = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(mean - exact) <= 4.5 * sem), (mean, exact, sem)
    # resolved: a zero or sign-flipped estimate would miss by many standard errors
    assert np.linalg.norm(exact) > 10 * np.linalg.norm(sem)
    # The scale correction n / (n + d - 1) = 4/11 lowers the mean squared error
    # (E|g|^2 = |grad|^2 (n + d - 1) / n for Rademacher directions).
    c = n / (n + 8 - 1)
    mse_raw = np.mean(np.sum((samples - exact) ** 2, axis=1))
    mse_scaled = np.mean(np.sum((c * samples - exact) ** 2, axis=1))
    assert mse_scaled < 0.8 * mse_raw


def test_node_estimate_expectation_is_the_exact_smoothed_gradient():
    # Node perturbation of layer 0 (3 units): per sample all 2^3 sign patterns on the
    # active units give the exact expectation of the node estimate; the weight estimate
    # is its local outer product with the layer input. Same 4.5-standard-error bound.
    hw, _, x = quantized_hardware((4, 3, 2), seed=2)
    x = x[4:10]
    y = np.random.default_rng(7).uniform(-1, 1, (6, 2))
    mu, n, runs = 4, 3, 500
    clean = hw.probe(x, y)
    active = clean.inputs[1] != 0
    assert 0 < active.sum() < active.size               # some units off: the mask matters
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    lsb = hw.capabilities.integer.node_lsb[:3]
    g_nodes = np.empty((6, 3))
    for b in range(6):
        u = signs * active[b]
        costs = suffix_costs(hw, 0, np.repeat(clean.inputs[0][b:b + 1], 8, axis=0),
                                np.repeat(y[b:b + 1], 8, axis=0),
                                node_perturbation=mu * u * lsb)
        g_nodes[b] = (costs - clean.costs[b]) @ u / 8 / mu / lsb
    exact = np.concatenate([(g_nodes.T @ x).ravel(), g_nodes.sum(axis=0)]) / 6
    span = slice(0, hw.param_offsets[1])
    est = estimator(hw, queries=n, mu_node=mu, node_from=0, train_layers=(0,),
                    scale_correction=False)
    samples = np.array([estimate(est, hw, batch(x, y)).gradient[span] for _ in range(runs)])
    mean, sem = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(runs)
    moving = sem > 0     # weights of inputs that are 0 in every sample get exactly 0
    assert np.all(np.abs(mean - exact)[moving] <= 4.5 * sem[moving])
    assert np.array_equal(mean[~moving], exact[~moving])
    assert np.linalg.norm(exact) > 10 * np.linalg.norm(sem)


def test_node_estimate_agrees_with_the_float_gradient_on_digits_sized_layers():
    # A link to the reference model (OUTSIDE THE RULE): with every layer estimated by
    # node perturbation, the mean of N estimates lies within five standard errors of the
    # float gradient of the dequantized network, plus the bias int8 arithmetic allows:
    # one output LSB (5 LSB perturbations) out of the signal's 255 levels is a relative
    # error of order 1/50 per layer; 0.1 |g| covers two layers with a margin. The exact
    # expectation of the estimator itself is tested above.
    hw, _, x = quantized_hardware((16, 12, 5), seed=4, loss="cross_entropy")
    rng = np.random.default_rng(8)
    y = np.eye(5)[rng.integers(0, 5, 48)]
    x = rng.uniform(0, 1, (48, 16))
    est = estimator(hw, queries=20, node_from=0, scale_correction=False)
    runs = 30
    samples = np.array([estimate(est, hw, batch(x, y)).gradient for _ in range(runs)])
    mean, sem = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(runs)
    true = lab(hw).reference().gradient(lab(hw).read_params(), x, y)
    assert np.linalg.norm(mean - true) < 5 * np.linalg.norm(sem) + 0.1 * np.linalg.norm(true)
    assert np.linalg.norm(true) > 10 * np.linalg.norm(sem)  # resolved by the N estimates


def test_scale_correction_is_n_over_n_plus_d_minus_1():
    hw, _, x = quantized_hardware((4, 3, 2))
    y = np.zeros((5, 2))
    x = x[:5]
    for kw in ({"train_layers": (1,)}, {"train_layers": (0,)}):
        raw = estimate(estimator(hw, queries=6, scale_correction=False, **kw), hw, batch(x, y))
        fixed = estimate(estimator(hw, queries=6, **kw), hw, batch(x, y))
        d = 15 if kw["train_layers"] == (0,) else 8
        assert np.abs(raw.gradient).max() > 0
        assert np.allclose(fixed.gradient, raw.gradient * 6 / (6 + d - 1), rtol=1e-12, atol=0)


def test_estimates_are_deterministic_and_central_differences_cost_twice():
    hw, _, x = quantized_hardware((4, 3, 2))
    y = np.random.default_rng(9).uniform(-1, 1, (8, 2))
    x = x[:8]
    for kw in ({}, {"node_from": 1}, {"node_from": 0, "difference": "central"}):
        a = estimate(estimator(copy.deepcopy(hw), seed=3, **kw), hw, batch(x, y)).gradient
        b = estimate(estimator(copy.deepcopy(hw), seed=3, **kw), hw, batch(x, y)).gradient
        c = estimate(estimator(copy.deepcopy(hw), seed=4, **kw), hw, batch(x, y)).gradient
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    # steps: B clean probes, then B * n per layer (forward) or 2 B n (central)
    for difference, per_query in (("forward", 1), ("central", 2)):
        steps = hw.steps
        estimate(estimator(hw, queries=5, difference=difference, node_from=1), hw, batch(x, y))
        assert hw.steps - steps == 8 + 2 * 8 * 5 * per_query


def test_qas_update_lands_rounded_and_clamped():
    # SGD on the real-valued estimate writes -lr g_int / lsb^2 LSBs (QAS); the chip
    # rounds each to whole LSBs (half to even) and clamps weights to +-127.
    hw, _, x = quantized_hardware((4, 3, 2))
    y = np.random.default_rng(10).uniform(-1, 1, (8, 2))
    g = estimate(estimator(hw, queries=8, node_from=0), hw, batch(x[:8], y)).gradient
    before = np.rint(lab(hw).read_params() / hw.capabilities.integer.param_lsb)
    step = -50.0 * g
    hw.write(step)
    after = np.rint(lab(hw).read_params() / hw.capabilities.integer.param_lsb)
    want = before + np.rint(step / hw.capabilities.integer.param_lsb)
    for lo, hi in ((0, 12), (15, 21)):   # the weights of the (3, 4) and (2, 3) layers
        want[lo:hi] = np.clip(want[lo:hi], -127, 127)
    assert np.array_equal(after, want)
    assert np.count_nonzero(after != before) > 3


def test_sparse_training_leaves_frozen_layers_bit_identical():
    hw, _, _ = quantized_hardware((6, 5, 4, 3))
    rng = np.random.default_rng(11)
    x, y = rng.uniform(0, 1, (40, 6)), np.eye(3)[rng.integers(0, 3, 40)]
    loop = TrainingLoop(hw, x, y, estimator(hw, queries=4, node_from=2, train_layers=(0, 2)),
                        SGDParams(lr=0.05).build(), Timescales(tau_theta=8), rng)
    before = lab(hw).read_params()
    for _ in range(20):
        loop.update()
    after = lab(hw).read_params()
    off = hw.param_offsets
    assert np.array_equal(after[off[1]:off[2]], before[off[1]:off[2]])
    assert not np.array_equal(after[off[0]:off[1]], before[off[0]:off[1]])
    assert not np.array_equal(after[off[2]:off[3]], before[off[2]:off[3]])


def test_params_rules_and_build_errors():
    assert QZOParams(node_from=1, train_layers=(1, 2)).layer_modes(3) == [None, "nodes", "nodes"]
    assert QZOParams(node_from=2).footprint(3).methods == ("zo_weight", "zo_weight", "zo_node")
    for bad in ({"queries": 0}, {"mu_weight": 255}, {"mu_node": 0}, {"difference": "back"},
                {"train_layers": (-1,)}, {"node_from": -1}):
        with pytest.raises(ParamError):
            QZOParams(**bad)
    hw, _, _ = quantized_hardware()
    with pytest.raises(ParamError, match=r"train_layers\[1\]"):
        estimator(hw, train_layers=(0, 2))
    ideal = chip_of(Network(NetworkParams(layers=(LayerParams(units=2),)), 3,
                             np.random.default_rng(0), np.random.default_rng(0)), "mse")
    with pytest.raises(ParamError, match="integer"):
        estimator(ideal)


# ------------------------------------------------------------------ config, budget, trace
def test_mcu_layers_reject_other_activations_with_the_key_path():
    with pytest.raises(ParamError, match=r"layers\[1\]\.activation.*'sigmoid'"):
        NetworkParams(layers=(LayerParams(units=3, activation=ReLU()),
                              LayerParams(units=2, activation=Sigmoid())), device=MCUParams())
    with pytest.raises(ConfigError, match=r"mcu_qzo.yaml:\d+: network.layers\[0\].activation"):
        load_config(CONFIG, ["network.layers[0].activation=tanh"])
    NetworkParams(layers=(LayerParams(units=2, activation=Sigmoid()),))   # ideal: any


def test_run_records_memory_and_enforces_the_budget(tmp_path, capsys):
    config = load_config(CONFIG, ["train.steps=20000", "train.eval_every=20000"])
    summary = run(config, out=tmp_path / "t.h5")
    # 64-32-10 on int8, node perturbation on both layers, per-channel scales. Flash:
    # weights 64*32 + 32*10 = 2368, biases 4*42 = 168, scales 4*42 = 168 -> 2704.
    # SRAM: arena max(64+32, 32+10) = 96; multipliers and shifts 8*42 = 336; trained
    # weights and biases 2368 + 168 = 2536; cached layer input/output (64+32) + (32+10)
    # = 138; node gradients 4*42 = 168; gradient accumulators 4*(2368 + 42) = 9640
    # -> 12914 bytes.
    memory = summary["memory"]
    assert memory["flash_bytes"] == 2704 and memory["sram_bytes"] == 12914
    assert summary["final"]["test_accuracy"] > 0.3        # chance is 0.1
    assert main(["inspect", str(tmp_path / "t.h5")]) == 0
    out = capsys.readouterr().out
    assert "MCU memory" in out and "SRAM: 12914 B" in out
    small = load_config(CONFIG, ["network.device.sram_kib=12"])
    with pytest.raises(ConfigError, match=r"network\.device\.sram_kib: needs 12\.6 KiB"):
        build(small, "mcu_qzo.yaml")
    # int8-aware BP (the reference baseline) keeps every layer's input and gradients
    bp = build(load_config(CONFIG, ["train.estimator={type: backprop}"]))
    assert bp.memory.sram["bp: stored layer inputs"] == 64 + 32


def test_sparse_config_fits_256_kib_and_dense_does_not():
    sparse = build(load_config(SPARSE))
    assert sparse.memory.sram_bytes <= 256 * 1024
    with pytest.raises(ConfigError, match=r"sram_kib: needs 424\.3 KiB, over the budget of 256"):
        build(load_config(SPARSE, ["train.estimator.train_layers=[]"]))


def test_qzo_needs_an_integer_chip_config_error():
    with pytest.raises(ConfigError, match="train.estimator.type: qzo needs"):
        build(load_config(CONFIG, ["network.device={type: ideal}"]), "x.yaml")

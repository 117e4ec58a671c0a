"""The batched hardware interface against per-probe NumPy loops and closed forms."""
import numpy as np
import pytest

from conftest import make_bench, make_hardware
from devsim import crng
from devsim.dense import (add_code_perturbation, add_weight_perturbation,
                          add_weight_perturbation_np, add_zero_weight_perturbation)
from devices.noise import BernoulliNoiseParams, GaussianNoiseParams
from devsim.activations import LeakyReLU, Logistic, ReLU


def _per_probe_costs(bench, x, y, node=None, weight=None):
    """Reference: one probe at a time, plain NumPy, from the flat parameters."""
    hw, params = bench.chip, bench.read_params()
    costs = []
    for t in range(len(x)):
        p = params + (weight[t] if weight is not None else 0.0)
        h = x[t]
        for i, (n_out, n_in) in enumerate(hw.layer_shapes):
            flat = p[hw.param_offsets[i]:hw.param_offsets[i + 1]]
            a = flat[: n_out * n_in].reshape(n_out, n_in) @ h + flat[n_out * n_in:]
            if node is not None:
                a = a + node[t, hw.node_offsets[i]:hw.node_offsets[i + 1]]
            h = bench.network.activations[i](a[None])[0]
        costs.append(np.mean((h - y[t]) ** 2))
    return np.array(costs)


def test_batched_call_equals_per_probe_loop(rng):
    bench = make_bench((6, 5, 4, 3))
    hw = bench.chip
    T = 17
    x, y = rng.normal(size=(T, 6)), rng.random((T, 3))
    node = 0.1 * rng.normal(size=(T, hw.n_nodes))
    weight = 0.05 * rng.normal(size=(T, hw.n_params))
    for kw in ({}, {"node_perturbation": node}, {"weight_perturbation": weight},
               {"node_perturbation": node, "weight_perturbation": weight}):
        ref = _per_probe_costs(bench, x, y, kw.get("node_perturbation"), kw.get("weight_perturbation"))
        np.testing.assert_allclose(hw.cost(x, y, **kw), ref, rtol=1e-12, atol=1e-14)


def test_steps_are_counted_and_eval_kept_apart(rng):
    bench = make_bench()
    hw = bench.chip
    x, y = rng.normal(size=(9, 5)), rng.random((9, 3))
    hw.cost(x, y)
    hw.probe(x[:4], y[:4], node_perturbation=np.zeros((4, hw.n_nodes)))
    bench.outputs(x)
    assert hw.steps == 13 and bench.eval_reads == 9


def test_probe_returns_local_signals(rng):
    hw = make_hardware((5, 4, 3))
    x, y = rng.normal(size=(6, 5)), rng.random((6, 3))
    node = rng.normal(size=(6, hw.n_nodes))
    clean = hw.probe(x, y)
    noisy = hw.probe(x, y, node_perturbation=node)
    np.testing.assert_array_equal(noisy.inputs[0], x)
    # first layer's pre-activation moves by exactly the injected perturbation
    np.testing.assert_allclose(noisy.preactivations[0] - clean.preactivations[0], node[:, :4])
    assert noisy.inputs[1].shape == (6, 4) and noisy.preactivations[1].shape == (6, 3)


def test_weight_perturbation_kernel_equals_numpy_twin(rng):
    x = rng.normal(size=(11, 7))
    pert = rng.normal(size=(11, 5 * 7 + 5))
    a, b = np.zeros((11, 5)), np.zeros((11, 5))
    add_weight_perturbation(x, pert, 5, a)
    add_weight_perturbation_np(x, pert, 5, b)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n_in, n_out, offset", [(7, 5, 3), (64, 4, 0), (130, 9, 61),
                                                  (200, 3, 1000)])
def test_code_perturbation_is_the_materialised_codes_bit_for_bit(rng, n_in, n_out, offset):
    """Sign codes made inside the product give add_weight_perturbation's bits for the
    same codes written out (rows in fours and the rest, words across row ends, probes
    without a code)."""
    key, amplitude = crng.stream_key_np(11, 0), 0.0371
    x = rng.normal(size=(6, n_in))
    n_params = n_out * (n_in + 1)
    counters = np.array([0, -1, 5 * n_params, 7, 3 * n_params + 64, -1])
    codes = np.zeros((6, n_params))
    for t, first in enumerate(counters):
        if first >= 0:
            codes[t] = amplitude * crng.sign_np(key, first + offset + np.arange(n_params))
    start = rng.normal(size=(6, n_out))
    expected, out = start.copy(), start.copy()
    add_weight_perturbation(x, codes, n_out, expected)
    add_code_perturbation(x, key, counters, offset, amplitude, n_out, out)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[[1, 5]], start[[1, 5]])


def test_a_zero_perturbation_added_without_reading_it_has_the_same_bits(rng):
    """Adding all-zero rows leaves finite outputs as they are but turns -0.0 into +0.0,
    and makes a row NaN where its input is not finite: the same as adding the zeros."""
    n_out, n_in = 4, 7
    x = rng.normal(size=(5, n_in))
    x[2, 3], x[4, 0] = np.inf, np.nan
    start = rng.normal(size=(5, n_out))
    start[0, 1], start[3, 2] = -0.0, -0.0
    expected, out = start.copy(), start.copy()
    add_weight_perturbation(x, np.zeros((5, n_out * (n_in + 1))), n_out, expected)
    add_zero_weight_perturbation(x, out)
    assert out.tobytes() == expected.tobytes()
    assert np.signbit(start[0, 1]) and not np.signbit(out[0, 1])
    assert np.isnan(out[[2, 4]]).all() and (out[[0, 1, 3]] == start[[0, 1, 3]]).all()


def test_write_lands_exactly_on_ideal_device(rng):
    bench = make_bench()
    hw = bench.chip
    before = bench.read_params()
    delta = rng.normal(size=hw.n_params)
    hw.write(delta)
    np.testing.assert_allclose(bench.read_params(), before + delta)
    with pytest.raises(ValueError, match="update has shape"):
        hw.write(delta[:-1])


def test_bad_perturbation_shape_is_rejected(rng):
    hw = make_hardware()
    with pytest.raises(ValueError, match="node_perturbation has shape"):
        hw.cost(np.zeros((3, 5)), np.zeros((3, 3)), node_perturbation=np.zeros((3, 2)))


@pytest.mark.parametrize("y_shape", [(4, 3), (3, 6), (3,), (6, 3)])
def test_targets_need_a_row_per_probe_and_a_column_per_output(y_shape):
    hw = make_hardware()                          # 5 inputs, 3 outputs
    steps = hw.steps
    with pytest.raises(ValueError, match=r"^y has shape .*, expected \(3, 3\)"):
        hw.cost(np.zeros((3, 5)), np.zeros(y_shape))
    assert hw.steps == steps                      # nothing ran


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.1), Logistic(L=1.5, k=2.0, x0=0.1, y0=-0.2,
                                                                   k_spread=0.3, L_spread=0.2)])
def test_reference_gradient_matches_finite_differences(rng, loss, act):
    bench = make_bench((4, 6, 3), activations=[act, act], loss=loss)
    hw = bench.chip
    x, y = rng.normal(size=(8, 4)), np.eye(3)[rng.integers(0, 3, 8)]
    model, p = bench.reference(), bench.read_params()
    g = model.gradient(p, x, y)
    h = 1e-6
    fd = np.array([(model.costs(p + h * e, x, y).mean() - model.costs(p - h * e, x, y).mean()) / (2 * h)
                   for e in np.eye(len(p))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    # the reference forward equals the hardware's
    np.testing.assert_allclose(model.costs(p, x, y), hw.cost(x, y), rtol=1e-12)


def test_logistic_neuron_variation_is_per_neuron():
    act = Logistic(L=1.0, k=1.0, L_spread=0.1, k_spread=0.1, x0_spread=0.1, y0_spread=0.1)
    f = act.build(50, np.random.default_rng(0))
    out = f(np.zeros((1, 50)))[0]
    assert np.std(out) > 0.01  # neurons answer the same input differently
    f0 = Logistic(L=2.0, k=3.0, x0=0.5, y0=-1.0).build(3, np.random.default_rng(0))
    z = np.array([[0.5, 1.0, -1.0]])
    np.testing.assert_allclose(f0(z), 2.0 / (1 + np.exp(-3.0 * (z - 0.5))) - 1.0)


def test_noisy_pass_adds_intrinsic_noise_with_its_statistics():
    hw = make_hardware((3, 4), activations=[ReLU()], node_noise=GaussianNoiseParams(std=0.2, mean=1.0))
    x = np.zeros((20000, 3))
    clean = hw.probe(x, np.zeros((20000, 4)))
    noisy = hw.probe(x, np.zeros((20000, 4)), noisy=True)
    d = noisy.preactivations[0] - clean.preactivations[0]
    n = d.size  # tolerances: 5 standard errors of mean and variance
    assert abs(d.mean() - 1.0) < 5 * 0.2 / np.sqrt(n)
    assert abs(d.var() - 0.04) < 5 * 0.04 * np.sqrt(2 / n)
    with pytest.raises(ValueError, match="node_noise is not set"):
        make_hardware().cost(np.zeros((1, 5)), np.zeros((1, 3)), noisy=True)


def test_bernoulli_noise_levels():
    src = BernoulliNoiseParams(amplitude=0.5, p=0.25, offset=-1.0).build(3, np.random.default_rng(1))
    s = src.sample(40000)
    assert set(np.unique(s)) == {-1.0, -0.5}
    n = s.size
    assert abs((s == -0.5).mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)


def test_perturbations_cover_whole_layers_from_the_first_run(rng):
    hw = make_hardware((5, 4, 3, 2))
    x, y = rng.normal(size=(6, 5)), rng.random((6, 2))
    node = rng.normal(size=(6, hw.n_nodes))
    first_only = node.copy()
    first_only[:, 4:] = 0.0
    np.testing.assert_array_equal(hw.cost(x, y, node_perturbation=node[:, :4]),
                                  hw.cost(x, y, node_perturbation=first_only))
    with pytest.raises(ValueError, match=r"expected \(6, 9\) \(or the width of the first "
                                         r"layers run: 4, 7\)"):
        hw.cost(x, y, node_perturbation=node[:, :5])


# ------------------------------------------------------------------ convolutional networks
def _cnn_bench(pool: str, loss="cross_entropy", seed=0):
    """A 5x5x2 image through conv2d (3x3 'same', tanh), pooling ('same': partial windows
    at the border), a strided depthwise conv ('valid'), flatten and a dense output."""
    from conftest import chip_of, lab
    from devsim.config import from_data
    from devsim.network import Network, NetworkParams
    params = from_data(NetworkParams, {
        "input_shape": [5, 5, 2], "loss": loss, "layers": [
            {"type": "conv2d", "channels": 3, "activation": "tanh"},
            {"type": pool, "pool": [2, 2], "padding": "same"},
            {"type": "depthwise_conv2d", "depth_multiplier": 2, "padding": "valid",
             "activation": {"type": "leaky_relu", "slope": 0.1}},
            "flatten",
            {"units": 3, "activation": "sigmoid"}]})
    rng = np.random.default_rng(seed)
    net = Network(params, 50, rng, rng)
    net.write(rng.normal(0.0, 0.1, net.n_params))  # biases off zero too
    return lab(chip_of(net, loss))


@pytest.mark.parametrize("pool", ["avg_pool", "max_pool"])
def test_reference_gradient_of_a_cnn_matches_finite_differences(rng, pool):
    bench = _cnn_bench(pool)
    x, y = rng.normal(size=(6, 50)), np.eye(3)[rng.integers(0, 3, 6)]
    model, p = bench.reference(), bench.read_params()
    assert bench.chip.layer_shapes == ((3, 18), (0, 0), (6, 9), (0, 0), (3, 6))
    g = model.gradient(p, x, y)
    h = 1e-6
    fd = np.array([(model.costs(p + h * e, x, y).mean() - model.costs(p - h * e, x, y).mean())
                   / (2 * h) for e in np.eye(len(p))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(model.costs(p, x, y), bench.chip.cost(x, y), rtol=1e-12)


@pytest.mark.parametrize("pool", ["avg_pool", "max_pool"])
def test_local_products_of_the_node_gradient_are_the_parameter_gradient(rng, pool):
    """Each sample's cost gradient at every node, by central differences through the
    chip's node port, turned into parameter gradients by the chip's local products
    (shared kernel weights summed over the positions they serve), is the gradient of
    the reference model (an independent backward pass through the layers)."""
    bench = _cnn_bench(pool)
    hw = bench.chip
    x, y = rng.normal(size=(4, 50)), np.eye(3)[rng.integers(0, 3, 4)]
    n, h = hw.n_nodes, 1e-6
    assert list(np.diff(hw.node_offsets)) == [75, 0, 6, 0, 3]
    steps = np.concatenate([h * np.eye(n), -h * np.eye(n)])
    costs = hw.cost(np.repeat(x, 2 * n, axis=0), np.repeat(y, 2 * n, axis=0),
                    node_perturbation=np.tile(steps, (len(x), 1))).reshape(len(x), 2, n)
    node_gradient = (costs[:, 0] - costs[:, 1]) / (2 * h)
    inputs = hw.probe(x, y).inputs
    local = np.concatenate([
        hw.local_gradient(i, node_gradient[:, hw.node_offsets[i]:hw.node_offsets[i + 1]], xi)
        for i, xi in enumerate(inputs)])
    exact = bench.reference().gradient(bench.read_params(), x, y) * len(x)
    np.testing.assert_allclose(local, exact, rtol=1e-5, atol=1e-8)

"""Probe rows split across threads: the parts cover the call, errors surface, BLAS gets
its thread count back, and a split network pass equals the same pass done layer by layer."""
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from devices.crossbar import CrossbarParams
from devsim import parallel
from devsim.activations import Identity, Sigmoid
from devsim.network import LayerParams, Network, NetworkParams

TWO = min(2, numba.config.NUMBA_NUM_THREADS)


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("n_rows, threads", [(10, 1), (100, 3), (1000, 2), (7, 7)])
def test_parts_cover_the_rows_once_of_whole_blocks_and_run_at_the_same_time(n_rows, threads):
    seen = np.zeros(n_rows, dtype=int)
    starts = []
    all_started = threading.Barrier(threads, timeout=10)  # broken unless all run at once

    def part(t0, t1):
        seen[t0:t1] += 1
        starts.append(t0)
        all_started.wait()

    parallel.run_split(part, n_rows, threads)
    assert seen.tolist() == [1] * n_rows
    assert all(t0 % parallel.BLOCK_ROWS == 0 for t0 in starts)


def test_blocks_are_cut_at_multiples_of_the_block_size_from_the_call_start():
    B = parallel.BLOCK_ROWS
    assert list(parallel.blocks(0, 2 * B + 3)) == [(0, B), (B, 2 * B), (2 * B, 2 * B + 3)]
    assert list(parallel.blocks(B - 2, B + 1)) == [(B - 2, B), (B, B + 1)]
    assert list(parallel.blocks(5, 5)) == []


def test_an_error_in_any_part_is_raised_and_blas_threads_are_restored():
    before = blas_threads()

    def part(t0, t1):
        if t0 > 0:
            raise ValueError(f"part at {t0}")

    B = parallel.BLOCK_ROWS
    with pytest.raises(ValueError, match=f"part at {B}"):
        parallel.run_split(part, 2 * B, 2)
    assert blas_threads() == before


def test_blas_runs_on_one_thread_inside_the_parts_only():
    inside = []
    parallel.run_split(lambda t0, t1: inside.append(max(blas_threads())), 4, 2)
    assert inside == [1, 1]


def test_short_calls_stay_on_one_thread():
    assert parallel.row_threads(2 * parallel.MIN_ROWS_PER_THREAD - 1) == 1
    assert parallel.row_threads(10 ** 6) == numba.get_num_threads()


def noisy_network(activation, precision="float32", **device):
    layers = (LayerParams(units=40, activation=activation),
              LayerParams(units=30, activation=activation))
    params = NetworkParams(layers=layers, device=CrossbarParams(
        precision=precision, read_noise=0.02, out_noise=0.01, **device))
    return Network(params, 20, np.random.default_rng(0), np.random.default_rng(1))


@pytest.mark.skipif(TWO < 2, reason="needs two Numba threads")
@pytest.mark.parametrize("device", [
    dict(), dict(dac_bits=6, input_range=1.0, adc_bits=8, output_range=4.0,
                 adc_stochastic_rounding=True, tile_rows=8)])
def test_split_pass_equals_layer_by_layer_pass_and_keeps_the_draw_count(device):
    n = 4 * parallel.MIN_ROWS_PER_THREAD
    x = np.random.default_rng(2).uniform(-1, 1, (n, 20))
    node = np.random.default_rng(3).normal(0, 0.1, (n, 70))
    split, chained = noisy_network(Sigmoid(), **device), noisy_network(Sigmoid(), **device)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(TWO)
        for _ in range(2):  # the second call checks that both advanced their draws alike
            got = split.run(x, node_perturbation=node).outputs
            h = x
            offsets = chained.node_offsets
            for i, (dev, act) in enumerate(zip(chained.devices, chained.activations)):
                # each layer split the same way: the same BLAS calls, the same bits
                h = act(dev.forward(h, node[:, offsets[i]:offsets[i + 1]]))
            np.testing.assert_array_equal(got, h)
    finally:
        numba.set_num_threads(before)
    assert [d.meter.reads for d in split.devices] == [2 * n, 2 * n]


@pytest.mark.skipif(TWO < 2, reason="needs two Numba threads")
def test_split_pass_draws_the_noise_of_an_unsplit_pass():
    # products in canonical blocks: the same bits for any split
    n = 4 * parallel.MIN_ROWS_PER_THREAD
    x = np.random.default_rng(2).uniform(-1, 1, (n, 20))
    outputs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, TWO):
            numba.set_num_threads(threads)
            outputs.append(noisy_network(Identity(), "float64").run(x).outputs)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0] - noisy_network(Identity(), "float64").run(x[::-1]).outputs[::-1]
                  ).max() > 1e-3  # the probe index, not the input, picks the draws

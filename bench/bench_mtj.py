"""Telegraph sMTJ samples per second: devices/mtj.py kernels against NumPy, in one run.

Cases (each times the same two-state process, per-sample exact flip probabilities):

* per-node, biased: n devices at a current that makes the rates asymmetric; the NumPy
  baseline steps in time, vectorised over devices, with a block of Generator uniforms.
* per-node, symmetric (the Koenders et al. preset): NumPy can then vectorise over time
  too (a flip is state-independent, so m is the start state times (-1)^(cumulative flips),
  as in their code).
* shared: one device read n*T times in a row (the single-device mode).
* driven: p-bit neurons whose current changes every step, 4 samples per step; the NumPy
  baseline recomputes the flip probabilities every step as the kernel does.

The baseline of each case is its fastest NumPy implementation in the same run. The
NumPy twin used by the tests (same counter-based draws, bit-exact) is timed too, and so
are bare NumPy Bernoulli draws, as a measure of the machine. Timings are the best of
``--repeat`` runs after one warm-up.

    python -m bench.bench_mtj [--repeat 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from devices import mtj
from bench.timing import best_time


def numpy_steps(state, p_plus, p_minus, rng, n_steps):
    """The process in plain NumPy: loop over time, vectorised over devices."""
    m = state.astype(np.float64)
    u = rng.random((n_steps, m.size))
    out = np.empty((n_steps, m.size))
    for t in range(n_steps):
        flip = u[t] < np.where(m > 0, p_plus, p_minus)
        m = np.where(flip, -m, m)
        out[t] = m
    return out


def numpy_parity(state, p, rng, n_steps):
    """Symmetric rates only: m_t = m_0 (-1)^(flips up to t), vectorised over time."""
    flips = rng.random((n_steps, state.size)) < p
    return state * (1.0 - 2.0 * (np.cumsum(flips, axis=0) & 1))


def numpy_driven(state, current, offset, ic0, delta, log_rate0, n_sub, rng):
    """Driven neurons in plain NumPy: flip probabilities recomputed every step."""
    m = state.astype(np.float64)
    n_steps, n = current.shape
    u = rng.random((n_steps, n_sub, n))
    out = np.empty((n_steps, n))
    for t in range(n_steps):
        p_plus, p_minus = mtj.leave_probabilities_np((current[t] - offset) / ic0, delta,
                                                     log_rate0)
        acc = np.zeros(n)
        for k in range(n_sub):
            flip = u[t, k] < np.where(m > 0, p_plus, p_minus)
            m = np.where(flip, -m, m)
            acc += m
        out[t] = acc / n_sub
    return out


def numpy_single(state, p_plus, p_minus, rng, n_samples):
    """One device, general rates: NumPy cannot vectorise the chain, so it loops."""
    m = float(state[0])
    u = rng.random(n_samples)
    out = np.empty(n_samples)
    for t in range(n_samples):
        if u[t] < (p_plus[0] if m > 0 else p_minus[0]):
            m = -m
        out[t] = m
    return out


def cases(threads_list, repeat):
    """Rows (case, implementation, samples/s, is a NumPy implementation of the process)."""
    rows = []
    rng = np.random.default_rng(0)
    koenders = mtj.MTJTelegraphNoiseParams(delta=9.335345, dt=1e-6)
    biased = mtj.MTJParams(delta=2.0, dt=1e-9, ic0=50e-6)

    def add(label, impl, samples, fn, numpy=False):
        rows.append((label, impl, samples / best_time(fn, repeat), numpy))

    def add_numba(label, samples, fn):
        for threads in threads_list:
            numba.set_num_threads(threads)
            add(label, f"devsim Numba kernel, {threads} thread(s)", samples, fn)

    # per-node, biased
    n, steps = 1024, 20000
    array = biased.build_array(n, rng, 10e-6)
    p_plus, p_minus = array.leave_probabilities(10e-6)
    label = f"per-node biased ({n} devices x {steps} samples)"
    add(label, "NumPy step loop", n * steps,
        lambda: numpy_steps(array.state, p_plus, p_minus, rng, steps), numpy=True)
    add_numba(label, n * steps, lambda: array.hold(10e-6, steps))
    add(label, "(NumPy Bernoulli draws alone, no process)", n * steps,
        lambda: rng.random((steps, n)) < p_plus)
    out = np.empty((500, n))
    add(label, "(NumPy twin: counter-based draws, test reference)", out.size,
        lambda: mtj.telegraph_hold_np(array.state.copy(), p_plus, p_minus, array.key, 0, out))

    # per-node, symmetric (Koenders preset)
    array = koenders.build_array(n, rng)
    p, _ = array.leave_probabilities(0.0)
    label = f"per-node symmetric, Koenders preset ({n} x {steps})"
    add(label, "NumPy step loop", n * steps,
        lambda: numpy_steps(array.state, p, p, rng, steps), numpy=True)
    add(label, "NumPy cumulative parity", n * steps,
        lambda: numpy_parity(array.state, p, rng, steps), numpy=True)
    add_numba(label, n * steps, lambda: array.hold(0.0, steps))

    # one shared device
    samples = 4_000_000
    array = koenders.build_array(1, rng)
    p, _ = array.leave_probabilities(0.0)
    label = f"shared: one device x {samples} samples"
    add(label, "NumPy cumulative parity (symmetric rates only)", samples,
        lambda: numpy_parity(array.state, p, rng, samples), numpy=True)
    add(label, "NumPy per-sample loop (any rates; timed on 1/20)", samples // 20,
        lambda: numpy_single(array.state, p, p, rng, samples // 20), numpy=True)
    add_numba(label, samples, lambda: array.hold(0.0, samples))

    # driven p-bit neurons
    n, steps, n_sub = 256, 4000, 4
    array = biased.build_array(n, rng)
    current = rng.normal(0.0, 20e-6, (steps, n))
    label = f"driven ({n} neurons x {steps} steps x {n_sub} samples)"
    add(label, "NumPy step loop", n * steps * n_sub,
        lambda: numpy_driven(array.state, current, array.offset, array.ic0, array.delta,
                             array.log_rate0, n_sub, rng), numpy=True)
    add_numba(label, n * steps * n_sub, lambda: array.drive(current, n_sub))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+",
                        default=sorted({1, numba.config.NUMBA_NUM_THREADS}))
    args = parser.parse_args()
    rows = cases(args.threads, args.repeat)
    print(f"numba {numba.__version__}, numpy {np.__version__}, "
          f"{numba.config.NUMBA_NUM_THREADS} Numba threads available\n")
    print("| case | implementation | M samples/s | vs baseline |")
    print("|---|---|---:|---:|")
    baseline = {}
    for case, _, rate, numpy in rows:  # the fastest NumPy implementation of each case
        if numpy:
            baseline[case] = max(rate, baseline.get(case, 0.0))
    for case, impl, rate, _ in rows:
        mark = " **(baseline)**" if rate == baseline[case] else ""
        print(f"| {case} | {impl}{mark} | {rate / 1e6:.0f} | {rate / baseline[case]:.2f}x |")


if __name__ == "__main__":
    main()

"""Telegraph sMTJ samples per second: devices/mtj.py kernels against NumPy, in one run.

Cases (each times the same two-state process, per-sample exact flip probabilities):

* per-node, biased: n devices at a current that makes the rates asymmetric; the NumPy
  baseline steps in time, vectorised over devices, with a block of Generator uniforms.
* per-node, symmetric (the Koenders et al. preset): NumPy can then vectorise over time
  too (a flip is state-independent, so m is the start state times (-1)^(cumulative flips),
  as in their code); that is the stronger baseline.
* shared: one device read n*T times in a row (the single-device mode).
* driven: p-bit neurons whose current changes every step, 4 samples per step; the NumPy
  baseline recomputes the flip probabilities every step as the kernel does.

The NumPy twin used by the tests (same counter-based draws, bit-exact) is timed too, and
so are bare NumPy Bernoulli draws, as a measure of the machine in the same run.
Timings are the best of ``--repeat`` runs after one warm-up; ratios are to the NumPy
baseline of the same case in the same run.

    python -m bench.bench_mtj [--repeat 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from devices import mtj


def best_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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


def cases(threads_list, repeat):
    rows = []
    rng = np.random.default_rng(0)
    koenders = mtj.MTJTelegraphNoiseParams(delta=9.335345, dt=1e-6)
    biased = mtj.MTJParams(delta=2.0, dt=1e-9, ic0=50e-6)

    def numba_rows(label, fn, samples):
        for threads in threads_list:
            numba.set_num_threads(threads)
            rows.append((label, f"devsim Numba kernel, {threads} thread(s)",
                         samples / best_time(fn, repeat)))

    # per-node, biased
    n, steps = 1024, 20000
    array = biased.build_array(n, rng, 10e-6)
    p_plus, p_minus = array.leave_probabilities(10e-6)
    label = f"per-node biased ({n} devices x {steps} samples)"
    rows.append((label, "NumPy step loop (baseline)",
                 n * steps / best_time(lambda: numpy_steps(array.state, p_plus, p_minus, rng,
                                                           steps), repeat)))
    numba_rows(label, lambda: array.hold(10e-6, steps), n * steps)
    rows.append((label, "(NumPy Bernoulli draws alone, no process)",
                 n * steps / best_time(lambda: rng.random((steps, n)) < p_plus, repeat)))
    short = 500
    out = np.empty((short, n))
    rows.append((label, "NumPy twin (counter-based draws)",
                 n * short / best_time(lambda: mtj.telegraph_hold_np(
                     array.state.copy(), p_plus, p_minus, array.key, 0, out), repeat)))

    # per-node, symmetric (Koenders preset)
    array = koenders.build_array(n, rng)
    p, _ = array.leave_probabilities(0.0)
    label = f"per-node symmetric, Koenders preset ({n} x {steps})"
    rows.append((label, "NumPy step loop",
                 n * steps / best_time(lambda: numpy_steps(array.state, p, p, rng, steps),
                                       repeat)))
    rows.append((label, "NumPy cumulative parity (baseline)",
                 n * steps / best_time(lambda: numpy_parity(array.state, p, rng, steps),
                                       repeat)))
    numba_rows(label, lambda: array.hold(0.0, steps), n * steps)

    # one shared device
    samples = 4_000_000
    array = koenders.build_array(1, rng)
    p, _ = array.leave_probabilities(0.0)
    label = f"shared: one device x {samples} samples"
    rows.append((label, "NumPy cumulative parity (baseline)",
                 samples / best_time(lambda: numpy_parity(array.state, p, rng, samples),
                                     repeat)))
    numba_rows(label, lambda: array.hold(0.0, samples), samples)

    # driven p-bit neurons
    n, steps, n_sub = 256, 4000, 4
    array = biased.build_array(n, rng)
    current = rng.normal(0.0, 20e-6, (steps, n))
    label = f"driven ({n} neurons x {steps} steps x {n_sub} samples)"
    rows.append((label, "NumPy step loop (baseline)",
                 n * steps * n_sub / best_time(lambda: numpy_driven(
                     array.state, current, array.offset, array.ic0, array.delta,
                     array.log_rate0, n_sub, rng), repeat)))
    numba_rows(label, lambda: array.drive(current, n_sub), n * steps * n_sub)
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
    for case, impl, rate in rows:
        if "baseline" in impl:
            baseline[case] = rate
    for case, impl, rate in rows:
        print(f"| {case} | {impl} | {rate / 1e6:.0f} | {rate / baseline[case]:.2f}x |")


if __name__ == "__main__":
    main()

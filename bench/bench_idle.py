"""Threads that rest: CPU seconds per wall second while network passes alternate with idle
time, against the same passes back to back.

A training loop does other work between passes (the estimator, the optimizer, the
trace); helper threads that spin while they wait take a core from it. The case of issue
16: a 64-256-10 noisy crossbar network (float32, the compiled pass of
:mod:`devices.crossbar_chain`), passes each followed by 1 ms of sleep (1,000 by default), against
the same passes run back to back, at batch 64 (one thread: short calls are not split)
and batch 1024 (rows split over :mod:`devsim.parallel`'s sleeping threads), in the same
run. The waiting's extra CPU is the CPU the process spends while its main thread sleeps
(every thread counted), less what the same sleeps cost alone, over the passes' own CPU
back to back (goal: at most 5 %). Passes right after a sleep take somewhat more CPU
themselves (cold caches, a slower clock): that is shown, not counted as waiting. CPU time is the process's
(``time.process_time``: every thread, the kernel's precise clock).

Usage (from the project root, threads from ``NUMBA_NUM_THREADS``)::

    PYTHONPATH=. python bench/bench_idle.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.bench_crossbar import devsim_network


def measure(run, passes: int, sleep: float) -> tuple[float, float]:
    """(CPU seconds inside the ``passes`` calls, CPU seconds between them) when each call
    is followed by ``sleep`` seconds of sleep; CPU of every thread of the process, so a
    helper that spins while the caller sleeps shows in the second."""
    inside = between = 0.0
    for _ in range(passes):
        t0 = time.process_time()
        run()
        t1 = time.process_time()
        if sleep:
            time.sleep(sleep)
        inside += t1 - t0
        between += time.process_time() - t1
    return inside, between


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--passes", type=int, default=1000)
    args = parser.parse_args()
    widths = (64, 256, 10)
    print(f"threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}, load "
          f"{os.getloadavg()[0]:.2f}; best of {args.repeat} rounds, interleaved")
    print("| batch | passes back to back: CPU s | passes between sleeps: CPU s | CPU while "
          "sleeping | a sleeping loop alone | waiting's extra CPU over the passes' |")
    print("|---|---|---|---|---|---|")
    idle = min(measure(lambda: None, args.passes, 1e-3)[1] for _ in range(args.repeat))
    for batch in (64, 1024):
        net = devsim_network(widths, "float32")
        x = np.random.default_rng(0).random((batch, widths[0]))

        def run():
            net.run(x)

        run()
        back_to_back, alternating = (np.inf, np.inf), (np.inf, np.inf)
        for _ in range(args.repeat):  # rounds interleaved: a slow phase hits both
            back_to_back = min(back_to_back, measure(run, args.passes, 0.0))
            alternating = min(alternating, measure(run, args.passes, 1e-3),
                              key=lambda m: m[1])
        extra = (alternating[1] - idle) / back_to_back[0]
        print(f"| {batch} | {back_to_back[0]:.3f} | {alternating[0]:.3f} | "
              f"{alternating[1]:.3f} | {idle:.3f} | {100 * extra:+.1f} % |")


if __name__ == "__main__":
    main()

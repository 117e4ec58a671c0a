"""Shared timing helpers for the benchmark scripts."""
import contextlib
import time


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` after one warm-up call (compiles, caches)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def race(candidates: dict, repeat: int, min_time: float = 0.05) -> dict:
    """Best per-call seconds of each candidate, timed in interleaved rounds.

    ``candidates`` maps a name to ``fn`` or to ``(fn, context)``, ``context()`` a context
    manager entered around each of that candidate's rounds (say, a thread limit). Each
    round calls ``fn`` often enough to last about ``min_time``; round r of every
    candidate runs before round r + 1 of any, so that a slow phase of a shared machine
    (another tenant, frequency changes) falls on all candidates alike and the ratios
    between them stay meaningful. Returns the best round of each, per call.
    """
    entries = {name: c if isinstance(c, tuple) else (c, contextlib.nullcontext)
               for name, c in candidates.items()}
    calls = {}
    for name, (fn, context) in entries.items():
        with context():
            fn()  # warm-up: compiles, fills caches
            n = 2
            while _seconds(fn, n) < min_time:
                n *= 2
        calls[name] = n
    best = dict.fromkeys(entries, float("inf"))
    for _ in range(repeat):
        for name, (fn, context) in entries.items():
            with context():
                best[name] = min(best[name], _seconds(fn, calls[name]) / calls[name])
    return best


def _seconds(fn, calls: int) -> float:
    """Wall time of ``calls`` back-to-back calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start

"""Named random streams spawned from one run seed.

Every random draw in a run comes from one of these streams, so a config and a
seed fix the whole trace, and changing how one component draws (say, the device
noise) leaves the others' sequences untouched.
"""
from __future__ import annotations

import zlib

import numpy as np

STREAMS = ("init", "data", "device", "estimator", "sampler")


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator of stream ``name`` under run seed ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),)))


def streams(seed: int) -> dict[str, np.random.Generator]:
    """All of a run's named generators."""
    return {name: stream(seed, name) for name in STREAMS}

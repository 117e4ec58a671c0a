"""Simple intrinsic node-noise sources: Gaussian and (offset) Bernoulli.

Used where a method perturbs nodes with the chip's own noise rather than with
perturbations the controller injects and knows (noise-based learning, ANP).
"""
from __future__ import annotations

from dataclasses import dataclass


from devsim.device import NoiseSource, NoiseSourceParams
from devsim.params import param


@dataclass(frozen=True)
class GaussianNoiseParams(NoiseSourceParams, kind="gaussian"):
    """Independent Gaussian noise at every node and probe."""

    std: float = param(0.01, ge=0.0, unit="pre-activation")
    """Standard deviation (pre-activation units)."""
    mean: float = param(0.0, unit="pre-activation")
    """Mean (pre-activation units); only differences between passes matter to ANP."""

    def build(self, n_nodes, rng):
        return _Drawn(lambda t: self.mean + self.std * rng.standard_normal((t, n_nodes)))


@dataclass(frozen=True)
class BernoulliNoiseParams(NoiseSourceParams, kind="bernoulli"):
    """offset + amplitude * B with B ~ Bernoulli(p), independent per node and probe."""

    amplitude: float = param(0.0125, ge=0.0, unit="pre-activation")
    """Height of a '1' (pre-activation units)."""
    p: float = param(0.5, ge=0.0, le=1.0, unit="1")
    """Probability of a '1'."""
    offset: float = param(0.0, unit="pre-activation")
    """Constant added to every sample."""

    def build(self, n_nodes, rng):
        return _Drawn(lambda t: self.offset + self.amplitude * (rng.random((t, n_nodes)) < self.p))


class _Drawn(NoiseSource):
    """A stateless source: each call draws fresh samples."""

    def __init__(self, draw):
        self._draw = draw

    def sample(self, n_probes):
        return self._draw(n_probes)

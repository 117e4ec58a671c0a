"""Data sets and the seeded sample stream a hardware run consumes.

Every data set becomes a :class:`Dataset`: float inputs, float target rows (one-hot
for classification) and integer labels where the task has classes. The
:class:`SampleStream` hands out one sample index per hardware step, holding each
sample for ``tau_x`` steps (the MGD input period) and reshuffling every epoch.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devsim.datafile import check_arrays, read_arrays
from devsim.params import ParamError, Params, param


class DataWarning(UserWarning):
    """Data that loads but will probably train badly as configured."""


@dataclass(frozen=True)
class FeatureScaling:
    """A per-feature affine map fitted on the training split: ``(x - offset) / scale``."""

    method: str
    """``unit`` (min-max to [0, 1]) or ``standard`` (zero mean, unit variance)."""
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, method: str, x: np.ndarray) -> "FeatureScaling":
        """The map ``method`` makes of the training inputs ``x``; a constant feature
        gets scale 1 (it maps to 0)."""
        if method == "unit":
            offset, spread = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        else:
            offset, spread = x.mean(axis=0), x.std(axis=0)
        return cls(method, offset, np.where(spread > 0, spread, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.offset) / self.scale


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; ``labels`` are None for regression tasks."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray | None
    labels_test: np.ndarray | None
    scaling: FeatureScaling | None = None
    """The map already applied to both inputs, where the data set records one (the
    trace keeps it, so the trained network can be fed raw features later)."""

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.y_train.shape[1]

    @property
    def is_classification(self) -> bool:
        return self.labels_train is not None


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((labels.size, n))
    out[np.arange(labels.size), labels] = 1.0
    return out


def _split(x, labels_or_y, test_fraction, rng, classes: int | None) -> Dataset:
    order = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    if n_test == 0 or n_test == len(x):
        side = "test" if n_test == 0 else "training"
        raise ParamError(("test_fraction",), f"{test_fraction} of {len(x)} samples leaves no "
                                             f"{side} sample; each split needs at least one")
    test, train = order[:n_test], order[n_test:]
    if classes:
        y = _one_hot(labels_or_y, classes)
        return Dataset(x[train], y[train], x[test], y[test], labels_or_y[train], labels_or_y[test])
    return Dataset(x[train], labels_or_y[train], x[test], labels_or_y[test], None, None)


@dataclass(frozen=True)
class DataParams(Params, family="data"):
    """Base of the data sets; select one with ``type:``."""

    test_fraction: float = param(0.25, ge=0.0, lt=1.0)
    """Fraction of the samples held out for testing."""

    def load(self, rng: np.random.Generator) -> Dataset:
        raise NotImplementedError


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (pixels 0..16, labels), read from the CSV file it ships
    without importing scikit-learn (which takes about a second); through
    ``sklearn.datasets.load_digits`` if the file is not where it has always been."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return bunch.data, bunch.target.astype(np.int64)


@dataclass(frozen=True)
class Digits(DataParams, kind="digits"):
    """scikit-learn's bundled 8x8 handwritten digits (1797 samples, 10 classes)."""

    scale: str = param("unit", choices=("unit", "standard"))
    """``unit``: pixels / 16 in [0, 1]; ``standard``: zero mean, unit variance per pixel
    (statistics from the training split)."""

    def load(self, rng):
        pixels, labels = digits_arrays()
        data = _split(pixels / 16.0, labels, self.test_fraction, rng, classes=10)
        if self.scale == "standard":
            mean, std = data.x_train.mean(0), data.x_train.std(0) + 1e-8
            data = Dataset((data.x_train - mean) / std, data.y_train, (data.x_test - mean) / std,
                           data.y_test, data.labels_train, data.labels_test)
        return data


@dataclass(frozen=True)
class Parity(DataParams, kind="parity"):
    """All 2^bits binary words; the target is their parity (one output, 0 or 1).

    Parity is a memorisation benchmark (as in the MGD papers): train and test hold
    the same complete set of patterns, so ``test_fraction`` is ignored.
    """

    bits: int = param(4, ge=1, le=20)
    """Word length N."""
    signed: bool = False
    """Inputs as -1/+1 instead of 0/1."""

    def load(self, rng):
        words = (np.arange(2 ** self.bits)[:, None] >> np.arange(self.bits)) & 1
        x = words.astype(np.float64) * (2.0 if self.signed else 1.0) - (1.0 if self.signed else 0.0)
        labels = words.sum(axis=1) % 2
        y = labels[:, None].astype(np.float64)
        return Dataset(x, y, x.copy(), y.copy(), labels, labels.copy())


@dataclass(frozen=True)
class Teacher(DataParams, kind="teacher"):
    """A random teacher network labels Gaussian inputs x ~ N(0, I).

    ``linear``: y = W* x (+ noise), the Werfel et al. setting. ``mlp``: one tanh
    hidden layer; with ``classes`` > 0 the label is the argmax of the teacher output,
    which makes a harder generated classification task.
    """

    model: str = param("linear", choices=("linear", "mlp"))
    """Teacher architecture."""
    inputs: int = param(10, ge=1)
    """Input dimension N."""
    outputs: int = param(4, ge=1)
    """Teacher output dimension M (regression) or number of classes."""
    hidden: int = param(32, ge=1)
    """Teacher hidden width (``mlp`` only)."""
    classes: bool = False
    """Classification by argmax of the teacher outputs instead of regression."""
    samples: int = param(2000, ge=2)
    """Number of samples drawn (train plus test)."""
    noise: float = param(0.0, ge=0.0)
    """Standard deviation of Gaussian label noise (regression only)."""
    weight_scale: float = param(1.0, gt=0.0)
    """Teacher weights ~ N(0, weight_scale^2 / fan_in)."""

    def load(self, rng):
        x = rng.standard_normal((self.samples, self.inputs))
        w1 = rng.standard_normal((self.hidden if self.model == "mlp" else self.outputs,
                                  self.inputs)) * self.weight_scale / np.sqrt(self.inputs)
        y = x @ w1.T
        if self.model == "mlp":
            w2 = rng.standard_normal((self.outputs, self.hidden)) * self.weight_scale / np.sqrt(self.hidden)
            y = np.tanh(y) @ w2.T
        if self.classes:
            return _split(x, np.argmax(y, axis=1), self.test_fraction, rng, classes=self.outputs)
        y = y + self.noise * rng.standard_normal(y.shape)
        return _split(x, y, self.test_fraction, rng, classes=None)


_LARGE_FEATURES = 100.0
"""Unscaled inputs beyond this magnitude get a hint: sigmoid and tanh units, with
weights initialised at about 1/sqrt(fan_in), saturate on them from the first step."""


@dataclass(frozen=True)
class ArrayFile(DataParams, kind="file"):
    """User arrays from ``.npz`` or ``.h5``: ``X`` (samples x features) and ``y``.

    Integer ``y`` of one dimension is taken as class labels (one-hot targets);
    float ``y`` as regression targets. Optional ``X_test``/``y_test`` in the file
    replace the random split. Loading checks the arrays: numbers only, all finite,
    ``X`` two-dimensional, one label or target row per sample, labels in [0, classes).
    """

    path: str = ""
    """Path of the file (relative paths are taken from the working directory)."""
    classes: int = param(0, ge=0)
    """Number of classes for integer labels (0: max label + 1)."""
    scale: str = param("none", choices=("none", "unit", "standard"))
    """Input scaling fitted on the training split and recorded in the trace: ``none``,
    ``unit`` (min-max to [0, 1] per feature) or ``standard`` (zero mean, unit variance
    per feature)."""

    def validate(self):
        if not self.path:
            raise ParamError(("path",), "must name a .npz or .h5 file")

    def load(self, rng):
        path = Path(self.path)
        a = check_arrays(path, read_arrays(path), self.classes)
        if a.x_test is None:
            data = _split(a.x, a.y, self.test_fraction, rng, classes=a.classes)
        elif a.classes:
            data = Dataset(a.x, _one_hot(a.y, a.classes), a.x_test, _one_hot(a.y_test, a.classes),
                           a.y, a.y_test)
        else:
            data = Dataset(a.x, a.y, a.x_test, a.y_test, None, None)
        if self.scale == "none":
            largest = float(np.abs(data.x_train).max())
            if largest > _LARGE_FEATURES:
                warnings.warn(f"{path}: X reaches {largest:.3g} in magnitude; sigmoid and tanh "
                              f"units saturate on such inputs (set data.scale: standard or "
                              f"unit)", DataWarning, stacklevel=2)
            return data
        scaling = FeatureScaling.fit(self.scale, data.x_train)
        return Dataset(scaling(data.x_train), data.y_train, scaling(data.x_test), data.y_test,
                       data.labels_train, data.labels_test, scaling)


class SampleStream:
    """Sample indices for successive hardware steps, each held ``tau_x`` steps.

    Epochs are shuffled permutations drawn from ``rng``; the stream carries its
    position across calls, so chunk sizes do not change the sequence.
    """

    def __init__(self, n_samples: int, tau_x: int, rng: np.random.Generator):
        self.n, self.tau_x, self._rng = n_samples, tau_x, rng
        self._order = rng.permutation(n_samples)
        self._pos = 0      # index into the current epoch's order
        self._held = 0     # steps the current sample has been shown already

    def next(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, new)`` for the next ``steps`` steps; ``new[t]`` marks the first
        step of a newly presented sample."""
        head = min(self.tau_x - self._held, steps)  # steps left of the current sample
        n_more = -(-(steps - head) // self.tau_x)   # further samples this call needs
        idx = np.empty(steps, dtype=np.int64)
        new = np.zeros(steps, dtype=bool)
        idx[:head] = self._order[self._pos]
        new[0] = head > 0 and self._held == 0
        if n_more:
            idx[head:] = np.repeat(self._advance(n_more), self.tau_x)[:steps - head]
            new[head::self.tau_x] = True
            self._held = steps - head - (n_more - 1) * self.tau_x
        else:
            self._held += head
        return idx, new

    def peek_new(self, steps: int) -> np.ndarray:
        """The ``new`` flags :meth:`next` would give for the next ``steps`` steps, without
        advancing (they depend on the position within the held sample only)."""
        return (self._held + np.arange(steps)) % self.tau_x == 0

    def _advance(self, n: int) -> np.ndarray:
        """The next ``n`` samples in epoch order, reshuffling at each epoch's end."""
        parts = []
        while n:
            if self._pos + 1 == self.n:
                self._order, self._pos = self._rng.permutation(self.n), -1
            take = min(n, self.n - 1 - self._pos)
            parts.append(self._order[self._pos + 1:self._pos + 1 + take])
            self._pos += take
            n -= take
        return np.concatenate(parts)

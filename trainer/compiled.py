"""Whole update windows in compiled form: the default executor where it covers a run.

:class:`~trainer.executors.Plain` runs one window at a time through Python: the
estimator's generator, the chip's batched call, the optimizer, the write. On the
networks users train that bookkeeping costs as much as the arithmetic or more. The
executors here run many windows in one compiled call (:mod:`trainer.compiled_kernels`),
up to the loop's next boundary (a trace row, an evaluation, a snapshot, the budget):
each window's probes through the layers in canonical blocks, the costs, the estimate,
the optimizer's step and the write, with the kernels the plain path calls and in its
order, so both give the same bits for any thread count (``tests/test_executors.py``
holds every covered combination to it). For MGD this is also the method as the papers
implement it on chip: nothing in a window reaches Python.

What they cover; :meth:`Compiled.refusals` names whatever else a run asks for, and such
runs go through :class:`~trainer.executors.Plain`:

- :class:`CompiledMGD`: MGD with ``code`` perturbations on nodes or weights,
  ``discrete`` or ``analog``, ``window`` or ``lowpass`` integration, clipped cost
  changes; not cost noise (a NumPy stream per window), not the periodic or sparse codes;
- :class:`CompiledNP`: ``np``, ``anp`` and ``inp`` with Gaussian noise, one draw, a
  clean pass and the noisy ones, with or without the decorrelation rule (DNP, DANP,
  DINP); not other noise laws (NumPy draws them in buffered chunks), two noisy passes
  or the chip's own noise;
- :class:`CompiledWP`: weight perturbation, either law (Gaussian perturbations drawn
  from the estimator's NumPy stream before the call, Rademacher signs made in place);
- :class:`CompiledBackprop`: reference backpropagation (a baseline outside the rule),
  not on chips with decorrelation matrices (DBP) or device neurons, through which its
  gradient is the reference model's;
- optimizers ``sgd``, ``momentum`` (Nesterov too) and ``adam``, with clipping and
  schedules (plugins' optimizers go through Plain);
- chips whose every layer is an exact float array
  (:meth:`devsim.device.DeviceArray.exact_parameters`: the ideal device) with a bias
  and an identity, sigmoid, ReLU or leaky ReLU activation (those with compiled code) or
  device neurons that offer a compiled pass
  (:class:`devsim.activations.CompiledNeuron`: the MTJ p-bits; not under backprop,
  which takes their mean response), an ``mse`` or ``cross_entropy`` loss, and
  decorrelation matrices or none; the chip's own node noise may be there: these
  estimators never ask for noisy passes, so it never acts
  (:class:`~trainer.exact_chip.ExactChip`);
- no per-window diagnostics (``train.diagnose_cosine``), and NumPy's BLAS reachable from
  compiled code (:data:`devsim.blas.AVAILABLE`).
"""
from __future__ import annotations

import copy
from types import MappingProxyType

import numpy as np

from devsim import parallel
from devsim.dense import CBLAS
from trainer.backprop import Backprop
from trainer.base import Estimate, Estimator, Window
from trainer.compiled_kernels import backprop_windows, mgd_windows, np_windows, wp_windows
from trainer.exact_chip import ExactChip
from trainer.executors import Executor, Plain
from trainer.mgd import MGD
from trainer.node_perturbation import NodePerturbation
from trainer.optim import AdamState, MomentumState, ScheduleState, decay_schedule
from trainer.weight_perturbation import WeightPerturbation

OPTIMIZERS = ("sgd", "momentum", "adam")
"""Optimizer kinds the kernels apply; a kind's index here is its code."""
MAX_WINDOWS = 4096
"""Most windows per compiled call (a call returns to Python at least this often)."""
NOISE_BYTES = 64 << 20
"""Most bytes of perturbations drawn for one call (weight perturbation: a window of B
rows on P parameters draws 8 B P bytes)."""


class Compiled(Executor):
    """What the compiled executors share: the chip's exact layers, the optimizer in the
    kernels' terms, the calls up to a boundary and the bookkeeping after them.

    They run on the chip's exact float layers (:meth:`devsim.bench.Bench.exact_layers`),
    as the chip's own circuits would, and count every probe on the chip and its meters.
    """

    estimator_type: type = Estimator

    def __init__(self, bench, estimator: Estimator, optimizer):
        problems = self.refusals(bench, estimator, optimizer)
        if problems:
            raise ValueError("the compiled executor does not cover " + "; ".join(problems)
                             + "; use the plain ask/tell loop (trainer.executors.Plain)")
        super().__init__(bench.chip)
        self.bench, self.optimizer = bench, optimizer
        self.exact = exact = ExactChip(bench)
        self.layers, self.shapes = exact.layers, exact.shapes
        self.opt_kind = OPTIMIZERS.index(optimizer.kind)
        self.hyper = np.zeros(5)
        if optimizer.kind == "momentum":
            self.hyper[:2] = optimizer.beta, optimizer.nesterov
        elif optimizer.kind == "adam":
            self.hyper[:3] = optimizer.b1, optimizer.b2, optimizer.eps
        self.hyper[4] = optimizer.clip_norm
        size = sum(len(layer) for layer in self.layers)
        self._step_work = tuple(np.empty(size) for _ in range(3))  # step, its new state
        self._plain = Plain(bench.chip)
        self._work = {}

    @classmethod
    def refusals(cls, bench, estimator, optimizer) -> list[str]:
        """What in this run the executor does not cover (empty: it covers the run)."""
        if not isinstance(estimator, cls.estimator_type):
            return [f"estimator {type(estimator).__name__} "
                    f"(needs {cls.estimator_type.__name__})"]
        problems = cls._estimator_refusals(estimator)
        if optimizer is None or optimizer.kind not in OPTIMIZERS:
            problems.append(f"optimizer {getattr(optimizer, 'kind', None)!r} "
                            f"(needs one of {', '.join(OPTIMIZERS)})")
        return problems + ExactChip.refusals(bench)

    @staticmethod
    def _estimator_refusals(estimator) -> list[str]:
        raise NotImplementedError

    def window(self, estimator, window: Window) -> Estimate:
        """A window on its own, for callers outside a training loop: the plain loop's
        (the compiled form needs the optimizer, :meth:`advance`)."""
        return self._plain.window(estimator, window)

    def advance(self, loop, until: int) -> list:
        """Update windows of ``loop`` until the chip has taken ``until`` steps or a window
        is skipped, in one compiled call; their :class:`~trainer.loop.UpdateStats`."""
        from trainer.loop import UpdateStats
        if loop.diagnose is not None:  # a diagnostic is Python called per window
            return self._plain.advance(loop, until)
        T = loop.timescales.tau_theta
        n = self._windows_to(loop, until, T)
        saved = copy.deepcopy(loop.stream)
        idx, new = loop.stream.next(n * T)
        velocity, second, count, schedule = _unpack(self.optimizer, loop.opt_state)
        factors = np.full(n, np.nan)
        if schedule is not None:
            factors[:] = [schedule(count + w) for w in range(n)]
        stats = np.zeros((n, 5))
        optimizer = (self.opt_kind, self.hyper, self.optimizer.lr, factors, velocity, second,
                     count, *self._step_work)
        neurons, passes = self.exact.neurons()
        events = np.zeros((n, len(self.layers)), dtype=np.int64)
        chip = (self.layers, self.shapes, self.exact.acts, self.exact.decorrelation, neurons,
                events, self.exact.loss)
        with parallel.single_threaded_blas():
            ran = self._run(loop, chip, idx, new, optimizer, stats)
        for w in range(ran):  # the device neurons' meters, a pass at a time
            for layer, neuron in enumerate(passes):
                if neuron is not None:
                    neuron.account(int(stats[w, 4]), int(events[w, layer]))
        if ran < n:  # stopped at a skipped window: the stream gives only what ran
            loop.stream = saved
            loop.stream.next(ran * T)
        written = int(np.count_nonzero(stats[:ran, 3] == 0))
        loop.opt_state = _pack(self.optimizer, loop.opt_state, velocity, second,
                               count + written)
        probes = int(stats[:ran, 4].sum())
        self.chip.account(probes)
        self.bench.count_reads(probes)
        return [UpdateStats(float(c), float(e), float(u), MappingProxyType({}),
                            skipped=bool(s)) for c, e, u, s, _ in stats[:ran]]

    def _windows_to(self, loop, until: int, T: int) -> int:
        """How many windows bring the chip to ``until`` steps (at least one; at most
        :data:`MAX_WINDOWS`)."""
        remaining = until - loop.chip.steps
        n_max = max(1, min(self._max_windows(loop, T), -(-remaining // T)))
        per_window = self._probes(loop, n_max, T)
        return min(n_max, int(np.searchsorted(np.cumsum(per_window), remaining)) + 1)

    def _max_windows(self, loop, T: int) -> int:
        """Most windows of T steps one call runs."""
        return MAX_WINDOWS

    def _probes(self, loop, n: int, T: int) -> np.ndarray:
        """Probes of each of the next ``n`` windows of T steps."""
        raise NotImplementedError

    def _run(self, loop, chip, idx, new, optimizer, stats) -> int:
        """The compiled call over the windows of ``idx`` on ``chip`` (the kernels' first
        arguments): how many ran."""
        raise NotImplementedError

    def _arrays(self, loop, rows: int, width: int) -> dict:
        """Work arrays for windows of ``rows`` probes and per-probe codes and signals
        over ``width`` nodes, kept between calls; each layer's decorrelated inputs where
        the chip has decorrelation matrices (empty arrays where not)."""
        key = (rows, width)
        if key not in self._work:
            sizes = self.shapes[:, 0] * (self.shapes[:, 1] + 1)
            hidden = tuple(np.empty((rows, int(n))) for n in self.shapes[:, 0])
            inputs = tuple(np.empty((rows, int(n)) if self.exact.decorrelated else (0, 0))
                           for n in self.shapes[:, 1])
            self._work[key] = dict(
                inputs=inputs,
                x=np.empty((rows, loop.x.shape[1])), y=np.empty((rows, loop.y.shape[1])),
                costs=np.empty(rows), codes=np.empty((rows, width)),
                counters=np.empty(rows, dtype=np.int64),
                signal=np.empty((rows, width)), per_probe=np.empty(rows),
                norms=np.empty(rows), gradient=np.empty(int(sizes.sum())), hidden=hidden,
                preactivations=tuple(np.empty_like(h) for h in hidden),
                deltas=tuple(np.empty_like(h) for h in hidden))
        return self._work[key]


class CompiledMGD(Compiled):
    """MGD's windows, the optimizer's steps and the writes, many windows per compiled
    call; the same bits as :class:`~trainer.executors.Plain`."""

    estimator_type = MGD

    @staticmethod
    def _estimator_refusals(estimator) -> list[str]:
        p, problems = estimator.params, []
        if p.perturbation != "code":
            problems.append(f"perturbation {p.perturbation!r} (needs 'code')")
        if p.cost_noise:
            problems.append("cost_noise (a NumPy stream per window)")
        return problems

    def _probes(self, loop, n, T):
        """T perturbed probes and, in discrete mode, a baseline per new sample and one at
        the window's start."""
        if loop.estimator.params.mode != "discrete":
            return np.full(n, T)
        new = loop.stream.peek_new(n * T).reshape(n, T)
        return T + new[:, 1:].sum(axis=1) + 1

    def _run(self, loop, chip, idx, new, optimizer, stats):
        estimator, p = loop.estimator, loop.estimator.params
        T = loop.timescales.tau_theta
        if p.integrator == "window":
            weights, decay, scale = np.ones(T), 0.0, estimator.channels / T
        else:
            beta = p.tau_lp / (p.tau_lp + 1.0)
            weights = (1.0 - beta) * beta ** np.arange(T - 1, -1, -1.0)
            decay, scale = beta ** T, float(estimator.channels)
        nodes = estimator.channels if p.target == "nodes" else 0  # weights: codes on the fly
        a = self._arrays(loop, 2 * T, nodes)
        buffers = (a["x"], a["y"], a["costs"], a["codes"][:T], a["signal"][:T],
                   a["per_probe"][:T], a["gradient"], a["counters"])
        ran = mgd_windows(
            *chip, loop.x, loop.y, idx, new, T, p.target == "nodes", p.mode == "discrete",
            estimator.perturbation.key, estimator.step, estimator.tau_p,
            estimator.perturbation.rms, p.epsilon ** 2, p.tau_hp / (p.tau_hp + 1.0),
            estimator._filter, p.integrator == "lowpass", weights, decay, estimator._integral,
            p.normalize, scale, p.cost_change_clip, optimizer, buffers, a["inputs"],
            a["hidden"], stats, CBLAS)
        estimator.step += ran * T
        return ran


class CompiledNP(Compiled):
    """Node perturbation's windows (``np``, ``anp``, ``inp``), the optimizer's steps and
    the writes, many windows per compiled call; the same bits as
    :class:`~trainer.executors.Plain`. The noise of the windows is drawn before the call
    from the estimator's stream, as the plain loop draws it window by window (at most
    :data:`NOISE_BYTES` a call)."""

    estimator_type = NodePerturbation

    @staticmethod
    def _estimator_refusals(estimator) -> list[str]:
        p, problems = estimator.params, []
        for name, needed in (("perturbation", "gaussian"), ("passes", "clean_noisy"),
                             ("draws", 1)):
            if getattr(p, name) != needed:
                problems.append(f"{name} {getattr(p, name)!r} (needs {needed!r})")
        return problems

    @staticmethod
    def _noisy_passes(estimator) -> int:
        """Noisy passes of a window: one, or (``inp``) one per layer."""
        return len(estimator.node_layers) if estimator.params.kind == "inp" else 1

    def _max_windows(self, loop, T):
        noise_bytes = 8 * self._noisy_passes(loop.estimator) * T * loop.estimator.n_nodes
        return max(1, min(MAX_WINDOWS, NOISE_BYTES // noise_bytes))

    def _probes(self, loop, n, T):
        """A clean pass and the noisy passes of the T samples."""
        return np.full(n, (1 + self._noisy_passes(loop.estimator)) * T)

    def _run(self, loop, chip, idx, new, optimizer, stats):
        estimator, p = loop.estimator, loop.estimator.params
        B, K = loop.timescales.tau_theta, estimator.n_nodes
        n = len(idx) // B
        state = copy.deepcopy(estimator.rng.bit_generator.state)
        noise = _draw_windows(estimator, n, B)
        a = self._arrays(loop, (1 + self._noisy_passes(estimator)) * B, K)
        buffers = (a["x"], a["y"], a["costs"], a["signal"][:B], a["per_probe"][:B],
                   a["norms"][:B], a["gradient"])
        ran = np_windows(*chip, loop.x, loop.y, idx, B, p.kind != "np", p.kind == "inp", noise,
                         estimator.mean, estimator.variance, p.decorrelation_lr, optimizer,
                         buffers, a["inputs"], a["hidden"], a["preactivations"], stats, CBLAS)
        if ran < n:  # the estimator's stream gives only the noise of what ran
            estimator.rng.bit_generator.state = state
            _draw_windows(estimator, ran, B)
        return ran


def _draw_windows(estimator: NodePerturbation, n: int, B: int) -> np.ndarray:
    """The injected noise of ``n`` windows of B samples, drawn from the estimator's
    stream as its windows draw it: B rows a window (``np``, ``anp``), or B rows per layer
    with nothing outside the layer (``inp``)."""
    if estimator.params.kind != "inp":
        return estimator.draw(n * B)  # one draw of n B rows: the n draws of B rows
    return np.concatenate([estimator.draw(B, layer) for _ in range(n)
                           for layer in estimator.node_layers])


class CompiledWP(Compiled):
    """Weight perturbation's windows, the optimizer's steps and the writes, many windows
    per compiled call; the same bits as :class:`~trainer.executors.Plain`. Gaussian
    perturbations are drawn before the call from the estimator's stream, window by
    window as the plain loop draws them (at most :data:`NOISE_BYTES` a call); Rademacher
    ones are made inside the products and the correlation from their counters, as MGD's
    codes on the weights."""

    estimator_type = WeightPerturbation

    @staticmethod
    def _estimator_refusals(estimator) -> list[str]:
        return []  # both laws

    def _max_windows(self, loop, T):
        if loop.estimator.signed:
            return MAX_WINDOWS
        return max(1, min(MAX_WINDOWS, NOISE_BYTES // (8 * T * loop.estimator.n_params)))

    def _probes(self, loop, n, T):
        """A clean and a moved pass of the T samples."""
        return np.full(n, 2 * T)

    def _run(self, loop, chip, idx, new, optimizer, stats):
        estimator, B = loop.estimator, loop.timescales.tau_theta
        n, first_row = len(idx) // B, estimator.rows
        state = copy.deepcopy(estimator.rng.bit_generator.state)
        noise = np.empty((0, 0, 0))
        if not estimator.signed:
            noise = self._noise(n, B, estimator.n_params)
            for w in range(n):
                estimator.draw(B, out=noise[w])
        a = self._arrays(loop, 2 * B, 0)
        buffers = (a["x"], a["y"], a["costs"], a["per_probe"][:B], a["gradient"], a["counters"])
        ran = wp_windows(*chip, loop.x, loop.y, idx, B, noise,
                         estimator.key if estimator.signed else np.uint64(0), first_row,
                         estimator.params.sigma, estimator.scale(B), optimizer, buffers,
                         a["inputs"], a["hidden"], stats, CBLAS)
        estimator.rows = first_row + ran * B
        if ran < n and not estimator.signed:  # the stream gives only the draws of what ran
            estimator.rng.bit_generator.state = state
            for _ in range(ran):
                estimator.rng.standard_normal(noise[0].shape)
        return ran

    def _noise(self, n, B, n_params):
        """A work array for ``n`` windows' perturbations, kept between calls."""
        kept = self._work.get("noise")
        if kept is None or len(kept) < n or kept.shape[1:] != (B, n_params):
            kept = self._work["noise"] = np.empty((n, B, n_params))
        return kept[:n]


class CompiledBackprop(Compiled):
    """Reference backpropagation's windows (outside the rule: a baseline), the
    optimizer's steps and the writes, many windows per compiled call; the same bits as
    :class:`~trainer.executors.Plain`, whose :class:`~trainer.backprop.Backprop` takes
    the gradient from the chip's recorded pass with the same kernel on such chips."""

    estimator_type = Backprop

    @staticmethod
    def _estimator_refusals(estimator) -> list[str]:
        return ExactChip.backprop_refusals(estimator.bench)

    def _probes(self, loop, n, T):
        """One pass of the T samples."""
        return np.full(n, T)

    def _run(self, loop, chip, idx, new, optimizer, stats):
        B = loop.timescales.tau_theta
        a = self._arrays(loop, B, 0)
        buffers = (a["x"], a["y"], a["costs"], a["gradient"])
        return backprop_windows(*chip, loop.x, loop.y, idx, B, optimizer, buffers,
                                a["inputs"], a["hidden"], a["preactivations"], a["deltas"],
                                stats, CBLAS)


EXECUTORS = (CompiledMGD, CompiledNP, CompiledWP, CompiledBackprop)
"""The compiled executors, in the order :func:`trainer.executors.select` tries them."""


def _unpack(optimizer, state):
    """(velocity or first moment, second moment, updates applied, schedule or None) from
    the state of ``optimizer.build()`` (trainer.optim's chain of clipping, core and
    schedule)."""
    if optimizer.clip_norm:
        state = state[1]
    schedule, count = None, 0
    if optimizer.schedule != "constant":
        state, schedule_state = state
        schedule = decay_schedule(optimizer.lr, optimizer.schedule, optimizer.decay_updates,
                                  optimizer.final_lr_fraction)
        count = schedule_state.count
    empty = np.zeros(0)
    if isinstance(state, AdamState):
        return state.mu.copy(), state.nu.copy(), state.count, schedule
    velocity = state.velocity.copy() if isinstance(state, MomentumState) else empty
    return velocity, empty, count, schedule


def _pack(optimizer, state, velocity, second, count):
    """:func:`_unpack`'s inverse: ``state`` with the kernel's velocity, moments and
    count in place of its own."""
    core = state[1] if optimizer.clip_norm else state
    if optimizer.schedule != "constant":
        core, _ = core
    if isinstance(core, AdamState):
        core = AdamState(count, velocity, second)
    elif isinstance(core, MomentumState):
        core = MomentumState(velocity)
    if optimizer.schedule != "constant":
        core = (core, ScheduleState(count))
    return ((), core) if optimizer.clip_norm else core

"""Whole update windows in compiled form: the default executor where it covers a run.

:class:`~trainer.executors.Plain` runs one window at a time through Python: the
estimator's generator, the chip's batched call, the optimizer, the write. On the
networks users train that bookkeeping costs as much as the arithmetic or more.
:class:`CompiledMGD` runs many windows of MGD in one compiled call, up to the loop's
next boundary (a trace row, an evaluation, a snapshot, the budget): each window's
probes (perturbed inferences, then baselines) through the layers in canonical blocks,
the costs, the homodyne estimate, the optimizer's step and the write. It calls the
kernels the plain path calls (:mod:`devsim.dense`, :mod:`devsim.losses`,
:mod:`trainer.kernels`, :func:`trainer.perturbations.rademacher_codes`,
:func:`trainer.mgd.highpass`) in the same order, so the two give the same bits, for any
thread count (``tests/test_executors.py`` holds every covered combination to it).

This is also MGD as the papers implement it on chip (each synapse or neuron circuit with
its own code generator and integrator, only the cost change broadcast): nothing in a
window reaches Python.

What it covers; :meth:`CompiledMGD.refusals` names whatever else a run asks for, and
such runs go through :class:`~trainer.executors.Plain`:

- MGD with ``code`` perturbations on nodes or weights, ``discrete`` or ``analog``,
  ``window`` or ``lowpass`` integration, clipped cost changes; not cost noise (a NumPy
  stream drawn per window), not the periodic or sparse codes (drawn by NumPy);
- optimizers ``sgd``, ``momentum`` (Nesterov too) and ``adam``, with clipping and
  schedules (registered plugins go through Plain);
- chips whose every layer is an exact float array
  (:meth:`devsim.device.DeviceArray.exact_parameters`: the ideal device) with a bias,
  more than one output (NumPy makes a one-column product by other BLAS routines) and
  an identity, sigmoid or ReLU activation (the activations with compiled code), an
  ``mse`` or ``cross_entropy`` loss, no decorrelation and no node noise;
- no per-window diagnostics (``train.diagnose_cosine``), and NumPy's BLAS reachable from
  compiled code (:data:`devsim.blas.AVAILABLE`).
"""
from __future__ import annotations

import copy
import math
from types import MappingProxyType

import numpy as np
from numba import njit

from devsim import blas, parallel
from devsim.dense import forward_block
from devsim.losses import LOSSES, loss_rows
from devsim.parallel import BLOCK_ROWS
from trainer.base import Estimate, Window
from trainer.executors import Executor, Plain
from trainer.kernels import CBLAS, column_sums, correlate, mean, norm
from trainer.mgd import MGD, highpass
from trainer.optim import AdamState, MomentumState, ScheduleState
from trainer.perturbations import rademacher_codes

OPTIMIZERS = ("sgd", "momentum", "adam")
"""Optimizer kinds the kernel applies; a kind's index here is its code."""
MAX_WINDOWS = 4096
"""Most windows per compiled call (a call returns to Python at least this often)."""


# ------------------------------------------------------------------ compiled windows
@njit(cache=True, nogil=True)
def _forward(layers, shapes, acts, node_target, codes, perturbed, rows, x, hidden,
             node_block, weight_block, cblas):
    """The window's ``rows`` probes (inputs ``x``) through every layer into ``hidden[l]``,
    in canonical blocks; probes below ``perturbed`` carry their row of ``codes`` on the
    nodes or the parameters (the rest, the baselines, zeros)."""
    n_layers = shapes.shape[0]
    empty = np.empty((0, 0))
    for b0 in range(0, rows, BLOCK_ROWS):
        b1 = min(rows, b0 + BLOCK_ROWS)
        h = x[b0:b1]
        node_at, param_at = 0, 0
        for l in range(n_layers):
            n_out, n_in = shapes[l, 0], shapes[l, 1]
            width = n_out if node_target else n_out * (n_in + 1)
            at = node_at if node_target else param_at
            block = node_block if node_target else weight_block
            part = block[:b1 - b0, :width]
            for t in range(b0, b1):
                if t < perturbed:
                    part[t - b0] = codes[t, at:at + width]
                else:
                    part[t - b0] = 0.0
            out = hidden[l][b0:b1]
            if node_target:
                forward_block(layers[l], n_out, h, part, empty, acts[l], out, cblas)
            else:
                forward_block(layers[l], n_out, h, empty, part, acts[l], out, cblas)
            h = out
            node_at += n_out
            param_at += n_out * (n_in + 1)


@njit(cache=True, nogil=True)
def _estimate(layers, shapes, node_target, codes, change, weights, eps2, x, hidden, steps,
              signal, gradient, cblas):
    """The window's homodyne estimate into ``gradient``: each probe's weighted cost change
    times its perturbation / eps^2, correlated with the layer inputs (node target) or
    summed (weight target)."""
    for t in range(steps):
        weighted = weights[t] * change[t]
        for k in range(codes.shape[1]):
            signal[t, k] = weighted * codes[t, k] / eps2
    if not node_target:
        column_sums(signal[:steps], gradient)
        return
    node_at, param_at = 0, 0
    for l in range(shapes.shape[0]):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        inputs = x[:steps] if l == 0 else hidden[l - 1][:steps]
        w = gradient[param_at:param_at + n_out * n_in].reshape((n_out, n_in))
        b = gradient[param_at + n_out * n_in:param_at + n_out * (n_in + 1)]
        correlate(signal[:steps, node_at:node_at + n_out], inputs, w, b, cblas)
        node_at += n_out
        param_at += n_out * (n_in + 1)


@njit(cache=True, nogil=True)
def _optimizer_step(kind, hyper, lr, factor, gradient, velocity, second, count, step,
                    new_velocity, new_second):
    """trainer.optim's step for ``gradient`` into ``step`` and the state it would leave
    into ``new_velocity``/``new_second`` (committed by the caller), in the same
    operations: clipping by global norm (hyper[4] > 0), the core (sgd, momentum with
    hyper[0] = beta and hyper[1] = Nesterov, adam with hyper[0..3] = b1, b2, eps), then
    the schedule's ``factor`` (NaN: a constant schedule, ``lr`` inside the core)."""
    clip_norm = hyper[4]
    scale = 1.0
    clipped = False
    if clip_norm > 0.0:
        g_norm = norm(gradient)
        if g_norm > clip_norm:
            scale, clipped = clip_norm / g_norm, True
    core_lr = lr if math.isnan(factor) else 1.0
    for i in range(gradient.shape[0]):
        g = gradient[i] * scale if clipped else gradient[i]
        if kind == 0:
            d = -core_lr * g
        elif kind == 1:
            beta = hyper[0]
            v = beta * velocity[i] + g
            new_velocity[i] = v
            d = -core_lr * (beta * v + g if hyper[1] else v)
        else:
            b1, b2, eps = hyper[0], hyper[1], hyper[2]
            mu = b1 * velocity[i] + (1 - b1) * g
            nu = b2 * second[i] + (1 - b2) * g * g
            new_velocity[i], new_second[i] = mu, nu
            mu_hat = mu / (1 - math.pow(b1, float(count + 1)))  # libm pow, as Python's
            nu_hat = nu / (1 - math.pow(b2, float(count + 1)))
            d = -core_lr * mu_hat / (np.sqrt(nu_hat) + eps)
        step[i] = d if math.isnan(factor) else factor * d


@njit(cache=True, nogil=True)
def mgd_windows(layers, shapes, acts, loss, x_data, y_data, idx, new, window, node_target,
                discrete, key, clock, tau_p, rms, eps2, a_hp, hp_state, lowpass, weights,
                decay, integral, normalize, scale, clip_change, opt_kind, hyper, lr,
                factors, velocity, second, count, buffers, hidden, stats, cblas):
    """Windows of MGD with the optimizer's step written after each, until one is skipped
    (its cost, estimate or step not finite) or ``len(idx) // window`` have run; returns
    how many ran. Window w presents samples ``idx[w*T:(w+1)*T]`` and starts at
    perturbation step ``clock + w*T``; ``stats[w]`` gets (mean cost, estimate norm,
    update norm or NaN, skipped, counted probes). The estimator's filter and integral
    (``hp_state``, ``integral``) and the optimizer's state (``velocity``, ``second``,
    ``count``: updates applied before the call) change in place."""
    x, y, costs, codes, signal, change, gradient, step, new_v, new_s, node_b, weight_b = \
        buffers
    n_in = x.shape[1]
    for w in range(idx.shape[0] // window):
        s0 = w * window
        for t in range(window):
            x[t, :n_in] = x_data[idx[s0 + t]]
            y[t] = y_data[idx[s0 + t]]
        rows = window
        if discrete:  # a baseline per new sample and at the window's start
            for t in range(window):
                if t == 0 or new[s0 + t]:
                    x[rows] = x[t]
                    y[rows] = y[t]
                    rows += 1
        rademacher_codes(key, clock + s0, tau_p, rms, codes)
        _forward(layers, shapes, acts, node_target, codes, window, rows, x, hidden, node_b,
                 weight_b, cblas)
        loss_rows(loss, hidden[shapes.shape[0] - 1][:rows], y[:rows], costs[:rows])
        if discrete:
            cost = mean(costs[window:rows])
            k = window - 1
            for t in range(window):
                if t == 0 or new[s0 + t]:
                    k += 1
                change[t] = costs[t] - costs[k]
        else:
            change[:window] = highpass(costs[:window], new[s0:s0 + window], a_hp, hp_state)
            cost = mean(costs[:window])
        if clip_change > 0.0:
            for t in range(window):
                if change[t] < -clip_change:
                    change[t] = -clip_change
                elif change[t] > clip_change:
                    change[t] = clip_change
        _estimate(layers, shapes, node_target, codes, change, weights, eps2, x, hidden,
                  window, signal, gradient, cblas)
        if lowpass:
            finite = True
            for i in range(gradient.shape[0]):
                gradient[i] = decay * integral[i] + gradient[i]
                finite = finite and np.isfinite(gradient[i])
            if finite:
                integral[:] = gradient
        if normalize:
            for i in range(gradient.shape[0]):
                gradient[i] = gradient[i] * scale
        estimate_norm = norm(gradient)
        update_norm = np.nan
        skipped = True
        if np.isfinite(cost) and np.isfinite(estimate_norm):
            _optimizer_step(opt_kind, hyper, lr, factors[w], gradient, velocity, second,
                            count, step, new_v, new_s)
            update_norm = norm(step)
            if np.isfinite(update_norm):
                skipped = False
                count += 1
                if opt_kind > 0:
                    velocity[:] = new_v
                if opt_kind == 2:
                    second[:] = new_s
                at = 0
                for l in range(shapes.shape[0]):
                    flat = layers[l]
                    for i in range(flat.shape[0]):
                        flat[i] += step[at + i]
                    at += flat.shape[0]
            else:
                update_norm = np.nan
        stats[w, 0], stats[w, 1], stats[w, 2] = cost, estimate_norm, update_norm
        stats[w, 3], stats[w, 4] = skipped, rows
        if skipped:
            return w + 1
    return idx.shape[0] // window


# ------------------------------------------------------------------ the executor
class CompiledMGD(Executor):
    """MGD's windows, the optimizer's steps and the writes, many windows per compiled
    call (:meth:`advance`); the same bits as :class:`~trainer.executors.Plain`.

    It runs on the chip's exact float layers (:meth:`devsim.bench.Bench.exact_layers`),
    as the chip's own circuits would, counting every probe on the chip and its meters.
    """

    def __init__(self, bench, estimator: MGD, optimizer):
        problems = self.refusals(bench, estimator, optimizer)
        if problems:
            raise ValueError("the compiled executor does not cover " + "; ".join(problems)
                             + "; use the plain ask/tell loop (trainer.executors.Plain)")
        super().__init__(bench.chip)
        self.bench, self.optimizer = bench, optimizer
        self.layers = bench.exact_layers()
        chip = bench.chip
        self.shapes = np.array(chip.layer_shapes, dtype=np.int64)
        self.acts = np.array([act.native for act in bench.network.activations],
                             dtype=np.int64)
        self.loss = LOSSES.index(chip.loss)
        self.opt_kind = OPTIMIZERS.index(optimizer.kind)
        self.hyper = np.zeros(5)
        if optimizer.kind == "momentum":
            self.hyper[:2] = optimizer.beta, optimizer.nesterov
        elif optimizer.kind == "adam":
            self.hyper[:3] = optimizer.b1, optimizer.b2, optimizer.eps
        self.hyper[4] = optimizer.clip_norm
        self._plain = Plain(chip)
        self._buffers = None

    @staticmethod
    def refusals(bench, estimator, optimizer) -> list[str]:
        """What in this run the executor does not cover (empty: it covers the run)."""
        if not isinstance(estimator, MGD):
            return [f"estimator {type(estimator).__name__} (needs MGD)"]
        problems = []
        p = estimator.params
        if p.perturbation != "code":
            problems.append(f"perturbation {p.perturbation!r} (needs 'code')")
        if p.cost_noise:
            problems.append("cost_noise (a NumPy stream per window)")
        if optimizer is None or optimizer.kind not in OPTIMIZERS:
            problems.append(f"optimizer {getattr(optimizer, 'kind', None)!r} "
                            f"(needs one of {', '.join(OPTIMIZERS)})")
        chip, net = bench.chip, bench.network_params
        if bench.exact_layers() is None:
            problems.append("layers that are not all exact float arrays (the ideal device)")
        for i, (layer, act) in enumerate(zip(net.layers, bench.network.activations)):
            if act.native is None or act.stateful:
                problems.append(f"layer {i} activation {layer.activation.kind!r} "
                                "(no compiled code)")
            if not layer.bias:
                problems.append(f"layer {i} without bias")
            if layer.units == 1:  # NumPy's products of one column are dot products
                problems.append(f"layer {i} with one output")
        if chip.loss not in LOSSES:
            problems.append(f"loss {chip.loss!r}")
        if chip.capabilities.decorrelation:
            problems.append("decorrelation matrices")
        if chip.capabilities.noisy_nodes:
            problems.append("intrinsic node noise")
        if not blas.AVAILABLE:
            problems.append("NumPy's BLAS entry points (not found)")
        return problems

    def window(self, estimator, window: Window) -> Estimate:
        """A window on its own, for callers outside a training loop: the plain loop's
        (the compiled form needs the optimizer, :meth:`advance`)."""
        return self._plain.window(estimator, window)

    def advance(self, loop, until: int) -> list:
        """Update windows of ``loop`` until the chip has taken ``until`` steps or a window
        is skipped, in compiled calls; their :class:`~trainer.loop.UpdateStats`."""
        from trainer.loop import UpdateStats
        if loop.diagnose is not None:  # a diagnostic is Python called per window
            return self._plain.advance(loop, until)
        estimator, p = loop.estimator, loop.estimator.params
        T = loop.timescales.tau_theta
        n = self._windows_to(loop, until, T, p.mode == "discrete")
        saved = copy.deepcopy(loop.stream)
        idx, new = loop.stream.next(n * T)
        state = _unpack(self.optimizer, loop.opt_state, estimator.channels, len(self.shapes))
        velocity, second, count, scheduled = state
        factors = np.full(n, np.nan)
        if scheduled is not None:
            factors[:] = [scheduled(count + w) for w in range(n)]
        beta = p.tau_lp / (p.tau_lp + 1.0)
        if p.integrator == "window":
            weights, decay, scale = np.ones(T), 0.0, estimator.channels / T
        else:
            weights = (1.0 - beta) * beta ** np.arange(T - 1, -1, -1.0)
            decay, scale = beta ** T, float(estimator.channels)
        stats = np.zeros((n, 5))
        lr = self.optimizer.lr
        with parallel.single_threaded_blas():
            ran = mgd_windows(
                self.layers, self.shapes, self.acts, self.loss, loop.x, loop.y, idx, new, T,
                p.target == "nodes", p.mode == "discrete", estimator.perturbation.key,
                estimator.step, estimator.tau_p, estimator.perturbation.rms,
                p.epsilon ** 2, p.tau_hp / (p.tau_hp + 1.0), estimator._filter,
                p.integrator == "lowpass", weights, decay, estimator._integral, p.normalize,
                scale, p.cost_change_clip, self.opt_kind, self.hyper, lr, factors,
                velocity, second, count, self._work(loop, T, estimator.channels),
                self._hidden, stats, CBLAS)
        if ran < n:  # stopped at a skipped window: the stream gives only what ran
            loop.stream = saved
            loop.stream.next(ran * T)
        committed = int(np.count_nonzero(stats[:ran, 3] == 0))
        loop.opt_state = _pack(self.optimizer, loop.opt_state, velocity, second,
                               count + committed)
        estimator.step += ran * T
        probes = int(stats[:ran, 4].sum())
        self.chip.account(probes)
        self.bench.count_reads(probes)
        return [UpdateStats(float(c), float(e), float(u), MappingProxyType({}), skipped=bool(s))
                for c, e, u, s, _ in stats[:ran]]

    @staticmethod
    def _windows_to(loop, until: int, T: int, discrete: bool) -> int:
        """How many windows bring the chip to ``until`` steps (at least one; at most
        :data:`MAX_WINDOWS`): a discrete window counts a baseline per new sample and one
        at its start."""
        remaining = until - loop.chip.steps
        n_max = max(1, min(MAX_WINDOWS, -(-remaining // T)))
        per_window = np.full(n_max, T)
        if discrete:
            new = loop.stream.peek_new(n_max * T).reshape(n_max, T)
            per_window += new[:, 1:].sum(axis=1) + 1
        return min(n_max, int(np.searchsorted(np.cumsum(per_window), remaining)) + 1)

    def _work(self, loop, T: int, channels: int):
        """Work arrays of a window of T steps, kept between calls."""
        if self._buffers is None or self._buffers[2].shape[0] != 2 * T:
            rows = 2 * T
            widest = int((self.shapes[:, 0] * (self.shapes[:, 1] + 1)).max())
            n_params = int((self.shapes[:, 0] * (self.shapes[:, 1] + 1)).sum())
            self._hidden = tuple(np.empty((rows, int(n))) for n in self.shapes[:, 0])
            self._buffers = (
                np.empty((rows, loop.x.shape[1])), np.empty((rows, loop.y.shape[1])),
                np.empty(rows), np.empty((T, channels)), np.empty((T, channels)),
                np.empty(T), np.empty(n_params), np.empty(n_params), np.empty(n_params),
                np.empty(n_params), np.empty((BLOCK_ROWS, int(self.shapes[:, 0].max()))),
                np.empty((BLOCK_ROWS, widest)))
        return self._buffers


def _unpack(optimizer, state, channels: int, n_layers: int):
    """(velocity or first moment, second moment, updates applied, schedule or None) from
    the state of ``optimizer.build()`` (trainer.optim's chain of clipping, core and
    schedule)."""
    from trainer.optim import decay_schedule
    if optimizer.clip_norm:
        state = state[1]
    scheduled = None
    if optimizer.schedule != "constant":
        state, schedule_state = state
        scheduled = decay_schedule(optimizer.lr, optimizer.schedule,
                                   optimizer.decay_updates, optimizer.final_lr_fraction)
        count = schedule_state.count
    empty = np.zeros(0)
    if isinstance(state, AdamState):
        return state.mu.copy(), state.nu.copy(), state.count, scheduled
    velocity = state.velocity.copy() if isinstance(state, MomentumState) else empty
    return velocity, empty, (count if scheduled is not None else 0), scheduled


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

"""The compiled executor's kernels: whole update windows of MGD, of node perturbation, of
weight perturbation and of reference backpropagation, each followed by the optimizer's
step and the write (:mod:`trainer.compiled` drives them).

Every operation is the one the plain ask/tell loop makes, in the same order, through the
same kernels (:mod:`devsim.dense`, :mod:`devsim.losses`, :mod:`trainer.kernels`,
:func:`trainer.perturbations.rademacher_codes`, :func:`trainer.mgd.highpass`,
:func:`trainer.decorrelation.decorrelation_delta`), so a window
gives the same bits either way. MGD on the weights makes each probe's sign code inside its
products and its correlation (:func:`devsim.dense.add_code_perturbation`,
:func:`trainer.perturbations.correlate_codes`): the same bits as the plain loop's
materialised codes, without a (probes x parameters) array per window; so does weight
perturbation with its Rademacher law. The probes of a window run in canonical blocks of
:data:`devsim.parallel.BLOCK_ROWS` rows, as the chip runs them.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from devsim import blas
from devsim.activations import DEVICE_NEURON, apply_in_place, derivative
from devsim.dense import (add_code_perturbation, add_weight_perturbation,
                          add_zero_weight_perturbation, affine_block, correlate)
from devsim.losses import loss_gradient_rows, loss_rows
from devsim.native import call_void
from devsim.parallel import BLOCK_ROWS
from trainer.decorrelation import decorrelation_delta
from trainer.kernels import mean, norm, row_squares, weighted_rows
from trainer.mgd import highpass
from trainer.perturbations import correlate_codes, rademacher_codes


@njit(cache=True, nogil=True)
def _forward(layers, shapes, acts, decorrelation, neurons, events, node_noise, weight_noise,
             perturbed, zero_before, key, counters, amplitude, rows, x, inputs, hidden,
             preactivations, keep, cblas):
    """The window's ``rows`` probes (inputs ``x``) through every layer into ``hidden[l]``
    (and, with ``keep``, the pre-activations into ``preactivations[l]``), in canonical
    blocks, on the calling thread (Numba's parallel loops measured slower here: their
    OpenMP threads spin between windows, and lose badly on a shared machine). Where the
    chip has decorrelation matrices (``decorrelation[l]`` not empty), layer l takes
    R_l h, made into ``inputs[l]``; device neurons (:func:`_activate`) add their events
    to ``events[l]``.

    Probe t carries row ``t - perturbed[0]`` of ``node_noise`` on the nodes, or of
    ``weight_noise`` on the parameters, for perturbed[0] <= t < perturbed[1]; with
    neither (arrays of no columns or rows) it carries the sign code from counter
    ``counters[t]`` on the parameters (:func:`devsim.dense.add_code_perturbation`,
    amplitude ``amplitude``; none where counters[t] < 0 or ``counters`` is empty). With
    ``zero_before`` the probes before perturbed[0] (clean passes) get the zero parameter
    perturbation the plain loop's requests give them."""
    empty = np.empty((0, 0))
    node_target = node_noise.shape[1] > 0
    decorrelated = decorrelation[0].shape[0] > 0
    p0, p1 = perturbed[0], perturbed[1]
    for block in range((rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
        b0 = block * BLOCK_ROWS
        b1 = min(rows, b0 + BLOCK_ROWS)
        t0, t1 = min(b1, max(b0, p0)) - b0, max(b0, min(b1, p1)) - b0  # perturbed, in block
        h = x[b0:b1]
        node_at, param_at = 0, 0
        for l in range(shapes.shape[0]):
            n_out, n_in = shapes[l, 0], shapes[l, 1]
            if decorrelated:
                blas.matmul(h, decorrelation[l], True, inputs[l][b0:b1], cblas)
                h = inputs[l][b0:b1]
            out = hidden[l][b0:b1]
            if node_target:
                part = np.zeros((b1 - b0, n_out))
                part[t0:t1] = node_noise[b0 + t0 - p0:b0 + t1 - p0, node_at:node_at + n_out]
                affine_block(layers[l], n_out, h, part, empty, out, cblas)
            else:
                affine_block(layers[l], n_out, h, empty, empty, out, cblas)
                if counters.shape[0]:
                    add_code_perturbation(h, key, counters[b0:b1], param_at, amplitude,
                                          n_out, out)
                elif weight_noise.shape[0]:
                    add_weight_perturbation(
                        h[t0:t1], weight_noise[b0 + t0 - p0:b0 + t1 - p0,
                                               param_at:param_at + n_out * (n_in + 1)],
                        n_out, out[t0:t1])
                if zero_before:
                    add_zero_weight_perturbation(h[:t0], out[:t0])
            if keep:
                preactivations[l][b0:b1] = out
            _activate(l, acts, neurons, out, events)
            h = out
            node_at += n_out
            param_at += n_out * (n_in + 1)


@njit(cache=True, nogil=True)
def _activate(l, acts, neurons, out, events):
    """Layer ``l``'s activation over its block of outputs ``out``, in place: compiled
    code (:func:`devsim.activations.apply_in_place`; ``acts`` holds every layer's code
    and its parameter), or a device neuron's pass
    (:class:`devsim.activations.CompiledNeuron`; ``neurons`` holds every layer's
    address, ints, floats and state), whose events it adds to ``events[l]``."""
    codes, parameters = acts
    if codes[l] != DEVICE_NEURON:
        apply_in_place(codes[l], out, parameters[l])
        return
    addresses, ints, floats, states = neurons
    call_void(addresses[l], (out, np.int64(out.shape[0]), np.int64(out.shape[1]), ints[l],
                             floats[l], states[l]))
    events[l] += ints[l][0]


@njit(cache=True, nogil=True)
def _gather(x_data, y_data, samples, x, y):
    """The window's samples into the first rows of the work arrays ``x`` and ``y``."""
    for t in range(samples.shape[0]):
        x[t] = x_data[samples[t]]
        y[t] = y_data[samples[t]]


@njit(cache=True, nogil=True)
def _layer_input(l, x, inputs, hidden):
    """What layer ``l`` took in :func:`_forward`'s pass: R_l h where the chip has
    decorrelation matrices (``inputs[l]``), else the data (``x``) or the layer below's
    output."""
    if inputs[l].shape[0] > 0:
        return inputs[l]
    return x if l == 0 else hidden[l - 1]


@njit(cache=True, nogil=True)
def _layer_gradient(shapes, signal, x, inputs, hidden, steps, gradient, cblas):
    """:func:`trainer.base.layer_gradient` of ``signal`` (steps, nodes) with the layer
    inputs of the window's first ``steps`` probes (:func:`_layer_input`)."""
    node_at, param_at = 0, 0
    for l in range(shapes.shape[0]):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        w = gradient[param_at:param_at + n_out * n_in].reshape((n_out, n_in))
        b = gradient[param_at + n_out * n_in:param_at + n_out * (n_in + 1)]
        correlate(signal[:steps, node_at:node_at + n_out],
                  _layer_input(l, x, inputs, hidden)[:steps], w, b, cblas)
        node_at += n_out
        param_at += n_out * (n_in + 1)


@njit(cache=True, nogil=True)
def _optimizer_step(kind, hyper, lr, factor, gradient, velocity, second, count, step,
                    new_velocity, new_second):
    """trainer.optim's step for ``gradient`` into ``step`` and the state it would leave
    into ``new_velocity``/``new_second`` (committed by the caller), in the same
    operations: clipping by global norm (hyper[4] > 0), the core (0 sgd, 1 momentum with
    hyper[0] = beta and hyper[1] = Nesterov, 2 adam with hyper[0..2] = b1, b2, eps), then
    the schedule's ``factor`` (NaN: a constant schedule, ``lr`` inside the core)."""
    clip_norm = hyper[4]
    scale = 1.0
    clipped = False
    if clip_norm > 0.0:
        g_norm = norm(gradient)
        if g_norm > clip_norm:
            scale, clipped = clip_norm / g_norm, True
    core_lr = lr if math.isnan(factor) else 1.0
    if kind == 2:  # Adam's bias corrections, by libm's pow as Python's float ** takes it
        first = 1 - math.pow(hyper[0], float(count + 1))
        second_moment = 1 - math.pow(hyper[1], float(count + 1))
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
            mu_hat = mu / first
            nu_hat = nu / second_moment
            d = -core_lr * mu_hat / (np.sqrt(nu_hat) + eps)
        step[i] = d if math.isnan(factor) else factor * d


@njit(cache=True, nogil=True)
def _update(layers, cost, gradient, optimizer, stats, w, probes):
    """The training loop's end of window ``w`` of a call: the optimizer's step from
    ``gradient``, written to the layers unless the cost, the estimate or the step is not
    finite; ``stats[w]`` gets (cost, estimate norm, update norm or NaN, skipped, probes).
    True where the step was written.

    ``optimizer``: its kind (0 sgd, 1 momentum, 2 adam), hyper-parameters (see
    :func:`_optimizer_step`), rate, each window's schedule factor, state (velocity or
    first moment, second moment: changed in place), the updates applied before the call
    (a call stops at its first unwritten window, so window w follows w more), and work
    arrays for the step and the state it would leave."""
    opt_kind, hyper, lr, factors, velocity, second, count, step, new_velocity, new_second = \
        optimizer
    estimate_norm = norm(gradient)
    update_norm = np.nan
    written = False
    if np.isfinite(cost) and np.isfinite(estimate_norm):
        _optimizer_step(opt_kind, hyper, lr, factors[w], gradient, velocity, second,
                        count + w, step, new_velocity, new_second)
        update_norm = norm(step)
        if np.isfinite(update_norm):
            written = True
            if opt_kind > 0:
                velocity[:] = new_velocity
            if opt_kind == 2:
                second[:] = new_second
            at = 0
            for l in range(len(layers)):
                flat = layers[l]
                for i in range(flat.shape[0]):
                    flat[i] += step[at + i]
                at += flat.shape[0]
        else:
            update_norm = np.nan
    stats[w, 0], stats[w, 1], stats[w, 2] = cost, estimate_norm, update_norm
    stats[w, 3], stats[w, 4] = not written, probes
    return written


@njit(cache=True, nogil=True)
def mgd_windows(layers, shapes, acts, decorrelation, neurons, events, loss, x_data, y_data, idx,
                new, window, node_target, discrete, key, clock, tau_p, rms, eps2, a_hp, hp_state,
                lowpass, weights, decay, integral, normalize, scale, clip_change, optimizer,
                buffers, inputs, hidden, stats, cblas):
    """Windows of MGD (:class:`trainer.mgd.MGD`), each followed by the optimizer's step,
    until one is skipped or ``len(idx) // window`` have run; returns how many ran.
    Window w presents samples ``idx[w*T:(w+1)*T]`` and starts at perturbation step
    ``clock + w*T``; the estimator's filter and integral (``hp_state``, ``integral``)
    and the optimizer's state (:func:`_update`) change in place."""
    x, y, costs, codes, signal, change, gradient, counters = buffers
    n_params = gradient.shape[0]
    perturbed = np.array([0, window])
    no_noise = np.empty((0, 0))
    for w in range(idx.shape[0] // window):
        s0 = w * window
        _gather(x_data, y_data, idx[s0:s0 + window], x, y)
        rows = window
        if discrete:  # a baseline per new sample and at the window's start
            for t in range(window):
                if t == 0 or new[s0 + t]:
                    x[rows] = x[t]
                    y[rows] = y[t]
                    rows += 1
        if node_target:
            rademacher_codes(key, clock + s0, tau_p, rms, codes)
        else:  # each probe's code made inside its products, from its first counter
            for t in range(rows):
                counters[t] = (clock + s0 + t) // tau_p * n_params if t < window else -1
        _forward(layers, shapes, acts, decorrelation, neurons, events[w], codes, no_noise,
                 perturbed, False, key, counters, rms, rows, x, inputs, hidden, hidden, False,
                 cblas)
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
        if node_target:  # homodyne detection: C~ theta~ / eps^2
            for t in range(window):
                weighted = weights[t] * change[t]
                for k in range(codes.shape[1]):
                    signal[t, k] = weighted * codes[t, k] / eps2
            _layer_gradient(shapes, signal, x, inputs, hidden, window, gradient, cblas)
        else:  # the same, as +-(C~ |theta~| / eps^2) on each code's sign
            for t in range(window):
                change[t] = weights[t] * change[t] * rms / eps2
            correlate_codes(key, counters[:window], change[:window], gradient)
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
        if not _update(layers, cost, gradient, optimizer, stats, w, rows):
            return w + 1
    return idx.shape[0] // window


@njit(cache=True, nogil=True)
def np_windows(layers, shapes, acts, decorrelation, neurons, events, loss, x_data, y_data, idx,
               batch, activity, per_layer, noise, noise_mean, variance, decorrelation_lr, optimizer,
               buffers, inputs, hidden, preactivations, stats, cblas):
    """Windows of node perturbation (:class:`trainer.node_perturbation.NodePerturbation`,
    one draw: a clean pass, then one noisy pass, or with ``per_layer`` one per layer),
    each followed by the optimizer's step, until one is skipped or ``len(idx) // batch``
    have run; returns how many ran. ``np`` correlates the injected noise; with
    ``activity`` the measured change of the pre-activations (``anp``; with ``per_layer``
    ``inp``, each pass's change on its own layer). Window w's P noisy passes carry rows
    ``w*P*B..(w+1)*P*B`` of ``noise`` (already scaled; zero outside a pass's layer).
    With ``decorrelation_lr`` > 0 the decorrelation rule then moves each R_l by the
    clean pass's inputs (DNP, DANP, DINP), before the step."""
    x, y, costs, signal, d_cost, norms, gradient = buffers
    n_layers = shapes.shape[0]
    no_codes = np.empty(0, dtype=np.int64)
    n_nodes = noise.shape[1]
    passes = n_layers if per_layer else 1
    rows = (1 + passes) * batch
    perturbed = np.array([batch, rows])
    for w in range(idx.shape[0] // batch):
        s0, n0 = w * batch, w * passes * batch
        _gather(x_data, y_data, idx[s0:s0 + batch], x, y)
        for k in range(1, 1 + passes):
            x[k * batch:(k + 1) * batch] = x[:batch]
            y[k * batch:(k + 1) * batch] = y[:batch]
        _forward(layers, shapes, acts, decorrelation, neurons, events[w],
                 noise[n0:n0 + passes * batch], np.empty((0, 0)), perturbed, False,
                 np.uint64(0), no_codes, 0.0, rows, x, inputs, hidden, preactivations,
                 activity, cblas)
        loss_rows(loss, hidden[n_layers - 1][:rows], y[:rows], costs[:rows])
        node_at = 0
        for k in range(passes):  # pass k's signal on its nodes: all, or layer k's
            r0 = (k + 1) * batch
            lo, hi = (node_at, node_at + shapes[k, 0]) if per_layer else (0, n_nodes)
            for t in range(batch):
                d_cost[t] = costs[r0 + t] - costs[t]
            if activity:  # dC n da / |da|^2, da the measured change of the pre-activations
                at = lo
                for l in range(k if per_layer else 0, k + 1 if per_layer else n_layers):
                    for t in range(batch):
                        for j in range(shapes[l, 0]):
                            signal[t, at + j] = (preactivations[l][r0 + t, j]
                                                 - preactivations[l][t, j])
                    at += shapes[l, 0]
                row_squares(signal[:batch, lo:hi], norms)
                for t in range(batch):
                    factor = d_cost[t] * (hi - lo) / norms[t] if norms[t] > 0.0 else 0.0
                    for j in range(lo, hi):
                        signal[t, j] = factor * signal[t, j]
            else:  # dC (eps - E eps) / v
                for t in range(batch):
                    for j in range(n_nodes):
                        signal[t, j] = d_cost[t] * (noise[n0 + t, j] - noise_mean) / variance
            node_at = hi
        _layer_gradient(shapes, signal, x, inputs, hidden, batch, gradient, cblas)
        if decorrelation_lr > 0.0:
            for l in range(n_layers):
                r = decorrelation[l]
                delta = np.empty_like(r)
                decorrelation_delta(inputs[l][:batch], r, decorrelation_lr, delta, cblas)
                r += delta
        for i in range(gradient.shape[0]):
            gradient[i] = (0.0 + gradient[i]) / batch
        if not _update(layers, mean(costs[:batch]), gradient, optimizer, stats, w, rows):
            return w + 1
    return idx.shape[0] // batch


@njit(cache=True, nogil=True)
def wp_windows(layers, shapes, acts, decorrelation, neurons, events, loss, x_data, y_data, idx,
               batch, noise, key, first_row, sigma, scale, optimizer, buffers, inputs, hidden,
               stats, cblas):
    """Windows of weight perturbation (:class:`trainer.weight_perturbation.WeightPerturbation`:
    a clean and a moved pass of each row), each followed by the optimizer's step, until
    one is skipped or ``len(idx) // batch`` have run; returns how many ran. Window w's
    moved pass carries ``noise[w]`` (batch, parameters; already scaled) or, with
    ``noise`` of no windows, the +-``sigma`` sign codes of rows ``first_row + w*batch``
    on (made where they are used); its correlation is divided by ``scale``."""
    x, y, costs, change, gradient, counters = buffers
    n_layers, n_params = shapes.shape[0], gradient.shape[0]
    signed = noise.shape[0] == 0
    no_nodes, no_noise = np.empty((0, 0)), np.empty((0, 0))
    perturbed = np.array([batch, 2 * batch])
    for w in range(idx.shape[0] // batch):
        s0 = w * batch
        _gather(x_data, y_data, idx[s0:s0 + batch], x, y)
        x[batch:2 * batch] = x[:batch]
        y[batch:2 * batch] = y[:batch]
        if signed:
            for t in range(2 * batch):
                counters[t] = (first_row + s0 + t - batch) * n_params if t >= batch else -1
        _forward(layers, shapes, acts, decorrelation, neurons, events[w], no_nodes,
                 no_noise if signed else noise[w], perturbed, True, key,
                 counters[:2 * batch] if signed else counters[:0], sigma, 2 * batch, x,
                 inputs, hidden, hidden, False, cblas)
        loss_rows(loss, hidden[n_layers - 1][:2 * batch], y[:2 * batch], costs[:2 * batch])
        for t in range(batch):
            change[t] = costs[batch + t] - costs[t]
        if signed:  # change * (+-sigma) is +-(change * sigma) exactly
            for t in range(batch):
                change[t] = change[t] * sigma
            correlate_codes(key, counters[batch:2 * batch], change[:batch], gradient)
        else:
            weighted_rows(noise[w], change[:batch], gradient)
        for i in range(gradient.shape[0]):
            gradient[i] = gradient[i] / scale
        if not _update(layers, mean(costs[:batch]), gradient, optimizer, stats, w, 2 * batch):
            return w + 1
    return idx.shape[0] // batch


@njit(cache=True, nogil=True)
def backprop_gradient(layers, shapes, acts, loss, x, y, hidden, preactivations, deltas,
                      gradient, cblas):
    """Gradient of the mean cost over the rows of ``x`` by backpropagation through a
    recorded forward pass of the exact float layers (``acts``: their activation codes
    and parameters): ``hidden[l]`` each layer's output,
    ``preactivations[l]`` its pre-activation (rows first); ``deltas[l]`` (rows, n_out)
    work space. The reference model's steps in its order
    (:meth:`devsim.reference.IdealModel.gradient`); no input gradient for the first layer,
    whose input is the data."""
    n_layers, rows = shapes.shape[0], x.shape[0]
    codes, parameters = acts
    delta = deltas[n_layers - 1][:rows]
    loss_gradient_rows(loss, hidden[n_layers - 1][:rows], y, delta)
    param_end = gradient.shape[0]
    for l in range(n_layers - 1, -1, -1):
        n_out, n_in = shapes[l, 0], shapes[l, 1]
        z, h = preactivations[l], hidden[l]
        for t in range(rows):
            for j in range(n_out):
                scaled = delta[t, j] / rows if l == n_layers - 1 else delta[t, j]
                delta[t, j] = scaled * derivative(codes[l], z[t, j], h[t, j],
                                                  parameters[l])
        param_at = param_end - n_out * (n_in + 1)
        w_grad = gradient[param_at:param_at + n_out * n_in].reshape((n_out, n_in))
        inputs = x if l == 0 else hidden[l - 1][:rows]
        correlate(delta, inputs, w_grad, gradient[param_at + n_out * n_in:param_end], cblas)
        if l > 0:
            w = layers[l][:n_out * n_in].reshape((n_out, n_in))
            below = deltas[l - 1][:rows]
            blas.matmul(delta, w, False, below, cblas)
            delta = below
        param_end = param_at


@njit(cache=True, nogil=True)
def backprop_windows(layers, shapes, acts, decorrelation, neurons, events, loss, x_data, y_data,
                     idx, batch, optimizer, buffers, inputs, hidden, preactivations, deltas, stats,
                     cblas):
    """Windows of reference backpropagation (:class:`trainer.backprop.Backprop`): the
    batch through the chip's layers, its costs, :func:`backprop_gradient` and the
    optimizer's step, until one is skipped or ``len(idx) // batch`` have run; returns
    how many ran. Not through decorrelation matrices: ``decorrelation`` and ``inputs``
    hold empty arrays."""
    x, y, costs, gradient = buffers
    n_layers = shapes.shape[0]
    none = np.empty((0, 0))
    no_codes = np.empty(0, dtype=np.int64)
    nothing_perturbed = np.array([0, 0])
    for w in range(idx.shape[0] // batch):
        s0 = w * batch
        _gather(x_data, y_data, idx[s0:s0 + batch], x, y)
        _forward(layers, shapes, acts, decorrelation, neurons, events[w], none, none,
                 nothing_perturbed, False, np.uint64(0), no_codes, 0.0, batch, x, inputs,
                 hidden, preactivations, True, cblas)
        loss_rows(loss, hidden[n_layers - 1][:batch], y[:batch], costs[:batch])
        backprop_gradient(layers, shapes, acts, loss, x[:batch], y[:batch], hidden,
                          preactivations, deltas, gradient, cblas)
        if not _update(layers, mean(costs[:batch]), gradient, optimizer, stats, w, batch):
            return w + 1
    return idx.shape[0] // batch

"""devsim's training methods in plain NumPy, one update window at a time: the baselines
of :mod:`bench.bench_training`.

What a user who knows NumPy well would write instead of devsim, on the ideal float
network: the parameters are fixed within an update window, so a window is a few matrix
products over all of its probes at once (a ``(2B, n)`` operand per layer: B baseline or
clean probes, then B perturbed ones), activations in place, perturbations and noise from
a :class:`numpy.random.Generator`. The baseline and the perturbed probe of a sample see the
same input, so the first layer's product (and decorrelation product) is made once and
shared; devsim makes it per probe, as a chip would. Every method assumes ``tau_x = 1``
(a new sample every hardware step) and ``tau_p = 1``, and counts hardware steps as
devsim does (every probe, baselines included).

The ``estimate`` of every method takes its perturbations as an argument, so the bench
can hand it the draws devsim made and compare the estimates; ``window`` draws them,
estimates, and applies the optimizer's step.
"""
from __future__ import annotations

import numpy as np

from devices import mcu
from devices.mcu_reference import multiply_by_quantized_multiplier


# ------------------------------------------------------------------ the network
def sigmoid_(z):
    """The logistic function in place (NumPy's exp is vectorised; its tanh is slower)."""
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    return np.reciprocal(z, out=z)


def relu_(z):
    return np.maximum(z, 0.0, out=z)


def identity_(z):
    return z


ACTIVATIONS = {"sigmoid": sigmoid_, "relu": relu_, "identity": identity_}


def derivative_from_output(kind: str, h: np.ndarray) -> np.ndarray | float:
    """d act / dz from the activation's output h (backpropagation)."""
    if kind == "sigmoid":
        return h * (1.0 - h)
    if kind == "relu":
        return h > 0.0
    return 1.0


def costs(loss: str, out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row cost: mean squared error over the outputs, or softmax cross-entropy."""
    if loss == "mse":
        d = out - y
        return np.einsum("ti,ti->t", d, d) / out.shape[1]
    z = out - out.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(z).sum(axis=1))
    return log_total * y.sum(axis=1) - np.einsum("ti,ti->t", y, z)


def cost_changes(loss: str, out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(costs of the first B rows of ``out``, cost changes of the last B against them)."""
    rows = len(y)
    base = costs(loss, out[:rows], y)
    return base, costs(loss, out[rows:], y) - base


def cost_gradient(loss: str, out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d cost / d outputs per row."""
    if loss == "mse":
        return 2.0 * (out - y) / out.shape[1]
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return p * y.sum(axis=1, keepdims=True) - y


class Model:
    """A dense network over one flat parameter vector in devsim's layout
    (``[W1.ravel(), b1, W2.ravel(), b2, ...]``), optionally with a decorrelation matrix
    in front of every layer."""

    def __init__(self, flat, shapes, activations, loss, decorrelation=False):
        self.flat = np.array(flat, dtype=np.float64)
        self.shapes = [tuple(s) for s in shapes]
        self.kinds = list(activations)
        self.acts = [ACTIVATIONS[a] for a in activations]
        self.loss = loss
        sizes = [n_out * (n_in + 1) for n_out, n_in in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.node_offsets = np.concatenate([[0], np.cumsum([s[0] for s in self.shapes])])
        self.w = [self.flat[o:o + n * m].reshape(n, m)
                  for o, (n, m) in zip(self.offsets, self.shapes)]
        self.b = [self.flat[o + n * m:o + n * (m + 1)]
                  for o, (n, m) in zip(self.offsets, self.shapes)]
        self.r = [np.eye(m) for _, m in self.shapes] if decorrelation else None

    @property
    def n_nodes(self) -> int:
        return int(self.node_offsets[-1])

    def forward(self, x):
        h = x
        for l, act in enumerate(self.acts):
            if self.r is not None:
                h = h @ self.r[l].T
            h = act(h @ self.w[l].T + self.b[l])
        return h

    def mean_cost(self, x, y) -> float:
        return float(costs(self.loss, self.forward(x), y).mean())

    def node_pairs(self, x, noise, keep_preactivations=False):
        """The rows of ``x`` twice: unperturbed, then with ``noise`` (B, n_nodes) on the
        pre-activations; outputs (2B, n_out), each layer's input (layer 0: B rows shared,
        later layers 2B rows) and, if asked, pre-activations (2B rows)."""
        batch = len(x)
        h, inputs, pre = x, [], []
        for l, act in enumerate(self.acts):
            n0, n1 = self.node_offsets[l], self.node_offsets[l + 1]
            if self.r is not None:
                h = h @ self.r[l].T
            inputs.append(h)
            if l == 0:
                shared = h @ self.w[0].T
                shared += self.b[0]
                z = np.empty((2 * batch, n1 - n0))
                z[:batch] = shared
                np.add(shared, noise[:, n0:n1], out=z[batch:])
            else:
                z = h @ self.w[l].T
                z += self.b[l]
                z[batch:] += noise[:, n0:n1]
            if keep_preactivations:
                pre.append(z)
                z = z.copy()
            h = act(z)
        return h, inputs, pre

    def weight_pairs(self, x, perturbation):
        """The rows of ``x`` twice: with the parameters as they are, then row t with every
        parameter moved by ``perturbation[t]`` (B, n_params); outputs (2B, n_out)."""
        batch = len(x)
        h = x
        for l, act in enumerate(self.acts):
            (n_out, n_in), o = self.shapes[l], self.offsets[l]
            dw = perturbation[:, o:o + n_out * n_in].reshape(batch, n_out, n_in)
            db = perturbation[:, o + n_out * n_in:o + n_out * (n_in + 1)]
            if l == 0:
                shared = h @ self.w[0].T
                shared += self.b[0]
                z = np.empty((2 * batch, n_out))
                z[:batch] = shared
                z[batch:] = shared
                moved = h
            else:
                z = h @ self.w[l].T
                z += self.b[l]
                moved = h[batch:]
            z[batch:] += np.einsum("tji,ti->tj", dw, moved)
            z[batch:] += db
            h = act(z)
        return h

    def layer_gradient(self, signal, inputs, batch_rows: slice) -> np.ndarray:
        """Flat estimate from per-probe node signals (B, n_nodes) and the layer inputs
        (rows ``batch_rows`` of the 2B-row inputs of layers after the first)."""
        grad = np.empty_like(self.flat)
        for l, ((n_out, n_in), o) in enumerate(zip(self.shapes, self.offsets)):
            s = signal[:, self.node_offsets[l]:self.node_offsets[l + 1]]
            h = inputs[l] if l == 0 else inputs[l][batch_rows]
            np.matmul(s.T, h, out=grad[o:o + n_out * n_in].reshape(n_out, n_in))
            grad[o + n_out * n_in:o + n_out * (n_in + 1)] = s.sum(axis=0)
        return grad


class Samples:
    """Training rows in shuffled epochs (what a NumPy loop draws its windows from)."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self.order, self.at = rng.permutation(n), 0

    def next(self, rows: int) -> np.ndarray:
        if self.at + rows > len(self.order):
            self.order = np.concatenate([self.order[self.at:], self.rng.permutation(self.n)])
            self.at = 0
        self.at += rows
        return self.order[self.at - rows:self.at]


# ------------------------------------------------------------------ optimizers
class SGD:
    def __init__(self, lr: float):
        self.lr = lr

    def step(self, params, grad):
        grad *= -self.lr
        params += grad


class Adam:
    def __init__(self, lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.mu = self.nu = None
        self.count = 0

    def step(self, params, grad):
        if self.mu is None:
            self.mu, self.nu = np.zeros_like(params), np.zeros_like(params)
        self.count += 1
        self.mu *= self.b1
        self.mu += (1.0 - self.b1) * grad
        self.nu *= self.b2
        grad *= grad
        grad *= 1.0 - self.b2
        self.nu += grad
        denominator = np.sqrt(self.nu / (1.0 - self.b2 ** self.count))
        denominator += self.eps
        params -= (self.lr / (1.0 - self.b1 ** self.count)) * self.mu / denominator


def optimizer(kind: str, lr: float):
    return {"sgd": SGD, "adam": Adam}[kind](lr)


# ------------------------------------------------------------------ methods
class Method:
    """An update-window method on a :class:`Model`: ``window(x, y)`` trains on one window
    of samples and returns the hardware steps devsim would count for it."""

    def __init__(self, model: Model, opt, rng: np.random.Generator):
        self.model, self.opt, self.rng = model, opt, rng

    def draw(self, rows: int) -> np.ndarray:
        raise NotImplementedError

    def estimate(self, x, y, draws) -> np.ndarray:
        raise NotImplementedError

    def steps(self, rows: int) -> int:
        return 2 * rows

    def mean_cost(self, x, y) -> float:
        """Mean cost of the rows on the network as trained so far."""
        return self.model.mean_cost(x, y)

    def finite(self) -> bool:
        """Whether every parameter is still finite (training has not diverged)."""
        return bool(np.isfinite(self.model.flat).all())

    def window(self, x, y) -> int:
        self.opt.step(self.model.flat, self.estimate(x, y, self.draw(len(x))))
        return self.steps(len(x))


class MGD(Method):
    """Discrete MGD with random +-eps/sqrt(K) codes on the nodes or the parameters: a
    baseline probe per sample, the window integrator, the estimate normalised by K/T."""

    def __init__(self, model, opt, rng, target: str, epsilon: float):
        super().__init__(model, opt, rng)
        self.target, self.epsilon = target, epsilon
        self.channels = model.n_nodes if target == "nodes" else len(model.flat)
        self.amplitude = epsilon / np.sqrt(self.channels)

    def draw(self, rows):
        bits = np.unpackbits(np.frombuffer(self.rng.bytes(-(-rows * self.channels // 8)),
                                           dtype=np.uint8), count=rows * self.channels)
        codes = bits.reshape(rows, self.channels) * (2.0 * self.amplitude)
        codes -= self.amplitude
        return codes

    def estimate(self, x, y, codes):
        """The window's estimate (on the nodes, ``codes`` become the signal in place)."""
        rows = len(x)
        if self.target == "nodes":
            out, inputs, _ = self.model.node_pairs(x, codes)
        else:
            out = self.model.weight_pairs(x, codes)
        _, change = cost_changes(self.model.loss, out, y)
        weight = change * (self.channels / rows / self.epsilon ** 2)
        if self.target == "weights":
            return weight @ codes
        codes *= weight[:, None]
        return self.model.layer_gradient(codes, inputs, slice(rows, None))


class MGDPerStep(MGD):
    """MGD on the nodes as written, one hardware step at a time: each sample's baseline
    inference, its perturbed inference, and the estimate's outer products accumulated
    step by step (what the windowed form batches)."""

    def _inference(self, x, code):
        m, inputs, h = self.model, [], x
        for l, act in enumerate(m.acts):
            inputs.append(h)
            z = m.w[l] @ h
            z += m.b[l]
            if code is not None:
                z += code[m.node_offsets[l]:m.node_offsets[l + 1]]
            h = act(z)
        return h, inputs

    def estimate(self, x, y, codes):
        m = self.model
        grad = np.zeros_like(m.flat)
        scale = self.channels / len(x) / self.epsilon ** 2
        for t in range(len(x)):
            base, _ = self._inference(x[t], None)
            out, inputs = self._inference(x[t], codes[t])
            c = costs(m.loss, np.stack([base, out]), np.stack([y[t], y[t]]))
            signal = codes[t] * ((c[1] - c[0]) * scale)
            for l, ((n_out, n_in), o) in enumerate(zip(m.shapes, m.offsets)):
                s = signal[m.node_offsets[l]:m.node_offsets[l + 1]]
                grad[o:o + n_out * n_in] += np.outer(s, inputs[l]).ravel()
                grad[o + n_out * n_in:o + n_out * (n_in + 1)] += s
        return grad


class NodePerturbation(Method):
    """NP (cost change times the injected Gaussian noise) or ANP (times the measured
    pre-activation change, scaled by n / |da|^2), a clean and a noisy pass per sample,
    with the decorrelation rule where the model has R matrices."""

    def __init__(self, model, opt, rng, kind: str, sigma: float, decorrelation_lr=0.0):
        super().__init__(model, opt, rng)
        self.kind, self.sigma, self.decorrelation_lr = kind, sigma, decorrelation_lr

    def draw(self, rows):
        return self.sigma * self.rng.standard_normal((rows, self.model.n_nodes))

    def estimate(self, x, y, noise):
        rows = len(x)
        out, inputs, pre = self.model.node_pairs(x, noise, keep_preactivations=self.kind == "anp")
        _, change = cost_changes(self.model.loss, out, y)
        if self.kind == "np":
            signal = noise * (change / self.sigma ** 2)[:, None]
        else:
            signal = np.concatenate([z[rows:] - z[:rows] for z in pre], axis=1)
            norm2 = np.einsum("ti,ti->t", signal, signal)
            scale = np.divide(change * signal.shape[1], norm2, out=np.zeros_like(norm2),
                              where=norm2 > 0.0)
            signal *= scale[:, None]
        grad = self.model.layer_gradient(signal, inputs, slice(None, rows))
        grad /= rows
        if self.decorrelation_lr:
            for l, r in enumerate(self.model.r):
                z = inputs[l] if l == 0 else inputs[l][:rows]
                c = z.T @ z
                c /= rows
                np.fill_diagonal(c, 0.0)
                r -= self.decorrelation_lr * (c @ r)
        return grad


class WeightPerturbation(Method):
    """WP: i.i.d. Gaussian (or, with ``signs``, +-sigma) perturbations of every
    parameter, one per sample; the mean of dC psi / sigma^2."""

    def __init__(self, model, opt, rng, sigma: float, signs: bool = False):
        super().__init__(model, opt, rng)
        self.sigma, self.signs = sigma, signs

    def draw(self, rows):
        shape = (rows, len(self.model.flat))
        if not self.signs:
            return self.sigma * self.rng.standard_normal(shape)
        n = shape[0] * shape[1]  # eight signs a random byte
        bits = np.unpackbits(np.frombuffer(self.rng.bytes((n + 7) // 8), np.uint8), count=n)
        return np.where(bits.reshape(shape), -self.sigma, self.sigma)

    def estimate(self, x, y, psi):
        rows = len(x)
        _, change = cost_changes(self.model.loss, self.model.weight_pairs(x, psi), y)
        return change @ psi / (self.sigma ** 2 * rows)


class Backprop(Method):
    """Minibatch backpropagation (one step per sample, as devsim counts it)."""

    def draw(self, rows):
        return None

    def steps(self, rows):
        return rows

    def estimate(self, x, y, draws=None):
        m = self.model
        hs = [x]
        for l, act in enumerate(m.acts):
            z = hs[-1] @ m.w[l].T
            z += m.b[l]
            hs.append(act(z))
        delta = cost_gradient(m.loss, hs[-1], y) / len(x)
        grad = np.empty_like(m.flat)
        for l in reversed(range(len(m.acts))):
            (n_out, n_in), o = m.shapes[l], m.offsets[l]
            delta = delta * derivative_from_output(m.kinds[l], hs[l + 1])
            np.matmul(delta.T, hs[l], out=grad[o:o + n_out * n_in].reshape(n_out, n_in))
            grad[o + n_out * n_in:o + n_out * (n_in + 1)] = delta.sum(axis=0)
            if l:
                delta = delta @ m.w[l]
        return grad


class QZO(Method):
    """Quantized zeroth-order node perturbation on an int8 network (TFLM arithmetic):
    a clean pass, then per layer ``queries`` perturbations of +-mu LSBs on the active
    units of each sample's output, the later layers rerun from there (the layer's own
    product is the clean pass's), forward differences, the least-mean-squared-error
    scale; SGD steps rounded to whole LSBs. The int8 products are float64 GEMMs on
    integer values (exact), the requantization gemmlowp's, in int64 NumPy."""

    def __init__(self, layers, activations, loss, lr, rng, queries: int, mu: int):
        super().__init__(None, None, rng)
        self.layers, self.relu = layers, [a == "relu" for a in activations]
        self.loss, self.lr, self.queries, self.mu = loss, lr, queries, mu
        self.w = [d.w_q.astype(np.float64) for d in layers]
        self.b = [d.b_q.astype(np.float64) for d in layers]

    def _layer(self, l, q):
        d = self.layers[l]
        acc = (q - d.input_q.zero_point) @ self.w[l].T
        acc += self.b[l]
        y = multiply_by_quantized_multiplier(acc.astype(np.int64), d.multiplier,
                                             d.shift) + d.output_q.zero_point
        y = np.clip(y, d.act_min, d.act_max)
        return np.maximum(y, d.output_q.zero_point) if self.relu[l] else y

    def _run(self, first, q, y):
        for l in range(first, len(self.layers)):
            q = self._layer(l, q)
        return costs(self.loss, mcu.dequantize(q, *self.layers[-1].output_q), y)

    def steps(self, rows):
        return rows * (1 + self.queries * len(self.layers))

    def mean_cost(self, x, y):
        return float(self._run(0, mcu.quantize(x, *self.layers[0].input_q).astype(np.float64),
                               y).mean())

    def finite(self):
        return True  # integers, clamped to their ranges

    def draw(self, rows):
        return [2 * self.rng.integers(0, 2, (rows, self.queries, n), dtype=np.int8) - 1
                for n in (d.shape[0] for d in self.layers)]

    def estimate(self, x, y, signs):
        rows, n = len(x), self.queries
        q = [mcu.quantize(x, *self.layers[0].input_q).astype(np.float64)]
        for l in range(len(self.layers)):
            q.append(self._layer(l, q[-1]).astype(np.float64))
        clean = costs(self.loss, mcu.dequantize(q[-1], *self.layers[-1].output_q), y)
        grads = []
        for l, d in enumerate(self.layers):
            z_out = d.output_q.zero_point
            active = q[l + 1] != z_out if l + 1 < len(self.layers) else np.ones_like(q[l + 1])
            u = signs[l] * active[:, None, :]
            moved = np.clip(q[l + 1][:, None, :] + self.mu * u, d.act_min, d.act_max)
            if self.relu[l]:
                moved = np.maximum(moved, z_out)
            targets = np.repeat(y, n, axis=0)
            plus = (self._run(l + 1, moved.reshape(rows * n, -1), targets)
                    if l + 1 < len(self.layers) else
                    costs(self.loss, mcu.dequantize(moved.reshape(rows * n, -1), *d.output_q),
                          targets))
            change = plus.reshape(rows, n) - clean[:, None]
            g = np.einsum("bq,bqk->bk", change, u) / (n * self.mu)
            g *= (n / (n + np.maximum(active.sum(axis=1), 1) - 1))[:, None]
            g /= float(np.float32(d.output_q.scale))
            inputs = x if l == 0 else mcu.dequantize(q[l], *d.input_q)
            grads += [(g.T @ inputs).ravel() / rows, g.sum(axis=0) / rows]
        return np.concatenate(grads)

    def window(self, x, y):
        grad = self.estimate(x, y, self.draw(len(x)))
        at = 0
        for l, d in enumerate(self.layers):
            lsb = d.param_lsb
            step = np.rint(-self.lr * grad[at:at + len(lsb)] / lsb)
            n_w = d.shape[0] * d.shape[1]
            self.w[l] = np.clip(self.w[l] + step[:n_w].reshape(d.shape), -mcu.WEIGHT_MAX,
                                mcu.WEIGHT_MAX)
            self.b[l] = np.clip(self.b[l] + step[n_w:], mcu.INT32_MIN, mcu.INT32_MAX)
            at += len(lsb)
        return self.steps(len(x))


# ------------------------------------------------------------------ arithmetic
def flops_per_step(method: str, shapes, rows: int, queries: int = 1) -> float:
    """Floating-point operations of the matrix products per counted hardware step, as the
    methods above make them (2 m n k per product; element-wise work not counted).

    ``method`` is ``mgd_nodes``, ``np`` (a clean or baseline and a perturbed pass per
    sample, first layer shared, plus the gradient products), ``danp`` (that plus the
    decorrelation products, forward and the rule's two), ``mgd_weights``, ``wp``
    (per-probe weight products on top), ``backprop`` or ``qzo`` (node perturbation on
    every layer); ``rows`` is the window's samples (the decorrelation rule runs once
    per window)."""
    p = [n_out * n_in for n_out, n_in in shapes]
    d = [n_in * n_in for _, n_in in shapes]
    if method in ("mgd_nodes", "np", "danp"):
        per_sample = 2 * p[0] + 4 * sum(p[1:]) + 2 * sum(p)
        if method == "danp":
            per_sample += 2 * d[0] + 4 * sum(d[1:]) + 2 * sum(d)
            per_window_extra = 2 * sum(n_in ** 3 for _, n_in in shapes)
            return (per_sample + per_window_extra / rows) / 2
        return per_sample / 2
    if method in ("mgd_weights", "wp"):
        n_params = sum(n_out * (n_in + 1) for n_out, n_in in shapes)
        return (4 * p[0] + 6 * sum(p[1:]) + 2 * n_params) / 2
    if method == "backprop":
        return 4 * sum(p) + 2 * sum(p[1:])
    if method == "qzo":
        suffix = sum(2 * queries * sum(p[l + 1:]) for l in range(len(p)))
        return (2 * sum(p) + suffix + 2 * sum(p)) / (1 + queries * len(p))
    raise ValueError(method)

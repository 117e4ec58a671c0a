"""Exact expected learning curves of a linear student trained by GD, NP and WP.

The teacher-student problem of Werfel, Xie & Seung (NIPS 2003; Neural Computation
17(12), 2005), with every formula derived here (the paper text was not available;
see ``research_algos.md`` section 5) and checked against brute-force Monte Carlo in
``tests/test_theory.py``. It is the analytic oracle that perturbative estimators
running on simulated hardware are compared with.

Setup
-----
Teacher ``y* = W* x``, student ``y = W x``, ``W`` of shape (M, N) with ``M =
n_out`` and ``N = n_in``; a fresh ``x ~ N(0, I_N)`` at every step, no bias. With
the deviation ``D = W - W*`` the per-sample loss is ``L = |D x|^2 / 2`` (with the
1/2), and the error measure is

    e_t = E ||D_t||_F^2,

the expectation over inputs and perturbations of all steps so far.  Since
``E_x L = ||D||_F^2 / 2``, the generalization error is ``e_t / 2``.

Update rules (one sample per step, learning rate ``eta``)
---------------------------------------------------------
- GD: ``dW = -eta g x^T`` with ``g = D x`` the output error.
- NP: perturb the output pre-activations by ``xi`` (M entries), observe
  ``dL = L(W x + xi) - L(W x) = xi.g + |xi|^2/2`` and set
  ``dW = -(eta / sigma^2) dL xi x^T``.
- WP: perturb the weights by ``psi`` (M x N entries), observe
  ``dL = L(W + psi) - L(W) = g^T psi x + |psi x|^2/2`` and set
  ``dW = -(eta / sigma^2) dL psi``.
- Sequential (NP or WP): ``xi`` (or ``psi``) has a single nonzero entry, at an
  index drawn uniformly each step; the update formula is unchanged.  Its mean is
  then ``-(eta / M) g x^T`` for NP and ``-(eta / (M N)) g x^T`` for WP.

Parallel perturbations have i.i.d. entries; the single entry of a sequential one is
drawn from the same law.  The law is symmetric with variance ``sigma^2`` and enters
only through ``k4 = E s^4 / sigma^4`` and ``k6 = E s^6 / sigma^6``
(:data:`PERTURBATIONS`): Gaussian (3, 15), Rademacher ``s = +-sigma`` (1, 1),
uniform on ``[-sqrt(3) sigma, sqrt(3) sigma]`` (9/5, 27/7).

Noisy cost readings: hardware measures ``dL`` with an error ``nu``, independent of
everything else, of mean 0 and standard deviation ``cost_noise`` (for two passes
that each read the cost with independent noise of deviation ``s``, ``cost_noise =
sqrt(2) s``).  It leaves ``E dW`` unchanged and adds ``E nu^2 ||xi x^T||^2 / sigma^4``
(NP) or ``E nu^2 ||psi||^2 / sigma^4`` (WP) to ``E ||u||^2``: ``h cost_noise^2 /
sigma^2`` with ``h`` the number of perturbed entries times ``N`` (NP) or times 1 (WP).

The recursion
-------------
Write ``dW = -eta u`` with the step direction ``u``.  Then ``||D + dW||^2 = ||D||^2 -
2 eta <D, u> + eta^2 ||u||^2``.  Inputs and perturbations are fresh each step and
independent of ``D``.  Averaging first over the perturbation (odd moments vanish),
then over ``x`` with the Gaussian moments ``E |D x|^2 = ||D||^2``, ``E |x|^2 |D
x|^2 = (N + 2) ||D||^2``, ``E |x|^2 = N``, ``E |x|^4 = N (N + 2)`` and ``E sum_n
x_n^4 = 3 N``, gives ``E <D, u> = (a / 2) ||D||^2`` and ``E ||u||^2 = b ||D||^2 + f
sigma^2 + h cost_noise^2 / sigma^2``, so that, exactly and for every ``t``,

    e_{t+1} = r e_t + c,   r = 1 - a eta + b eta^2,
    c = eta^2 (f sigma^2 + h cost_noise^2 / sigma^2),

with method constants ``(a, b, f, h)`` derived in the docstrings of
:func:`_gd`, :func:`_np_parallel`, :func:`_wp_parallel` and :func:`_sequential`.
Hence ``e_t = r^t e_0 + c (1 - r^t) / (1 - r)`` and, for ``r < 1``, the floor
``e_inf = c / (1 - r)``, proportional to ``sigma^2`` when costs are read exactly;
with noisy readings it is smallest at ``sigma^4 = h cost_noise^2 / f``.  The mean
error converges iff ``r < 1``, i.e. ``eta < a / b`` (the maximum learning rate);
the transient decays fastest at ``eta = a / (2 b)`` (the optimal learning rate),
where ``1 - r = a^2 / (4 b)``.  For ``eta -> 0`` every method gives ``r = 1 - 2 eta + O(eta^2)``
(parallel) and the curves coincide.

Results (parallel, Gaussian): the maximum rate is ``2 / (N + 2)`` for GD, ``2 / ((M
+ 2)(N + 2))`` for NP and ``2 / ((M N + 2)(N + 2))`` for WP: it falls inversely with
the dimension of the injected noise.  Rademacher perturbations replace ``M + 2``
by ``M`` and ``M N + 2`` by ``M N``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

METHODS = ("gd", "np", "wp")
"""Gradient descent, node perturbation, weight perturbation."""


class Moments(NamedTuple):
    """Normalised even moments of a symmetric perturbation law of variance sigma^2."""

    k4: float
    """E s^4 / sigma^4."""
    k6: float
    """E s^6 / sigma^6."""


PERTURBATIONS = {
    "gaussian": Moments(3.0, 15.0),
    "rademacher": Moments(1.0, 1.0),
    "uniform": Moments(9.0 / 5.0, 27.0 / 7.0),
}
"""The supported perturbation laws by name."""


class Recursion(NamedTuple):
    """``e_{t+1} = r e_t + c`` for the expected squared weight error."""

    r: float
    """Contraction factor per step."""
    c: float
    """Error added per step by the perturbation's size and the cost noise (0 for GD)."""


class _Coefficients(NamedTuple):
    """``r = 1 - a eta + b eta^2`` and ``c = eta^2 (f sigma^2 + h cost_noise^2 / sigma^2)``."""

    a: float
    b: float
    f: float
    h: float


def _gd(n_in: int, n_out: int) -> _Coefficients:
    """GD: ``a = 2``, ``b = N + 2``, ``f = h = 0``.

    ``u = g x^T``: ``<D, u> = |g|^2`` and ``||u||^2 = |x|^2 |g|^2``, whose input
    averages are ``||D||^2`` and ``(N + 2) ||D||^2``.
    """
    return _Coefficients(2.0, n_in + 2.0, 0.0, 0.0)


def _np_parallel(n_in: int, n_out: int, m: Moments) -> _Coefficients:
    """NP: ``a = 2``, ``b = (M - 1 + k4)(N + 2)``, ``f = N S6 / 4``, ``h = M N``.

    ``u = dL xi x^T / sigma^2`` with ``dL = xi.g + |xi|^2/2``.  Odd moments of
    ``xi`` vanish, so ``E <D, u> = E (xi.g)^2 / sigma^2 = |g|^2``.  Next,
    ``||u||^2 = dL^2 |xi|^2 |x|^2 / sigma^4`` and

        E dL^2 |xi|^2 = E (xi.g)^2 |xi|^2 + E |xi|^6 / 4
                      = sigma^4 (M - 1 + k4) |g|^2 + sigma^6 S6 / 4,

    where ``E (xi.g)^2 |xi|^2 = sum_i g_i^2 E xi_i^2 |xi|^2`` and, counting
    coincident indices in ``E |xi|^6 = sum_ijk E xi_i^2 xi_j^2 xi_k^2``,
    ``S6 = M k6 + 3 M (M - 1) k4 + M (M - 1)(M - 2)``.  The input average gives
    ``b`` and ``f``.  Gaussian: ``S6 = M (M + 2)(M + 4)``; Rademacher: ``M^3``.
    The cost noise adds ``cost_noise^2 E |xi|^2 |x|^2 / sigma^4``: ``h = M N``.
    """
    mm = float(n_out)
    s6 = mm * m.k6 + 3.0 * mm * (mm - 1.0) * m.k4 + mm * (mm - 1.0) * (mm - 2.0)
    return _Coefficients(2.0, (mm - 1.0 + m.k4) * (n_in + 2.0), n_in * s6 / 4.0,
                         mm * n_in)


def _wp_parallel(n_in: int, n_out: int, m: Moments) -> _Coefficients:
    """WP: ``a = 2``, ``b = (M N - 1 + k4)(N + 2)``, ``f = N (A (N + 2) + 3 B) / 4``,
    ``h = M N``.

    ``u = dL psi / sigma^2`` with ``dL = <psi, g x^T> + |psi x|^2/2``.  As for NP,
    ``E <D, u> = <D, g x^T> = |g|^2`` and, with ``K = M N`` entries,
    ``E <psi, g x^T>^2 ||psi||^2 = sigma^4 (K - 1 + k4) |g|^2 |x|^2``, which gives
    ``b``.  The floor comes from ``E |psi x|^4 ||psi||^2 / 4``.  Split ``psi`` into
    independent rows ``q_i`` with ``v_i = (q_i.x)^2`` and ``w_i = |q_i|^2``; then
    ``E (sum_i v_i)^2 sum_k w_k`` sums, over coincidence patterns of ``(i, j, k)``,

        E v w   = sigma^4 (N - 1 + k4) s,         E v = sigma^2 s,   E w = N sigma^2,
        E v^2   = sigma^4 (3 s^2 + (k4 - 3) s4),
        E v^2 w = sigma^6 ((6 k4 + 3 N - 6) s^2 + (k6 - 6 k4 + 3 + (k4 - 3)(N - 1)) s4),

    with ``s = |x|^2`` and ``s4 = sum_n x_n^4`` (the last by splitting ``q.x`` into
    ``q_n x_n`` plus an independent remainder for each ``n`` of ``|q|^2 = sum_n
    q_n^2``).  Collecting ``M`` (i = j = k), ``M (M - 1)`` (i = j != k), ``2 M (M -
    1)`` (k equal to one of i != j) and ``M (M - 1)(M - 2)`` (all distinct) terms
    gives ``sigma^6 (A s^2 + B s4)`` with ``A`` and ``B`` as coded below, and the
    input averages ``E s^2 = N (N + 2)``, ``E s4 = 3 N`` give ``f``.  The cost
    noise adds ``cost_noise^2 E ||psi||^2 / sigma^4``: ``h = M N``.  Gaussian
    (``B = 0``): ``f = N (N + 2) M (M + 2)(M N + 4) / 4``; Rademacher: ``f = M^2
    N^2 ((M + 2)(N + 2) - 6) / 4``.
    """
    mm, nn, k4, k6 = float(n_out), float(n_in), m.k4, m.k6
    a_coef = (mm * (6.0 * k4 + 3.0 * nn - 6.0)
              + 3.0 * mm * (mm - 1.0) * nn
              + 2.0 * mm * (mm - 1.0) * (nn - 1.0 + k4)
              + mm * (mm - 1.0) * (mm - 2.0) * nn)
    b_coef = (mm * (k6 - 6.0 * k4 + 3.0 + (k4 - 3.0) * (nn - 1.0))
              + mm * (mm - 1.0) * nn * (k4 - 3.0))
    f = nn * (a_coef * (nn + 2.0) + 3.0 * b_coef) / 4.0
    return _Coefficients(2.0, (mm * nn - 1.0 + k4) * (nn + 2.0), f, mm * nn)


def _sequential(method: str, n_in: int, n_out: int, m: Moments) -> _Coefficients:
    """One randomly chosen node (NP) or weight (WP) perturbed per step by ``s``.

    NP, unit ``i`` of ``P = M``: ``dL = s g_i + s^2/2``, ``u = dL s e_i x^T /
    sigma^2``.  ``E <D, u> = E_i g_i^2 = |g|^2 / M`` and ``E ||u||^2 = |x|^2 (k4
    E_i g_i^2 + sigma^2 k6 / 4)``, so ``a = 2 / M``, ``b = k4 (N + 2) / M`` and
    ``f = N k6 / 4``; the cost noise adds ``cost_noise^2 E s^2 |x|^2 / sigma^4``:
    ``h = N``.

    WP, weight ``(i, n)`` of ``P = M N``: ``dL = s g_i x_n + s^2 x_n^2 / 2``,
    ``u = dL s E_in / sigma^2``.  ``E <D, u> = E_in g_i x_n D_in = |g|^2 / P`` and
    ``E ||u||^2 = k4 E_in g_i^2 x_n^2 + sigma^2 k6 E_in x_n^4 / 4``; with
    ``E_x sum_in g_i^2 x_n^2 = (N + 2) ||D||^2`` and ``E x_n^4 = 3`` this is
    ``a = 2 / P``, ``b = k4 (N + 2) / P``, ``f = 3 k6 / 4``; the cost noise adds
    ``cost_noise^2 E s^2 / sigma^4``: ``h = 1``.

    The fastest decay, ``1 - r = 1 / (k4 P (N + 2))`` at ``eta = 1 / (k4 (N +
    2))``, is ``k4 P / (P - 1 + k4)`` times slower than parallel perturbation
    of the same law: ``3 M / (M + 2)`` for Gaussian NP, a factor that does not
    grow with the network, and no loss at all for Rademacher.
    """
    p = float(n_out) if method == "np" else float(n_out * n_in)
    if method == "np":
        f, h = n_in * m.k6 / 4.0, float(n_in)
    else:
        f, h = 3.0 * m.k6 / 4.0, 1.0
    return _Coefficients(2.0 / p, m.k4 * (n_in + 2.0) / p, f, h)


def _coefficients(method: str, n_in: int, n_out: int, perturbation: str,
                  sequential: bool) -> _Coefficients:
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    for name, value in (("n_in", n_in), ("n_out", n_out)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation: must be one of {tuple(PERTURBATIONS)}, "
                         f"got {perturbation!r}")
    if method == "gd":
        if sequential:
            raise ValueError("sequential: gd injects no perturbation")
        return _gd(n_in, n_out)
    m = PERTURBATIONS[perturbation]
    if sequential:
        return _sequential(method, n_in, n_out, m)
    return _np_parallel(n_in, n_out, m) if method == "np" else _wp_parallel(n_in, n_out, m)


def _check_rate(eta: float, sigma: float) -> None:
    if not eta > 0.0:
        raise ValueError(f"eta: must be > 0, got {eta!r}")
    if not sigma >= 0.0:
        raise ValueError(f"sigma: must be >= 0, got {sigma!r}")


def _drive(k: _Coefficients, sigma: float, cost_noise: float) -> float:
    """``c / eta^2 = f sigma^2 + h cost_noise^2 / sigma^2``."""
    if not cost_noise >= 0.0:
        raise ValueError(f"cost_noise: must be >= 0, got {cost_noise!r}")
    if k.h == 0.0 or cost_noise == 0.0:
        return k.f * sigma**2
    if sigma == 0.0:
        raise ValueError("sigma: must be > 0 when cost_noise > 0")
    return k.f * sigma**2 + k.h * cost_noise**2 / sigma**2


def recursion(method: str, eta: float, sigma: float, n_in: int, n_out: int,
              perturbation: str = "gaussian", sequential: bool = False,
              cost_noise: float = 0.0) -> Recursion:
    """The exact one-step map ``e_{t+1} = r e_t + c`` of ``e_t = E ||W_t - W*||_F^2``.

    ``method`` is one of :data:`METHODS`; ``sigma`` is the standard deviation of each
    perturbation entry (ignored by GD); ``perturbation`` names its law in
    :data:`PERTURBATIONS`; ``sequential`` perturbs one randomly chosen node or
    weight per step instead of all at once; ``cost_noise`` is the standard
    deviation of the error on each observed cost difference (ignored by GD).
    """
    _check_rate(eta, sigma)
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    return Recursion(1.0 + eta * (k.b * eta - k.a), eta**2 * _drive(k, sigma, cost_noise))


def learning_curve(method: str, eta: float, sigma: float, n_in: int, n_out: int,
                   steps: int, e0: float, perturbation: str = "gaussian",
                   sequential: bool = False, cost_noise: float = 0.0) -> np.ndarray:
    """``e_t = E ||W_t - W*||_F^2`` for ``t = 0 .. steps`` (``steps + 1`` values).

    ``e_t = r^t e0 + c (1 - r^t) / (1 - r)``, evaluated through ``log1p`` and
    ``expm1`` of ``r - 1`` so that it stays accurate for ``r`` near 1 (small
    ``eta``, or ``eta`` near the maximum rate).  Diverges when ``r > 1``.
    Halve it for the generalization error ``E L``.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps: must be an integer >= 0, got {steps!r}")
    if not e0 >= 0.0:
        raise ValueError(f"e0: must be >= 0, got {e0!r}")
    _check_rate(eta, sigma)
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    r_minus_1 = eta * (k.b * eta - k.a)  # > -1: min r = 1 - a^2/(4b) > 0
    c = eta**2 * _drive(k, sigma, cost_noise)
    t = np.arange(steps + 1, dtype=float)
    log_r = math.log1p(r_minus_1)
    if r_minus_1 == 0.0:
        geometric = t
    else:
        geometric = np.expm1(t * log_r) / r_minus_1
    return np.exp(t * log_r) * e0 + c * geometric


def error_floor(method: str, eta: float, sigma: float, n_in: int, n_out: int,
                perturbation: str = "gaussian", sequential: bool = False,
                cost_noise: float = 0.0) -> float:
    """The limit ``c / (1 - r)`` of ``e_t``; ``inf`` when ``eta`` is not below the
    maximum rate (0 for GD).  Without cost noise it is proportional to ``sigma^2``;
    at small ``eta`` it is ``eta (f sigma^2 + h cost_noise^2 / sigma^2) / a``,
    proportional to ``eta`` too.
    """
    _check_rate(eta, sigma)
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    drive = _drive(k, sigma, cost_noise)
    if eta * (k.a - k.b * eta) <= 0.0:
        return math.inf
    return eta * drive / (k.a - k.b * eta)


def max_learning_rate(method: str, n_in: int, n_out: int,
                      perturbation: str = "gaussian", sequential: bool = False) -> float:
    """The rate ``a / b`` at which ``r = 1``: the mean error converges iff ``eta`` is below it.

    Gaussian, parallel: ``2/(N+2)`` (GD), ``2/((M+2)(N+2))`` (NP), ``2/((MN+2)(N+2))``
    (WP).  The mean is driven by rare runs near this limit: individual runs may
    still converge just above it.
    """
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    return k.a / k.b


def optimal_learning_rate(method: str, n_in: int, n_out: int,
                          perturbation: str = "gaussian", sequential: bool = False) -> float:
    """The rate ``a / (2 b)`` that minimises ``r``: half the maximum rate.

    It makes the transient ``(e_0 - e_inf) r^t`` decay fastest; with ``sigma > 0``
    a smaller rate trades speed for a lower floor.
    """
    return max_learning_rate(method, n_in, n_out, perturbation, sequential) / 2.0


def best_decay(method: str, n_in: int, n_out: int,
               perturbation: str = "gaussian", sequential: bool = False) -> float:
    """``1 - r`` at the optimal rate, ``a^2 / (4 b)``: the error's decay per step.

    Gaussian, parallel: ``1/(N+2)`` (GD), ``1/((M+2)(N+2))`` (NP),
    ``1/((MN+2)(N+2))`` (WP); NP is about ``M`` times slower than GD and WP a
    further ``N`` times slower.
    """
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    return k.a**2 / (4.0 * k.b)


def optimal_sigma(method: str, n_in: int, n_out: int, cost_noise: float,
                  perturbation: str = "gaussian", sequential: bool = False) -> float:
    """The perturbation size ``(h cost_noise^2 / f)^(1/4)`` with the lowest floor.

    A larger ``sigma`` raises the perturbation's own floor ``f sigma^2``, a smaller
    one amplifies the cost noise, ``h cost_noise^2 / sigma^2``; the sum is smallest
    where the two are equal, for every learning rate.
    """
    if method == "gd":
        raise ValueError("method: gd injects no perturbation")
    if not cost_noise >= 0.0:
        raise ValueError(f"cost_noise: must be >= 0, got {cost_noise!r}")
    k = _coefficients(method, n_in, n_out, perturbation, sequential)
    return (k.h * cost_noise**2 / k.f) ** 0.25

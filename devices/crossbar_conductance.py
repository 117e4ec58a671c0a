"""The devices of a crossbar layer: their conductances, how programming sets them, and
what a read sees of them at a time after programming.

State is kept in range units ``u = (G - g_min) / (g_max - g_min)`` with nominal g_min,
g_max (``u_pos`` the G+ devices, ``u_neg`` the G- devices or the reference column), on
the augmented (n_out, n_in + 1) matrix ``[W | b]``. Each device draws once, at build,
its own bounds (``_dtod`` spread of g_min and g_max), fault (stuck at g_min, g_max or a
random conductance), pulse steps and asymmetry, and, once programmed, its drift
exponent. A read at time t after programming sees drift ``G (t / t0)^-nu``, aihwkit's
accumulated 1/f noise (drawn afresh at each new time) and a first-order IR drop.

A reference column is one device per row of each array (a group of ``tile_cols``
outputs), so its draws are shared by the outputs of that array.
"""
from __future__ import annotations

import numpy as np

STUCK_MIN, STUCK_MAX, STUCK_RANDOM = 1, 2, 3
"""Fault codes; 0 is a working device."""


class Conductances:
    """The G+ and G- (or reference) devices of one layer (see the module docstring)."""

    def __init__(self, params, shape: tuple[int, int], group: np.ndarray,
                 rng: np.random.Generator):
        """Draw every device's static properties; the reference column of a
        ``reference`` mapping is programmed to mid-range here, the weights by
        :meth:`program` and :meth:`start`."""
        p = self.params = params
        self.rng = rng
        self.diff = p.mapping == "differential"
        self.k = p.w_max if self.diff else 2.0 * p.w_max
        """Weight of the full conductance range (a pair spans +-w_max, a reference
        column's device 2 w_max)."""
        self.g_range = p.g_max - p.g_min
        self.g0 = p.g_min / self.g_range  # g_min in range units
        self.group = group
        self.n_groups = int(group[-1]) + 1
        self.first = np.searchsorted(group, np.arange(self.n_groups))
        self.lo_pos, self.hi_pos = self._draw_bounds(shape)
        self.lo_neg, self.hi_neg = map(self.per_array, self._draw_bounds(shape))
        self.stuck_pos = self._draw_stuck(shape)
        self.stuck_neg = tuple(map(self.per_array, self._draw_stuck(shape)))
        self.up_pos, self.down_pos = self._draw_steps(shape)
        self.up_neg, self.down_neg = self._draw_steps(shape)
        self.u_pos = np.zeros(shape)
        self.u_neg = np.zeros(shape)
        if not self.diff:
            self.u_neg[...] = self.per_array(self.programmed(
                np.full(shape, 0.5), self.lo_neg, self.hi_neg, self.stuck_neg))
        self.t = 0.0
        self.nu_pos = self.nu_neg = self.z1f = None

    def start(self, t_inference_s: float) -> None:
        """After the first programming: draw each device's drift exponent from its
        programmed conductance, and read from ``t_inference_s`` on."""
        self.nu_pos = self._draw_nu(self.u_pos)
        self.nu_neg = self.per_array(self._draw_nu(self.u_neg))
        self.set_time(t_inference_s)

    def per_array(self, a):
        """``a`` as a reference column holds it: the first output's row in each array."""
        return a if self.diff else np.ascontiguousarray(a[self.first][self.group])

    # ---- static draws
    def _draw_bounds(self, shape):
        """Each device's own (g_min, g_max) in range units, spread by the ``_dtod`` sigmas."""
        p, rng = self.params, self.rng
        lo = np.zeros(shape)
        hi = np.ones(shape)
        if p.g_min_dtod > 0:
            g = np.maximum(p.g_min * (1.0 + p.g_min_dtod * rng.standard_normal(shape)), 0.0)
            lo = (g - p.g_min) / self.g_range
        if p.g_max_dtod > 0:
            g = p.g_max * (1.0 + p.g_max_dtod * rng.standard_normal(shape))
            hi = np.maximum((g - p.g_min) / self.g_range, lo + 1e-3)  # keep a range open
        return lo, hi

    def _draw_stuck(self, shape):
        """Fault code of each device and, for stuck-at-random, its place in its range."""
        p = self.params
        code = np.zeros(shape, dtype=np.int8)
        probs = (p.stuck_at_gmin_prob, p.stuck_at_gmax_prob, p.stuck_at_random_prob)
        if sum(probs) == 0:
            return code, np.zeros(shape)
        u = self.rng.random(shape)
        edges = np.cumsum(probs)
        code[u < edges[2]] = STUCK_RANDOM
        code[u < edges[1]] = STUCK_MAX
        code[u < edges[0]] = STUCK_MIN
        return code, self.rng.random(shape)

    def _draw_steps(self, shape):
        """Each device's (potentiating, depressing) pulse step in range units."""
        p, rng = self.params, self.rng
        step = np.full(shape, p.dw_min / self.k)  # one pulse moves k * step in weight
        if p.dw_min_dtod > 0:
            step *= np.maximum(1.0 + p.dw_min_dtod * rng.standard_normal(shape), 0.0)
        asym = np.full(shape, p.up_down)
        if p.up_down_dtod > 0:
            asym = np.clip(asym + p.up_down_dtod * rng.standard_normal(shape), -0.99, 0.99)
        return step * (1.0 + asym), step * (1.0 - asym)

    def _draw_nu(self, u):
        """Each device's drift exponent, given its programmed conductance ``u``."""
        p = self.params
        if p.drift_model == "pcm":
            g_rel = np.maximum((self.g0 + u) * self.g_range / p.g_max, 1e-6)
            mu = np.clip(-0.0155 * np.log(g_rel) + 0.0244, 0.049, 0.1)
            sig = np.clip(-0.0125 * np.log(g_rel) - 0.0059, 0.008, 0.045)
            return np.abs(mu + sig * self.rng.standard_normal(u.shape))
        nu = np.full(u.shape, p.drift_nu)
        if p.drift_nu_dtod > 0:
            nu = np.maximum(nu + p.drift_nu_dtod * self.rng.standard_normal(u.shape), 0.0)
        return nu

    # ---- programming
    def programmed(self, target, lo, hi, stuck, out=None):
        """Conductances (range units) a program-and-verify of ``target`` leaves behind
        (into ``out`` where given). Computed in place: at a 784 x 257 layer every
        fresh temporary beyond the first costs about 0.7 ms of page faults."""
        p = self.params
        u = np.clip(target, 0.0, 1.0, out=out)
        if p.bits_per_cell:
            levels = 2 ** p.bits_per_cell - 1
            u *= levels
            np.rint(u, out=u)
            u /= levels
        if p.prog_noise > 0:
            if p.prog_noise_model == "constant":
                sigma = np.full(u.shape, p.prog_noise)
            elif p.prog_noise_model == "proportional":
                sigma = p.prog_noise * (self.g0 + u)
            else:
                g_rel = (self.g0 + u) * self.g_range / p.g_max
                poly = np.zeros(u.shape)
                for c in p.pcm_prog_coeffs[::-1]:
                    poly = poly * g_rel + c
                sigma = p.prog_noise * poly * (p.g_max / 25.0) / self.g_range
            u += sigma * self.rng.standard_normal(u.shape)
        np.maximum(u, lo, out=u)
        np.minimum(u, hi, out=u)
        code, where = stuck
        if code.any():
            np.copyto(u, lo, where=code == STUCK_MIN)
            np.copyto(u, hi, where=code == STUCK_MAX)
            np.copyto(u, lo + (hi - lo) * where, where=code == STUCK_RANDOM)
        return u

    def program(self, target_w, mask=None):
        """Program-and-verify the cells of the augmented matrix where ``mask`` holds (all
        when None) to weights ``target_w``; only those cells draw programming noise, in
        row-major order."""
        every = mask is None or mask.all()  # most updates move every weight: the cells
        mask = Ellipsis if every else mask  # as views, not a mask's copies (same draws)
        t = target_w[mask]

        def program(target, lo, hi, stuck, u):
            if every:  # programmed in place (target_w does not read u)
                return self.programmed(target, lo, hi, stuck, out=u)
            u[mask] = self.programmed(target, lo[mask], hi[mask],
                                      (stuck[0][mask], stuck[1][mask]))

        if self.diff:  # G- holds the negative part, G+ the positive one
            w_max = self.params.w_max
            negative = np.negative(t)
            np.maximum(negative, 0.0, out=negative)
            negative /= w_max
            program(negative, self.lo_neg, self.hi_neg, self.stuck_neg, self.u_neg)
            positive = np.maximum(t, 0.0, out=negative)
            positive /= w_max
            program(positive, self.lo_pos, self.hi_pos, self.stuck_pos, self.u_pos)
        else:
            target = t / self.k
            target += self.u_neg[mask]
            program(target, self.lo_pos, self.hi_pos, self.stuck_pos, self.u_pos)

    def programmed_weights(self) -> np.ndarray:
        """The augmented weights the devices hold as programmed (no drift or 1/f noise)."""
        w = np.subtract(self.u_pos, self.u_neg)
        w *= self.k
        return w

    # ---- what a read sees
    def set_time(self, t_inference_s: float) -> None:
        """Read ``t_inference_s`` seconds after t0 from now on, with a fresh draw of the
        accumulated 1/f noise (one per device)."""
        self.t = float(t_inference_s)
        self.z1f = None
        if self.params.read_noise_1f_scale > 0:
            shape = self.u_pos.shape
            self.z1f = (self.rng.standard_normal(shape),
                        self.per_array(self.rng.standard_normal(shape)))

    @property
    def drifted(self) -> bool:
        """Whether a read sees other conductances than programmed (drift, 1/f, IR drop)."""
        p = self.params
        return self.t > 0 or p.read_noise_1f_scale > 0 or p.wire_resistance_ohm > 0

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(G+, G-) in range units as a read sees them now: drift, 1/f noise and IR drop
        where the model has them (read noise aside)."""
        p = self.params
        if not self.drifted:
            return self.g0 + self.u_pos, self.g0 + self.u_neg
        gp, gn = self.g0 + self.u_pos, self.g0 + self.u_neg
        t = self.t + p.drift_t0_s
        if self.t > 0:
            gp = gp * (t / p.drift_t0_s) ** (-self.nu_pos)
            gn = gn * (t / p.drift_t0_s) ** (-self.nu_neg)
        if self.z1f is not None:
            spread = p.read_noise_1f_scale * np.sqrt(np.log((t + p.t_read_s) / (2.0 * p.t_read_s)))
            gp = self._add_1f(gp, self.g0 + self.u_pos, spread, self.z1f[0])
            gn = self._add_1f(gn, self.g0 + self.u_neg, spread, self.z1f[1])
        if p.wire_resistance_ohm > 0:
            ap, an = self._ir_attenuation(gp, gn)
            gp, gn = gp * ap, gn * an
        return gp, gn

    def _add_1f(self, g, g_prog, spread, z):
        g_rel = g_prog * self.g_range / self.params.g_max
        q_s = np.minimum(0.0088 / np.maximum(np.abs(g_rel) ** 0.65, 1e-3), 0.2)
        return np.maximum(g + np.abs(g) * q_s * spread * z, 0.0)

    def _ir_attenuation(self, gp, gn):
        """First-order IR drop: the voltage reaching each device, as a fraction of the driven one.

        Rows are driven from one end. Wire segment s of a row carries the current of
        every device past it, so the drop to column position c is
        ``r * sum_{s <= c} sum_{d >= s} G_d V`` to first order (the devices' own
        currents computed at the undropped voltage); column wires are taken as ideal.
        Pairs sit side by side (G+ then G-); the reference column is last in its array.
        """
        p = self.params
        r_g = p.wire_resistance_ohm * self.g_range * 1e-6  # ohm * (range units -> S)
        ap, an = np.ones_like(gp), np.ones_like(gn)
        for g in range(self.n_groups):
            cols = np.flatnonzero(self.group == g)
            if self.diff:
                row = np.empty((gp.shape[1], 2 * cols.size))
                row[:, 0::2], row[:, 1::2] = gp[cols].T, gn[cols].T
            else:
                row = np.concatenate([gp[cols].T, gn[cols[:1]].T], axis=1)
            load = np.cumsum(row[:, ::-1], axis=1)[:, ::-1]      # current past segment s
            a = np.maximum(1.0 - r_g * np.cumsum(load, axis=1), 0.0)
            if self.diff:
                ap[cols], an[cols] = a[:, 0::2].T, a[:, 1::2].T
            else:
                ap[cols], an[cols] = a[:, :-1].T, a[:, -1:].T
        return ap, an

"""Group-sequential boundaries: Lan-DeMets alpha spending and the recursive integration of a
Brownian motion's crossing probabilities (Armitage, McPherson & Rowe 1969; Jennison & Turnbull
2000, ch. 19).

At look k a fraction t_k of the runs is in (t_K = 1); the standardised statistics Z_k of the runs
so far are a Brownian motion in information, Corr(Z_j, Z_k) = sqrt(t_j / t_k). A test at level
a spends its type I error over the looks through a spending function a(t):

- ``obrien_fleming`` (O'Brien-Fleming-like): each side spends f(t; a/2) with
  f(t; b) = 2 - 2 Phi(Phi^-1(1 - b/2) / sqrt t), so a(t) = 2 f(t; a/2) (gsDesign's ``sfLDOF``
  with a two-sided symmetric design: at a = 0.05 and three equal looks the boundaries are
  3.710, 2.511, 1.993, the published one-sided 0.025 values);
- ``pocock`` (Pocock-like): a(t) = a log(1 + (e - 1) t) (gsDesign's ``sfLDPocock``).

The two-sided boundary c_k is the value with P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1},
|Z_k| >= c_k) = a(t_k) - a(t_{k-1}) under H0, computed with Simpson's rule on each continuation
interval. :func:`crossing` gives the stopping probabilities of a design under a drift (the
expected sample size of a one-hypothesis design). scipy is imported on first use: the workflow
imports this module when it parses.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

OBRIEN_FLEMING = "obrien_fleming"
POCOCK = "pocock"
SPENDING_NAMES = (OBRIEN_FLEMING, POCOCK)

_GRID = 241  # Simpson points per continuation interval (odd)


def _normal():
    # scipy on first use: the workflow imports this module (through ganstudy.study.waves) when
    # it parses, and needs none of it then.
    from scipy import stats

    return stats.norm


def spent(name: str, t: float, level: float) -> float:
    """Type I error spent by information fraction ``t`` of a test at ``level`` (two-sided)."""
    if t <= 0:
        return 0.0
    if t >= 1:
        return level
    if name == OBRIEN_FLEMING:
        return float(2 * (2 - 2 * _normal().cdf(_normal().ppf(1 - level / 4) / math.sqrt(t))))
    if name == POCOCK:
        return level * math.log(1 + (math.e - 1) * t)
    raise ValueError(f"spending function {name!r} is not allowed; allowed: {SPENDING_NAMES}")


def z_of_p(p: float | np.ndarray) -> np.ndarray:
    """|Z| of a two-sided p: Phi^-1(1 - p / 2) (p = 1, or not a number: 0)."""
    p = np.where(np.isfinite(p), np.clip(p, 1e-300, 1.0), 1.0)
    return _normal().isf(p / 2)


def p_of_z(z: float | np.ndarray) -> np.ndarray:
    """Two-sided p of |Z| >= z: 2 (1 - Phi(z))."""
    return 2 * _normal().sf(np.asarray(z, dtype=float))


def _simpson(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights on [lo, hi]."""
    z = np.linspace(lo, hi, _GRID)
    h = (hi - lo) / (_GRID - 1)
    w = np.ones(_GRID)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return z, w * h / 3


def _continuation(bound: float, futility: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Grid and weights of {futility <= |z| < bound}."""
    if futility <= 0:
        return _simpson(-bound, bound)
    if futility >= bound:
        return np.zeros(0), np.zeros(0)
    z1, w1 = _simpson(-bound, -futility)
    z2, w2 = _simpson(futility, bound)
    return np.concatenate([z1, z2]), np.concatenate([w1, w2])


def _step(z, t0: float, t1: float, drift: float):
    """Mean and sd of Z at t1 given Z = z at t0 (drift: E Z at t = 1)."""
    d = t1 - t0
    mean = (z * math.sqrt(t0) + drift * d) / math.sqrt(t1)
    return mean, math.sqrt(d / t1)


def _exit(z, mass, t0, t1, bound, drift) -> tuple[float, float]:
    """P(Z(t1) >= bound), P(Z(t1) <= -bound), over the sub-density ``mass`` at t0."""
    if len(z) == 0:
        return 0.0, 0.0
    mean, sd = _step(z, t0, t1, drift)
    upper = float(np.sum(mass * _normal().sf((bound - mean) / sd)))
    lower = float(np.sum(mass * _normal().cdf((-bound - mean) / sd)))
    return upper, lower


def _carry(z, mass, t0, t1, drift, z_new):
    """The sub-density of Z(t1) on ``z_new`` (times the weights: a mass per point) from ``mass``."""
    mean, sd = _step(z, t0, t1, drift)
    return (mass[None, :] * _normal().pdf((z_new[:, None] - mean[None, :]) / sd) / sd).sum(axis=1)


@functools.lru_cache(maxsize=4096)
def boundaries(fractions: tuple[float, ...], level: float, spending: str) -> tuple[float, ...]:
    """Two-sided efficacy boundaries c_1..c_K on the Z scale (see the module docstring)."""
    out: list[float] = []
    prev_t, prev_spent = 0.0, 0.0
    z = mass = None
    for t in fractions:
        if z is not None and t - prev_t <= 1e-12:
            # No new runs since the last look (a hypothesis already complete): nothing to spend.
            out.append(math.inf)
            continue
        target = spent(spending, t, level) - prev_spent
        if z is None:
            bound = float(_normal().isf(target / 2)) if target > 0 else math.inf
        elif target <= 0:
            bound = math.inf
        else:
            from scipy import optimize

            def excess(c, z=z, mass=mass, t0=prev_t, t1=t, target=target):
                up, down = _exit(z, mass, t0, t1, c, 0.0)
                return up + down - target

            bound = 0.0
            if excess(1e-6) > 0:
                bound = float(optimize.brentq(excess, 1e-6, 40.0, xtol=1e-10))
        out.append(bound)
        # The continuation region's density at this look, for the next.
        grid, weights = _continuation(min(bound, 40.0))
        if z is None:
            mass = weights * _normal().pdf(grid)
        else:
            mass = weights * _carry(z, mass, prev_t, t, 0.0, grid)
        z = grid
        prev_t, prev_spent = t, prev_spent + max(target, 0.0)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def nominal_levels(fractions: tuple[float, ...], level: float, spending: str) -> tuple[float, ...]:
    """The two-sided nominal level 2 (1 - Phi(c_k)) of each look's boundary."""
    return tuple(float(p) for p in p_of_z(np.asarray(boundaries(fractions, level, spending))))


def crossing(
    fractions: Sequence[float],
    bounds: Sequence[float],
    drift: float = 0.0,
    futility: Sequence[float] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per look, under a Brownian motion with E Z_K = ``drift``: the probability of stopping
    there by crossing the efficacy boundary above, below, and (interim looks) for futility
    (|Z| < futility bound, applied as binding here: the design's expected sample size)."""
    k = len(fractions)
    up, down, fut = np.zeros(k), np.zeros(k), np.zeros(k)
    z = mass = None
    prev_t = 0.0
    for i, (t, c) in enumerate(zip(fractions, bounds)):
        f = futility[i] if i < len(futility) and i < k - 1 else 0.0
        c = min(c, 40.0)
        if z is None:
            mean = drift * math.sqrt(t)
            up[i] = _normal().sf(c - mean)
            down[i] = _normal().cdf(-c - mean)
            fut[i] = _normal().cdf(f - mean) - _normal().cdf(-f - mean) if f > 0 else 0.0
            grid, weights = _continuation(c, f)
            mass = weights * _normal().pdf(grid - mean)
        else:
            up[i], down[i] = _exit(z, mass, prev_t, t, c, drift)
            if f > 0:
                inner_up, inner_down = _exit(z, mass, prev_t, t, f, drift)
                fut[i] = float(mass.sum()) - inner_up - inner_down
            grid, weights = _continuation(c, f)
            mass = weights * _carry(z, mass, prev_t, t, drift, grid)
        z, prev_t = grid, t
    return up, down, fut

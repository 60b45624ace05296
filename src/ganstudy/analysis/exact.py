"""Exact permutation distributions of the study's tests, ties included, pooled over strata.

**Mann-Whitney U in one stratum.** Rank the N = n_x + n_y values together, ties getting the mean
of their ranks (midranks r_i). U_x = R_x - n_x (n_x + 1) / 2, with R_x the sum of x's ranks,
counts the pairs (x_i, y_j) with x_i > y_j, ties counting 1/2. Under H0 (the labels are
exchangeable) each of the C(N, n_x) choices of which values are x is equally likely, ties or not.
Doubled midranks 2 r_i are integers, so the number c[k, s] of choices of k values whose doubled
ranks sum to s follows, adding the values one at a time,

    c_i[k, s] = c_{i-1}[k, s] + c_{i-1}[k - 1, s - 2 r_i],

and P(2 U_x = s - n_x (n_x + 1)) = c_N[n_x, s] / C(N, n_x): the exact null distribution with
ties (without ties, scipy's exact method gives the same).

**Stratified.** The statistic pooled over strata (cells) is T = sum_s U_s / (n_xs n_ys), the sum
of the per-stratum probabilities that x beats y (ties 1/2): S times their mean, the effect size
the report states. Labels are permuted within each stratum only, so under H0 the strata are
independent and T's exact distribution is the convolution of theirs (on the integer lattice of
T * 2 lcm(n_xs n_ys)). Two-sided p = min(1, 2 min(P(T <= t), P(T >= t))), scipy's rule.
Above ``EXACT_MAX_VALUES`` values in a stratum, or a lattice longer than ``EXACT_MAX_LATTICE``,
the normal approximation with the tie-corrected permutation variance is used instead, and named.

**Rates.** Given the margins of each stratum's 2 x 2 table (runs per arm, events in all), the
events of x follow the hypergeometric law; the stratified exact conditional test (the exact
Cochran-Mantel-Haenszel test, a stratified Fisher test) convolves them. Two-sided p: the
probability of the totals no more probable than the observed one (relative tolerance 1e-7), as
scipy.stats.fisher_exact and R's ``mantelhaen.test(exact = TRUE)``. Above ``FFT_MIN_WIDTH`` possible
totals the convolution runs through the FFT (rounding about 1e-16 of the largest probability).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps

EXACT_MAX_VALUES = 100
EXACT_MAX_LATTICE = 4_000_000
FFT_MIN_WIDTH = 256
_RELATIVE_TOLERANCE = 1 + 1e-7

EXACT = "exact permutation"
NORMAL = "normal approximation (tie-corrected)"
EXACT_CONDITIONAL = "exact conditional (stratified Fisher)"


def _doubled_midranks(values: np.ndarray) -> np.ndarray:
    return np.rint(2 * sps.rankdata(values)).astype(np.int64)


def u_distribution(x, y) -> np.ndarray:
    """Exact null distribution of 2 U_x given the pooled values (ties kept): the probability
    of every doubled U from 0 to 2 n_x n_y (with ties most of them are 0)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    ranks = _doubled_midranks(np.concatenate([x, y]))
    total = int(ranks.sum())
    counts = np.zeros((n + 1, total + 1))
    counts[0, 0] = 1.0
    for r in ranks:
        counts[1:, r:] += counts[:-1, : total + 1 - r].copy()
    offset = n * (n + 1)  # doubled minimum rank sum
    probs = counts[n, offset : offset + 2 * n * len(y) + 1]
    return probs / math.comb(len(x) + len(y), n)


def u_statistic(x, y) -> float:
    """U_x: pairs with x_i > y_j, ties 1/2."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ranks = sps.rankdata(np.concatenate([x, y]))
    return float(ranks[: len(x)].sum() - len(x) * (len(x) + 1) / 2)


def _u_variance(x, y) -> float:
    """Permutation variance of U_x with ties: n m / 12 (N + 1 - sum(t^3 - t) / (N (N - 1)))."""
    n, m = len(x), len(y)
    big = n + m
    _, t = np.unique(np.concatenate([x, y]), return_counts=True)
    return n * m / 12 * (big + 1 - float(np.sum(t**3 - t)) / (big * (big - 1)))


@dataclass(frozen=True)
class RankTest:
    """A (stratified) Mann-Whitney test of x against y: ``statistic`` = sum over strata of
    P(x > y) + P(x = y) / 2 (one stratum: U / (n_x n_y)), ``p`` two-sided, ``method``."""

    statistic: float
    p: float
    strata: int
    method: str

    @property
    def mean_probability(self) -> float:
        return self.statistic / self.strata if self.strata else math.nan


def stratified_rank_test(strata: list[tuple[np.ndarray, np.ndarray]]) -> RankTest:
    """Two-sided stratified Mann-Whitney test of x against y, labels permuted within strata.

    ``strata``: (x values, y values) per stratum; strata without a value on both sides carry
    no information and are skipped. Exact (ties included) where small enough, else normal.
    """
    used = [
        (np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        for x, y in strata
        if len(x) and len(y)
    ]
    if not used:
        return RankTest(math.nan, math.nan, 0, EXACT)
    t_obs = sum(u_statistic(x, y) / (len(x) * len(y)) for x, y in used)
    if all(np.all(np.concatenate([x, y]) == x[0]) for x, y in used):
        return RankTest(t_obs, 1.0, len(used), EXACT)
    null = StratifiedNull.of(used)
    return RankTest(t_obs, float(null.p(np.asarray([t_obs]))[0]), len(used), null.method)


@dataclass(frozen=True)
class StratifiedNull:
    """The null distribution of T = sum_s U_s / (n_xs n_ys) given each stratum's pooled values:
    exact on the lattice T * 2 lcm (``probs``), or normal (``mean``, ``var``)."""

    method: str
    lcm: int = 1
    probs: np.ndarray | None = None
    mean: float = math.nan
    var: float = math.nan

    @classmethod
    def of(cls, used: list[tuple[np.ndarray, np.ndarray]]) -> StratifiedNull:
        sizes = [len(x) * len(y) for x, y in used]
        lcm = math.lcm(*sizes)
        if (
            max(len(x) + len(y) for x, y in used) <= EXACT_MAX_VALUES
            and 2 * lcm * len(used) <= EXACT_MAX_LATTICE
        ):
            dist = np.ones(1)
            for (x, y), size in zip(used, sizes):
                probs = u_distribution(x, y)
                scale = lcm // size
                spread = np.zeros((len(probs) - 1) * scale + 1)
                spread[::scale] = probs
                dist = _convolve(dist, spread)
            return cls(EXACT, lcm, dist)
        var = sum(_u_variance(x, y) / s**2 for (x, y), s in zip(used, sizes))
        return cls(NORMAL, mean=len(used) / 2, var=var)

    @classmethod
    def without_ties(cls, sizes: list[tuple[int, int]]) -> StratifiedNull:
        """The null of strata with (n_x, n_y) values and no ties (continuous outcomes); the
        same sizes give the same (cached) law."""
        return _null_without_ties(tuple((int(n), int(m)) for n, m in sizes if n and m))

    def p(self, t: np.ndarray) -> np.ndarray:
        """Two-sided p of observed statistics ``t`` (an array): 2 min(P(T <= t), P(T >= t))."""
        t = np.asarray(t, dtype=float)
        if self.probs is None:
            if self.var <= 0:
                return np.ones_like(t)
            z = np.abs(t - self.mean) / math.sqrt(self.var)
            return np.minimum(1.0, 2 * sps.norm.sf(z))
        cdf = np.cumsum(self.probs)
        sf = np.cumsum(self.probs[::-1])[::-1]
        k = np.clip(np.rint(t * 2 * self.lcm).astype(np.int64), 0, len(self.probs) - 1)
        return np.minimum(1.0, 2 * np.minimum(cdf[k], sf[k]))


@functools.lru_cache(maxsize=256)
def _null_without_ties(sizes: tuple[tuple[int, int], ...]) -> StratifiedNull:
    return StratifiedNull.of([(np.arange(n, dtype=float), np.arange(n, n + m, dtype=float))
                              for n, m in sizes])  # fmt: skip


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if min(len(a), len(b)) < 512:
        out = np.convolve(a, b)
    else:
        from scipy.signal import fftconvolve

        out = fftconvolve(a, b)
    return np.clip(out, 0.0, None)


def mann_whitney(x, y) -> RankTest:
    """Two-sided Mann-Whitney U test of x against y, exact with ties (one stratum)."""
    return stratified_rank_test([(x, y)])


def min_p_separated(sizes: list[tuple[int, int]]) -> float:
    """Smallest two-sided p of the stratified exact tests (rank or conditional) with these
    (n_x, n_y) per stratum: every stratum completely separated the same way (for rates: all
    events in one arm, as many events as that arm's runs), 2 prod_s 1 / C(n_xs + n_ys, n_xs).
    For rates with unequal arms the two tails differ and the exact conditional test can go
    below it: there it is an upper bound."""
    log_p = math.log(2) - sum(
        math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
        for n, m in sizes
        if n and m
    )
    return min(1.0, math.exp(log_p))


# ---------------------------------------------------------------------------------------------
# Rates


def _hypergeom_pmf(total: np.ndarray, events: np.ndarray, n_x: np.ndarray, k: np.ndarray):
    """P(k events among the n_x runs of x | total runs, events in all), vectorised."""
    log = (
        special.gammaln(events + 1)
        - special.gammaln(k + 1)
        - special.gammaln(events - k + 1)
        + special.gammaln(total - events + 1)
        - special.gammaln(n_x - k + 1)
        - special.gammaln(total - events - n_x + k + 1)
        - special.gammaln(total + 1)
        + special.gammaln(n_x + 1)
        + special.gammaln(total - n_x + 1)
    )
    valid = (k >= np.maximum(0, events - (total - n_x))) & (k <= np.minimum(n_x, events))
    return np.where(valid, np.exp(np.where(valid, log, 0.0)), 0.0)


def stratified_fisher_p(events_x, n_x, events_y, n_y) -> np.ndarray:
    """Two-sided p of the exact conditional test of a common odds ratio of 1, batched.

    Arrays of shape (..., S): events and runs of x and y per stratum, over any leading batch
    dimensions (the planning simulations); a stratum with no run on a side is skipped.
    Returns p with the batch shape.
    """
    ex, nx, ey, ny = (np.asarray(a, dtype=np.int64) for a in (events_x, n_x, events_y, n_y))
    ex, nx, ey, ny = np.broadcast_arrays(ex, nx, ey, ny)
    batch = ex.shape[:-1]
    ex, nx, ey, ny = (a.reshape(-1, a.shape[-1]) for a in (ex, nx, ey, ny))
    reps, strata = ex.shape
    width = int(nx.max(axis=0).sum()) + 1 if strata else 1
    pmfs = []
    for s in range(strata):
        top = int(nx[:, s].max())
        if top == 0 or int(ny[:, s].max()) == 0:
            continue
        k = np.arange(top + 1)
        pmf = _hypergeom_pmf(
            (nx[:, s] + ny[:, s])[:, None],
            (ex[:, s] + ey[:, s])[:, None],
            nx[:, s][:, None],
            k[None, :],
        )
        pmf[(nx[:, s] == 0) | (ny[:, s] == 0)] = np.eye(top + 1)[0]
        pmfs.append(pmf)
    if width > FFT_MIN_WIDTH:
        # The product of the strata's transforms: rounding of about 1e-16 of the largest
        # probability, far below any level a test is read at.
        size = 1 << (width - 1).bit_length()
        spectrum = np.ones((reps, size // 2 + 1), dtype=complex)
        for pmf in pmfs:
            spectrum *= np.fft.rfft(pmf, n=size, axis=1)
        dist = np.clip(np.fft.irfft(spectrum, n=size, axis=1)[:, :width], 0.0, None)
    else:
        dist = np.zeros((reps, width))
        dist[:, 0] = 1.0
        filled = 1
        for pmf in pmfs:
            new = np.zeros_like(dist)
            for j in range(pmf.shape[1]):
                new[:, j : j + filled] += dist[:, :filled] * pmf[:, j : j + 1]
            dist = new
            filled += pmf.shape[1] - 1
    used = (nx > 0) & (ny > 0)
    observed = np.where(used, ex, 0).sum(axis=1)
    p_obs = dist[np.arange(reps), observed] * _RELATIVE_TOLERANCE
    p = np.where(dist <= p_obs[:, None], dist, 0.0).sum(axis=1)
    return np.minimum(1.0, p).reshape(batch)

"""Exact permutation distributions of the study's rank tests, ties included, pooled over strata.

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

The exact conditional test of rates, which convolves hypergeometric laws, is
:mod:`ganstudy.analysis.fisher`; the smallest p of both tests is :func:`min_p_separated`.

**Precision.** Every probability above is a sum of positive terms, so a direct convolution keeps
machine precision relative to each probability, however small: the far tails, and with them
p-values of 1e-80, are right to about 1e-12 of their size. Direct convolution costs the product
of the two lengths (after dropping the lattice points no value can reach); above
``DIRECT_MAX_WORK`` a stratified rank law goes through the FFT instead, whose rounding is
absolute: about eps = 2.2e-16 times the largest probability in every entry (bounded here by
``FFT_ROUNDING``, 64 eps max p). A tail of up to L such entries is trusted where 64 eps max p L is
below ``TRUSTED`` (1e-6) of it; below that floor it is recomputed, by exponential tilting.
With the per-stratum laws p_s of I_s (T's lattice index is sum_s c_s I_s) and theta <= 0,

    q(j) = p(j) e^(theta j) / Z,   Z = prod_s sum_i p_s(i) e^(theta c_s i),
    P(T <= k) = Z e^(-theta k) sum_{j <= k} q(j) e^(theta (k - j)),

with theta the saddlepoint (q's mean is k): q is largest near k, where the FFT's rounding of q is
small beside it, and the weights e^(theta (k - j)) <= 1 shrink what lies further out. The bound
on that sum's rounding is checked, and the truncated direct convolution is the fallback. The
upper tail is the lower tail of the reversed laws. Products of probabilities underflow below
about 1e-308, so a p below ``SMALLEST_P`` (1e-290) may have lost terms, and is stated as
"< 1e-290" (:func:`ganstudy.analysis.stats.format_p`), never as 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import fft, optimize
from scipy import stats as sps

EXACT_MAX_VALUES = 100
EXACT_MAX_LATTICE = 4_000_000
DIRECT_MAX_WORK = 1_000_000_000  # multiply-adds of one direct convolution (about 0.15 s)
TRUSTED = 1e-6
SMALLEST_P = 1e-290
# The FFT's rounding per entry, relative to the largest probability: measured at 1 to 3 eps.
FFT_ROUNDING = 64 * np.finfo(float).eps

EXACT = "exact permutation"
NORMAL = "normal approximation (tie-corrected)"


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
    exact on the lattice T * 2 lcm (``probs``), or normal (``mean``, ``var``).

    ``floor``: where ``probs`` went through the FFT, the tail below which it is not trusted
    (0: convolved directly, trusted throughout); ``components``, kept there to recompute such
    tails: each stratum's law of 2 U with its step on the lattice (lcm / (n_x n_y))."""

    method: str
    lcm: int = 1
    probs: np.ndarray | None = None
    mean: float = math.nan
    var: float = math.nan
    components: tuple[tuple[np.ndarray, int], ...] = ()
    floor: float = 0.0

    @classmethod
    def of(cls, used: list[tuple[np.ndarray, np.ndarray]]) -> StratifiedNull:
        sizes = [len(x) * len(y) for x, y in used]
        lcm = math.lcm(*sizes)
        if (
            max(len(x) + len(y) for x, y in used) <= EXACT_MAX_VALUES
            and 2 * lcm * len(used) <= EXACT_MAX_LATTICE
        ):
            dist = np.ones(1)
            components = []
            rounding = 0.0
            for (x, y), size in zip(used, sizes):
                probs = u_distribution(x, y)
                components.append((probs, lcm // size))
                dist, direct = _convolve(dist, *components[-1])
                if not direct:
                    rounding += FFT_ROUNDING * dist.max()
            floor = rounding * len(dist) / TRUSTED
            kept = tuple(components) if floor else ()
            return cls(EXACT, lcm, dist, components=kept, floor=floor)
        var = sum(_u_variance(x, y) / s**2 for (x, y), s in zip(used, sizes))
        return cls(NORMAL, mean=len(used) / 2, var=var)

    @classmethod
    def without_ties(cls, sizes: list[tuple[int, int]]) -> StratifiedNull:
        """The null of strata with (n_x, n_y) values and no ties (continuous outcomes); the
        same sizes give the same (cached) law."""
        return _null_without_ties(tuple((int(n), int(m)) for n, m in sizes if n and m))

    @functools.cached_property
    def _cdf(self) -> np.ndarray:
        return np.cumsum(self.probs)

    @functools.cached_property
    def _sf(self) -> np.ndarray:
        return np.cumsum(self.probs[::-1])[::-1]

    @functools.cached_property
    def _tails(self) -> dict[int, float]:
        return {}

    def p(self, t: np.ndarray) -> np.ndarray:
        """Two-sided p of observed statistics ``t`` (an array): 2 min(P(T <= t), P(T >= t))."""
        t = np.asarray(t, dtype=float)
        if self.probs is None:
            if self.var <= 0:
                return np.ones_like(t)
            z = np.abs(t - self.mean) / math.sqrt(self.var)
            return np.minimum(1.0, 2 * sps.norm.sf(z))
        k = np.clip(np.rint(t * 2 * self.lcm).astype(np.int64), 0, len(self.probs) - 1)
        tail = np.minimum(self._cdf[k], self._sf[k])
        if self.floor > 0:
            for index in np.unique(k[tail < self.floor]):
                tail[k == index] = self._exact_tail(int(index))
        return np.minimum(1.0, 2 * tail)

    def _exact_tail(self, k: int) -> float:
        """The smaller tail at lattice index k, recomputed to machine precision (cached)."""
        if k not in self._tails:
            if self._cdf[k] <= self._sf[k]:
                self._tails[k] = _lower_tail(self.components, k)
            else:
                reversed_ = tuple((probs[::-1], step) for probs, step in self.components)
                self._tails[k] = _lower_tail(reversed_, len(self.probs) - 1 - k)
        return self._tails[k]


@functools.lru_cache(maxsize=256)
def _null_without_ties(sizes: tuple[tuple[int, int], ...]) -> StratifiedNull:
    return StratifiedNull.of([(np.arange(n, dtype=float), np.arange(n, n + m, dtype=float))
                              for n, m in sizes])  # fmt: skip


def _lattice(a: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(offset, stride, values): a's nonzero entries lie at offset + stride i, values[i] there
    (stride 0: a single one)."""
    idx = np.flatnonzero(a)
    stride = int(np.gcd.reduce(np.diff(idx))) if len(idx) > 1 else 0
    return int(idx[0]), stride, a[idx[0] : idx[-1] + 1 : max(1, stride)]


def _spread(values: np.ndarray, stride: int) -> np.ndarray:
    out = np.zeros((len(values) - 1) * stride + 1)
    out[::stride] = values
    return out


def _phased(dense: np.ndarray, values: np.ndarray, stride: int) -> np.ndarray:
    """dense convolved with values spread by stride: one direct convolution per phase."""
    out = np.zeros(len(dense) + (len(values) - 1) * stride)
    for phase in range(min(stride, len(dense))):
        out[phase::stride] = np.convolve(dense[phase::stride], values)
    return out


def _convolve(a: np.ndarray, b: np.ndarray, step: int = 1, direct: bool = False):
    """a convolved with b spread by ``step`` (b[i] at i * step), and whether it was direct.

    Direct (positive terms: machine precision relative to every entry) on the lattice both
    supports span, where that costs at most ``DIRECT_MAX_WORK`` multiply-adds or ``direct``
    says so; else through the FFT (absolute rounding), negatives of its rounding clipped.
    """
    offset_a, stride_a, values_a = _lattice(a)
    offset_b, stride_b, values_b = _lattice(b)
    offset_b, stride_b = offset_b * step, stride_b * step
    unit = math.gcd(stride_a, stride_b) or 1
    ra, rb = max(1, stride_a // unit), max(1, stride_b // unit)
    work_a = ((len(values_a) - 1) * ra + 1) * len(values_b)
    work_b = ((len(values_b) - 1) * rb + 1) * len(values_a)
    out = np.zeros(len(a) + (len(b) - 1) * step)
    if direct or min(work_a, work_b) <= DIRECT_MAX_WORK:
        if work_a <= work_b:
            core = _phased(_spread(values_a, ra), values_b, rb)
        else:
            core = _phased(_spread(values_b, rb), values_a, ra)
        out[offset_a + offset_b :: unit][: len(core)] = core
        return out, True
    spread = _spread(b, step)
    n = fft.next_fast_len(len(out), real=True)
    product = fft.rfft(a, n) * fft.rfft(spread, n)
    return np.clip(fft.irfft(product, n)[: len(out)], 0.0, None), False


def _lower_tail(components: tuple[tuple[np.ndarray, int], ...], k: int) -> float:
    """P(sum_s step_s I_s <= k), I_s ~ probs_s independent, to machine precision: by
    exponential tilting at the saddlepoint (module docstring), else directly."""
    logs, positions = [], []
    for probs, step in components:
        with np.errstate(divide="ignore"):
            logs.append(np.log(probs))
        positions.append(np.arange(len(probs)) * step)
    lowest = sum(int(pos[np.flatnonzero(probs)[0]])
                 for (probs, _), pos in zip(components, positions))  # fmt: skip

    def tilted(theta: float):
        """Per stratum the tilted law (sum 1) and log of its normaliser."""
        for lp, pos in zip(logs, positions):
            w = lp + theta * pos
            top = w.max()
            q = np.exp(w - top)
            total = q.sum()
            yield q / total, top + math.log(total), pos

    def excess(theta: float) -> float:
        return sum(float(q @ pos) for q, _, pos in tilted(theta)) - k

    if k < lowest:
        return 0.0
    theta = 0.0
    if k == lowest:
        theta = -_THETA_MAX
    elif excess(0.0) > 0:
        theta = -_THETA_MAX
        if excess(theta) < 0:
            theta = optimize.brentq(excess, theta, 0.0, xtol=1e-12, rtol=1e-10)
    length = sum(int(pos[-1]) for pos in positions) + 1
    n = fft.next_fast_len(length, real=True)
    spectrum = np.ones(n // 2 + 1, dtype=complex)
    log_z = 0.0
    for q, log_norm, pos in tilted(theta):
        dense = np.zeros(length)
        dense[pos] = q
        spectrum *= fft.rfft(dense, n)
        log_z += log_norm
    q = fft.irfft(spectrum, n)[:length]
    weights = np.exp(theta * (k - np.arange(k + 1)))
    head = float(q[: k + 1] @ weights)
    rounding = FFT_ROUNDING * q.max() * weights.sum()
    if head > 0 and rounding <= TRUSTED * head:
        return math.exp(log_z - theta * k + math.log(head))
    dist = np.ones(1)
    for probs, step in components:
        dist = _convolve(dist, probs[: k // step + 1], step, direct=True)[0][: k + 1]
    return float(dist.sum())


# Tilting beyond this (per lattice step) leaves no mass above the lowest point.
_THETA_MAX = 1_000.0


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

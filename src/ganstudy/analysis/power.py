"""The power of the study's tests, known before any run: the smallest p-value a test can reach
with the planned seeds, Holm's threshold over the planned family, and the smallest effect the
design detects with 80% power.

Continuous metrics (FID, modes covered, KL) are compared with the two-sided Mann-Whitney U test,
binary outcomes (success, diverged, ...) as rates with the two-sided Fisher exact test (see
:mod:`ganstudy.analysis.stats`). Pure Python (math, statistics): the Snakefile plans the study with it
when it is parsed.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from statistics import NormalDist

from ganstudy.metrics.registry import CONTINUOUS, KINDS, RATE

# The significance level of the study's tests (family-wise, with Holm's correction over a family):
# defined here only; planning, the statistics and the report import it.
ALPHA = 0.05
POWER = 0.8
_RELATIVE_TOLERANCE = 1 + 1e-7  # scipy's tolerance for tables as probable as the observed one


def min_p_mann_whitney(n_x: int, n_y: int) -> float:
    """Smallest two-sided p of an exact Mann-Whitney U test with n_x and n_y values: complete
    separation, p_min = 2 / C(n_x + n_y, n_x) (capped at 1). 3 vs 3 gives 0.1; 5 vs 5 2/252."""
    if n_x < 1 or n_y < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_x + n_y, n_x))


def _margin_ps(n_x: int, n_y: int, successes: int) -> tuple[int, list[float]]:
    """Two-sided Fisher p of every table with these margins: (the smallest k_x, p per k_x).

    Given the margins, the successes of x follow the hypergeometric law
    P(k) = C(n_x, k) C(n_y, K - k) / C(N, K) with K = k_x + k_y, N = n_x + n_y; p(k) is the sum
    of P(j) over the tables j no more probable than k (as scipy.stats.fisher_exact), summed from
    the least probable up.
    """
    total = n_x + n_y
    norm = math.comb(total, successes)
    lo, hi = max(0, successes - n_y), min(n_x, successes)
    probs = [math.comb(n_x, k) * math.comb(n_y, successes - k) / norm for k in range(lo, hi + 1)]
    ascending = sorted(probs)
    cumulative = list(itertools.accumulate(ascending))
    ps = [
        min(1.0, cumulative[bisect.bisect_right(ascending, prob * _RELATIVE_TOLERANCE) - 1])
        for prob in probs
    ]
    return lo, ps


def fisher_p(k_x: int, n_x: int, k_y: int, n_y: int) -> float:
    """Two-sided Fisher exact p of k_x successes of n_x against k_y of n_y (see
    :func:`_margin_ps`)."""
    lo, ps = _margin_ps(n_x, n_y, k_x + k_y)
    return ps[k_x - lo]


@functools.lru_cache(maxsize=256)
def _fisher_table(n_x: int, n_y: int) -> tuple[tuple[float, ...], ...]:
    """p of every outcome (k_x, k_y) for arms of n_x and n_y runs: the tables of one margin
    K = k_x + k_y share one hypergeometric law, so each law is computed once."""
    table = [[1.0] * (n_y + 1) for _ in range(n_x + 1)]
    for successes in range(n_x + n_y + 1):
        lo, ps = _margin_ps(n_x, n_y, successes)
        for k_x, p in enumerate(ps, start=lo):
            table[k_x][successes - k_x] = p
    return tuple(tuple(row) for row in table)


def min_p_fisher(n_x: int, n_y: int) -> float:
    """Smallest two-sided p of a Fisher exact test of two rates over n_x and n_y runs (every run
    of one arm a success, none of the other: 2 / C(2n, n) for equal arms)."""
    if n_x < 1 or n_y < 1:
        return 1.0
    return min(min(row) for row in _fisher_table(n_x, n_y))


def min_p(kind: str, n_x: int, n_y: int) -> float:
    """The smallest p-value the test of ``kind`` can give with these arm sizes."""
    if kind == CONTINUOUS:
        return min_p_mann_whitney(n_x, n_y)
    if kind == RATE:
        return min_p_fisher(n_x, n_y)
    raise ValueError(f"test kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")


def holm_threshold(family: int, alpha: float = ALPHA) -> float:
    """The level the smallest p of a family of ``family`` tests must reach for Holm's procedure
    to reject anything: alpha / m. A comparison whose smallest reachable p is above it can never
    be significant after the correction."""
    return alpha / max(1, family)


def detectable_cliffs_delta(n_x: int, n_y: int, level: float, power: float = POWER) -> float | None:
    """Smallest |Cliff's delta| a two-sided Mann-Whitney test at ``level`` detects with
    probability ``power`` (Noether's approximation).

    With N = n_x + n_y, c = n_x / N and P = P(Y > X), the test has the requested power when
    |P - 1/2| = (z_{1 - level/2} + z_power) / sqrt(12 c (1 - c) N); Cliff's delta is
    2 P - 1. None when even complete separation cannot reach ``level``, or delta would exceed 1.
    """
    if n_x < 1 or n_y < 1 or min_p_mann_whitney(n_x, n_y) > level:
        return None
    z = NormalDist().inv_cdf
    n = n_x + n_y
    c = n_x / n
    delta = 2 * (z(1 - level / 2) + z(power)) / math.sqrt(12 * c * (1 - c) * n)
    return delta if delta <= 1 else None


def _binomial(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def fisher_power(rate_x: float, rate_y: float, n_x: int, n_y: int, level: float) -> float:
    """Exact probability that the two-sided Fisher test at ``level`` rejects when the arms'
    true rates are rate_x and rate_y: the binomial probability of the outcomes whose p <= level."""
    table = _fisher_table(n_x, n_y)
    px, py = _binomial(n_x, rate_x), _binomial(n_y, rate_y)
    return sum(
        px[kx] * py[ky] for kx in range(n_x + 1) for ky in range(n_y + 1) if table[kx][ky] <= level
    )


def fisher_detectable_rate_difference(
    n_x: int, n_y: int, level: float, power: float = POWER, base_rate: float = 0.5
) -> float | None:
    """Smallest |rate_y - rate_x| (in steps of 0.01) that one two-sided Fisher test of two arms
    of n_x and n_y runs at ``level`` detects with probability ``power`` (exact) when the
    baseline's rate is ``base_rate``; None when no rate of the candidate is detected that often."""
    if n_x < 1 or n_y < 1 or min_p_fisher(n_x, n_y) > level:
        return None
    for step in range(1, 101):
        d = step / 100
        for rate_y in (base_rate + d, base_rate - d):
            if 0.0 <= rate_y <= 1.0 and fisher_power(base_rate, rate_y, n_x, n_y, level) >= power:
                return d
    return None


@functools.lru_cache(maxsize=4096)
def detectable_effect(
    kind: str, n_x: int, n_y: int, level: float, power: float = POWER, base_rate: float = 0.5
) -> float | None:
    """The detectable effect of a test kind: Cliff's delta, or a difference of rates."""
    if kind == CONTINUOUS:
        return detectable_cliffs_delta(n_x, n_y, level, power)
    return fisher_detectable_rate_difference(n_x, n_y, level, power, base_rate)


def describe_effect(kind: str, effect: float | None) -> str:
    if effect is None:
        return "no effect reaches 80% power"
    if kind == CONTINUOUS:
        return f"|Cliff's delta| >= {effect:.2f}"
    return f"rate difference >= {effect:.2f}"

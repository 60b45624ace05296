"""Statistics for comparing two losses over seeds: pure functions of arrays of per-seed values.

Everything here is deterministic given its inputs (bootstraps take an explicit seed), so a report
rendered twice from the same results prints the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
N_BOOTSTRAP = 10_000


def _finite(values) -> np.ndarray:
    """The finite values of ``values`` as a float array (None / NaN / inf dropped)."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return arr[np.isfinite(arr)]


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof = 1) and n of the finite values.

    mean = sum(x) / n,  SD = sqrt(sum((x - mean)^2) / (n - 1)); SD is NaN for n < 2, both NaN for n = 0.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    sd = float(np.std(x, ddof=1)) if n > 1 else math.nan
    return float(np.mean(x)), sd, n


def _percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r} is not allowed; allowed: a number in (0, 1)")


def bootstrap_ci_mean(
    values, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Draw B resamples x*_b of size n with replacement from x, compute m_b = mean(x*_b), and return
    the (1 - level)/2 and (1 + level)/2 quantiles of {m_b}. NaN bounds for fewer than 2 values: one
    value says nothing about the spread.
    """
    _check_level(level)
    x = _finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    return _percentile_interval(x[idx].mean(axis=1), level)


def bootstrap_ci_diff_means(
    x, y, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of mean(y) - mean(x).

    The two samples are resampled independently (each with replacement, keeping its own size n_x,
    n_y): d_b = mean(y*_b) - mean(x*_b); the interval is the (1 - level)/2 and (1 + level)/2
    quantiles of {d_b}. NaN bounds when either sample has fewer than 2 values.
    """
    _check_level(level)
    a, b = _finite(x), _finite(y)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot_a = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    boot_b = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1)
    return _percentile_interval(boot_b - boot_a, level)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN entries stay NaN, not counted).

    Sort the m valid p-values ascending, p_(1) <= ... <= p_(m); the adjusted value of p_(i) is
    min(1, max_{j <= i} (m - j + 1) * p_(j)). Rejecting where the adjusted value is < alpha is
    Holm's step-down procedure at family-wise error rate alpha.
    """
    p = np.asarray([np.nan if v is None else v for v in pvalues], dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        out[i] = min(1.0, running)
    return out.tolist()


def min_two_sided_p(n_x: int, n_y: int) -> float:
    """The smallest two-sided p-value an exact Mann-Whitney U test can give for sizes n_x, n_y.

    It occurs at complete separation: p_min = 2 / C(n_x + n_y, n_x) (capped at 1). If p_min is above
    alpha, no outcome of the experiment can be significant: there are too few seeds for a test.
    """
    if n_x < 1 or n_y < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_x + n_y, n_x))


@dataclass(frozen=True)
class MannWhitney:
    u: float
    p: float
    n_x: int
    n_y: int


def mann_whitney(x, y) -> MannWhitney:
    """Two-sided Mann-Whitney U test of x against y (scipy.stats.mannwhitneyu, method "auto").

    U counts the pairs (x_i, y_j) with x_i > y_j (ties count 1/2); under H0 (same distribution)
    P(X > Y) = 1/2. scipy uses the exact null distribution for small samples without ties and the
    tie-corrected normal approximation otherwise. When every value of both samples is equal the
    statistic has no spread and the samples agree perfectly: p = 1. Needs at least one value on
    each side; p is NaN otherwise.
    """
    a, b = _finite(x), _finite(y)
    if len(a) == 0 or len(b) == 0:
        return MannWhitney(math.nan, math.nan, len(a), len(b))
    if np.all(a == a[0]) and np.all(b == a[0]):
        return MannWhitney(len(a) * len(b) / 2.0, 1.0, len(a), len(b))
    res = sps.mannwhitneyu(a, b, alternative="two-sided")
    return MannWhitney(float(res.statistic), float(res.pvalue), len(a), len(b))


@dataclass(frozen=True)
class Comparison:
    """A baseline-vs-candidate comparison on one metric (difference = candidate - baseline)."""

    metric: str
    higher_is_better: bool
    n_baseline: int
    n_candidate: int
    mean_baseline: float
    mean_candidate: float
    difference: float
    ci_low: float
    ci_high: float
    u: float
    p: float
    testable: bool
    reason: str = ""


def compare(
    baseline,
    candidate,
    metric: str,
    higher_is_better: bool,
    alpha: float = ALPHA,
    level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare per-seed values of a candidate against a baseline.

    difference = mean(candidate) - mean(baseline) with its percentile bootstrap CI
    (:func:`bootstrap_ci_diff_means`) and the two-sided Mann-Whitney p (:func:`mann_whitney`).
    ``testable`` is False, with the reason, when a side has fewer than 2 values or when even
    complete separation could not reach ``alpha`` (:func:`min_two_sided_p`); p is still reported.
    """
    a, b = _finite(baseline), _finite(candidate)
    test = mann_whitney(a, b)
    lo, hi = bootstrap_ci_diff_means(a, b, level=level, seed=seed)
    mean_a = float(np.mean(a)) if len(a) else math.nan
    mean_b = float(np.mean(b)) if len(b) else math.nan
    reason = ""
    if len(a) < 2 or len(b) < 2:
        reason = f"too few seeds for a test (n = {len(a)} vs {len(b)}; at least 2 each needed)"
    elif min_two_sided_p(len(a), len(b)) >= alpha:
        reason = (
            f"too few seeds for a test at the {alpha:g} level (n = {len(a)} vs {len(b)}: the "
            f"smallest possible two-sided p is {min_two_sided_p(len(a), len(b)):.3g})"
        )
    return Comparison(
        metric=metric,
        higher_is_better=higher_is_better,
        n_baseline=len(a),
        n_candidate=len(b),
        mean_baseline=mean_a,
        mean_candidate=mean_b,
        difference=mean_b - mean_a,
        ci_low=lo,
        ci_high=hi,
        u=test.u,
        p=test.p,
        testable=not reason,
        reason=reason,
    )


def verdict(
    cmp: Comparison,
    p_adjusted: float,
    baseline: str,
    candidate: str,
    alpha: float = ALPHA,
    level: float = 0.95,
) -> str:
    """One plain-language sentence for a comparison whose Holm-adjusted p is ``p_adjusted``.

    "no significant difference" when p_adjusted >= alpha; otherwise which side is better on the
    metric (the sign of the difference read with ``higher_is_better``); the reason instead of a
    verdict when the comparison is not testable.
    """
    if not cmp.testable:
        return f"{cmp.reason}."
    if math.isnan(p_adjusted):
        return "no test possible (the Mann-Whitney p-value is undefined)."
    ci = f"{level:.0%} CI of the difference [{cmp.ci_low:.3g}, {cmp.ci_high:.3g}]"
    if p_adjusted >= alpha:
        return (
            f"no significant difference on {cmp.metric} between {candidate} and {baseline} "
            f"(Holm-adjusted p = {p_adjusted:.3g}; {ci})."
        )
    better = candidate if (cmp.difference > 0) == cmp.higher_is_better else baseline
    direction = "higher" if cmp.difference > 0 else "lower"
    return (
        f"{candidate} has a significantly {direction} {cmp.metric} than {baseline}, so {better} "
        f"is better on it (difference {cmp.difference:+.3g}; {ci}; Holm-adjusted p = {p_adjusted:.3g})."
    )

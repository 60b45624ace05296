"""Statistics for comparing two losses over seeds: pure functions of arrays of per-seed values.

Everything here is deterministic given its inputs (bootstraps take an explicit seed), so a report
rendered twice from the same results prints the same numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ganstudy.analysis import power

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


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r} is not allowed; allowed: a number in (0, 1)")


def bootstrap_ci(
    statistic, samples, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of ``statistic(*samples)`` with scipy.stats.bootstrap.

    The samples are resampled independently (each with replacement, keeping its size). The
    interval is BCa (bias-corrected and accelerated); where BCa is undefined (a degenerate
    bootstrap distribution, e.g. all resamples equal) it falls back to the percentile interval:
    the (1 - level)/2 and (1 + level)/2 quantiles of the resampled statistic.
    """
    _check_level(level)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate distributions: handled below
            res = sps.bootstrap(
                samples,
                statistic,
                n_resamples=n_boot,
                confidence_level=level,
                method=method,
                vectorized=True,
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return lo, hi


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _diff_means(x, y, axis=-1):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def bootstrap_ci_mean(
    values, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean (:func:`bootstrap_ci`). NaN bounds for fewer
    than 2 values: one value says nothing about the spread."""
    _check_level(level)
    x = _finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    return bootstrap_ci(_mean, (x,), level, n_boot, seed)


def bootstrap_ci_diff_means(
    x, y, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of mean(y) - mean(x), the two samples resampled
    independently (:func:`bootstrap_ci`). NaN bounds when either has fewer than 2 values."""
    _check_level(level)
    a, b = _finite(x), _finite(y)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    return bootstrap_ci(_diff_means, (a, b), level, n_boot, seed)


def cliffs_delta(x, y, axis=-1):
    """Cliff's delta of y against x: (#{(i, j): y_j > x_i} - #{(i, j): y_j < x_i}) / (n_x n_y),
    in [-1, 1]; without ties 2 P(Y > X) - 1. Positive: y tends to be higher. Vectorised over the
    other dimensions (the bootstrap's resamples)."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    return np.sign(y[..., None, :] - x[..., :, None]).mean(axis=(-2, -1))


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
    """The smallest two-sided p-value an exact Mann-Whitney U test can give for sizes n_x, n_y
    (:func:`ganstudy.analysis.power.min_p_mann_whitney`): 2 / C(n_x + n_y, n_x), capped at 1."""
    return power.min_p_mann_whitney(n_x, n_y)


@dataclass(frozen=True)
class MannWhitney:
    u: float
    p: float
    n_x: int
    n_y: int
    method: str = ""


def mann_whitney(x, y) -> MannWhitney:
    """Two-sided Mann-Whitney U test of x against y, exact with ties
    (:func:`ganstudy.analysis.exact.mann_whitney`: the permutation distribution of U given the
    pooled values; its normal approximation above 100 values).

    U counts the pairs (x_i, y_j) with x_i > y_j (ties count 1/2); under H0 (same distribution)
    P(X > Y) = 1/2. When every value of both samples is equal the statistic has no spread and
    the samples agree perfectly: p = 1. Needs at least one value on each side; p is NaN
    otherwise. The plan's smallest reachable p (:func:`ganstudy.analysis.power.min_p_mann_whitney`) is
    this test's without ties.
    """
    from ganstudy.analysis import exact

    a, b = _finite(x), _finite(y)
    if len(a) == 0 or len(b) == 0:
        return MannWhitney(math.nan, math.nan, len(a), len(b), exact.EXACT)
    test = exact.mann_whitney(a, b)
    return MannWhitney(exact.u_statistic(a, b), float(test.p), len(a), len(b), test.method)


@dataclass(frozen=True)
class MetricComparison:
    """The result of testing a candidate arm against the baseline on one metric (difference =
    candidate - baseline).

    ``kind`` "continuous": Mann-Whitney U (``u``, ``p``) and Cliff's delta as the effect size;
    "rate": Fisher's exact test on the counts of true values (``u`` is NaN) and the difference
    of rates as the effect size. ``min_p`` is the smallest p the test can reach at these n.
    """

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
    kind: str = power.CONTINUOUS
    effect: float = math.nan
    effect_low: float = math.nan
    effect_high: float = math.nan
    min_p: float = math.nan
    method: str = ""

    @property
    def effect_name(self) -> str:
        return "Cliff's delta" if self.kind == power.CONTINUOUS else "rate difference"


def fisher_rates(x, y) -> float:
    """Two-sided Fisher exact p of the rates of true values in x and y (0/1 or booleans)."""
    a, b = _finite(x), _finite(y)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    table = [[int(a.sum()), len(a) - int(a.sum())], [int(b.sum()), len(b) - int(b.sum())]]
    return float(sps.fisher_exact(table, alternative="two-sided").pvalue)


def compare(
    baseline,
    candidate,
    metric: str,
    higher_is_better: bool,
    alpha: float = power.ALPHA,
    level: float = 0.95,
    seed: int = 0,
    kind: str = power.CONTINUOUS,
) -> MetricComparison:
    """Compare per-seed values of a candidate against a baseline.

    difference = mean(candidate) - mean(baseline) (for rates, the difference of rates) with its
    bootstrap CI (:func:`bootstrap_ci_diff_means`); the p of the kind's test; the effect size
    with its bootstrap CI (Cliff's delta, BCa; for rates the rate difference). ``testable`` is
    False, with the reason, when a side has fewer than 2 values or when even the most extreme
    outcome could not reach ``alpha`` (:func:`ganstudy.analysis.power.min_p`); p is still reported.
    """
    a, b = _finite(baseline), _finite(candidate)
    if kind == power.RATE:
        u, p, method = math.nan, fisher_rates(a, b), "Fisher exact"
    else:
        test = mann_whitney(a, b)
        u, p, method = test.u, test.p, test.method
    lo, hi = bootstrap_ci_diff_means(a, b, level=level, seed=seed)
    mean_a = float(np.mean(a)) if len(a) else math.nan
    mean_b = float(np.mean(b)) if len(b) else math.nan
    effect = effect_lo = effect_hi = math.nan
    if len(a) and len(b):
        if kind == power.RATE:
            effect, effect_lo, effect_hi = mean_b - mean_a, lo, hi
        else:
            effect = float(cliffs_delta(a, b))
            if len(a) >= 2 and len(b) >= 2:
                effect_lo, effect_hi = bootstrap_ci(cliffs_delta, (a, b), level, seed=seed)
    smallest = power.min_p(kind, len(a), len(b))
    reason = ""
    if len(a) < 2 or len(b) < 2:
        reason = f"too few seeds for a test (n = {len(a)} vs {len(b)}; at least 2 each needed)"
    elif smallest >= alpha:
        reason = (
            f"too few seeds for a test at the {alpha:g} level (n = {len(a)} vs {len(b)}: the "
            f"smallest possible two-sided p is {smallest:.3g})"
        )
    return MetricComparison(
        metric=metric,
        higher_is_better=higher_is_better,
        n_baseline=len(a),
        n_candidate=len(b),
        mean_baseline=mean_a,
        mean_candidate=mean_b,
        difference=mean_b - mean_a,
        ci_low=lo,
        ci_high=hi,
        u=u,
        p=p,
        testable=not reason,
        reason=reason,
        kind=kind,
        effect=effect,
        effect_low=effect_lo,
        effect_high=effect_hi,
        min_p=smallest,
        method=method,
    )


def verdict(
    cmp: MetricComparison,
    p_adjusted: float,
    baseline: str,
    candidate: str,
    alpha: float = power.ALPHA,
    level: float = 0.95,
    detectable: str | None = None,
) -> str:
    """One plain-language sentence for a comparison whose Holm-adjusted p is ``p_adjusted``.

    "no significant difference" when p_adjusted >= alpha; otherwise which side is better on the
    metric (the sign of the difference read with ``higher_is_better``); the reason instead of a
    verdict when the comparison is not testable.
    """
    if not cmp.testable:
        return f"{cmp.reason}."
    if math.isnan(p_adjusted):
        return "no test possible (the p-value is undefined)."
    ci = f"{level:.0%} CI of the difference [{cmp.ci_low:.3g}, {cmp.ci_high:.3g}]"
    if p_adjusted >= alpha:
        text = (
            f"no significant difference on {cmp.metric} between {candidate} and {baseline} "
            f"(Holm-adjusted p = {p_adjusted:.3g}; {ci})."
        )
        if detectable:
            text += f" With these seeds the test detects {detectable} with 80% power."
        return text
    better = candidate if (cmp.difference > 0) == cmp.higher_is_better else baseline
    direction = "higher" if cmp.difference > 0 else "lower"
    return (
        f"{candidate} has a significantly {direction} {cmp.metric} than {baseline}, so {better} "
        f"is better on it (difference {cmp.difference:+.3g}; {ci}; Holm-adjusted p = {p_adjusted:.3g})."
    )

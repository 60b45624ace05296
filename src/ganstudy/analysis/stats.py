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
from ganstudy.metrics.registry import CONTINUOUS, RATE

N_BOOTSTRAP = 10_000


def _finite(values) -> np.ndarray:
    """The finite values of ``values`` as a float array (None / NaN / inf dropped)."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _valued(values) -> np.ndarray:
    """The values of the runs that have one (None / NaN dropped), +/-inf kept: a run that
    diverged, at the worse end of its metric."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return arr[~np.isnan(arr)]


def format_p(p, relation: bool = False) -> str:
    """A p-value to 3 significant digits, never "0": below
    :data:`ganstudy.analysis.exact.SMALLEST_P`, where products of probabilities may have
    underflowed, "< 1e-290"; "-" for none (None, NaN). ``relation``: for a sentence's
    "p ...", "= 0.012", "< 1e-290" or "= -"."""
    from ganstudy.analysis import exact

    if p is None or math.isnan(p):
        return "= -" if relation else "-"
    if p < exact.SMALLEST_P:
        return f"< {exact.SMALLEST_P:g}"
    return f"= {p:.3g}" if relation else f"{p:.3g}"


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


def mann_whitney(x, y, completed_only: bool = False) -> MannWhitney:
    """Two-sided Mann-Whitney U test of x against y, exact with ties
    (:func:`ganstudy.analysis.exact.mann_whitney`: the permutation distribution of U given the
    pooled values; its normal approximation above 100 values).

    U counts the pairs (x_i, y_j) with x_i > y_j (ties count 1/2); under H0 (same distribution)
    P(X > Y) = 1/2. A run that diverged is -inf or +inf, the worse end of its metric: it is
    ranked there, tied with the other diverged runs, never dropped (the pooled tests' rule,
    :mod:`ganstudy.analysis.pooled`); ``completed_only`` drops them instead. A run without a
    value (None, NaN) is left out. When every value of both samples is equal the statistic has
    no spread and the samples agree perfectly: p = 1. Needs at least one value on each side; p
    is NaN otherwise. The plan's smallest reachable p
    (:func:`ganstudy.analysis.power.min_p_mann_whitney`) is this test's without ties.
    """
    from ganstudy.analysis import exact

    a, b = (_finite(v) if completed_only else _valued(v) for v in (x, y))
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
    The n count the runs that diverged (``diverged_*`` of them), which the test ranks worst;
    ``p_completed_only`` is the same test without them (NaN where none diverged).
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
    kind: str = CONTINUOUS
    effect: float = math.nan
    effect_low: float = math.nan
    effect_high: float = math.nan
    min_p: float = math.nan
    method: str = ""
    diverged_baseline: int = 0
    diverged_candidate: int = 0
    p_completed_only: float = math.nan

    @property
    def diverged(self) -> bool:
        return bool(self.diverged_baseline or self.diverged_candidate)

    @property
    def effect_name(self) -> str:
        return "Cliff's delta" if self.kind == CONTINUOUS else "rate difference"


def fisher_rates(x, y) -> float:
    """Two-sided Fisher exact p of the rates of true values in x and y (0/1 or booleans)."""
    a, b = _finite(x), _finite(y)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    table = [[int(a.sum()), len(a) - int(a.sum())], [int(b.sum()), len(b) - int(b.sum())]]
    return float(sps.fisher_exact(table, alternative="two-sided").pvalue)


def _runs(values, diverged, worst: float) -> tuple[np.ndarray, np.ndarray]:
    """(values, diverged) of the runs with a value or that diverged, a diverged run (flagged in
    ``diverged``, or an infinite value) at ``worst``; runs without a value (None, NaN) left out."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    flag = np.isinf(arr)
    if diverged is not None:
        flag |= np.asarray(diverged, dtype=bool).ravel()
    arr = np.where(flag, worst, arr)
    keep = ~np.isnan(arr)
    return arr[keep], flag[keep]


def _test(kind: str, a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """(p, U, method) of the kind's test of a against b."""
    if kind == RATE:
        return fisher_rates(a, b), math.nan, "Fisher exact"
    test = mann_whitney(a, b)
    return test.p, test.u, test.method


def compare(
    baseline,
    candidate,
    metric: str,
    higher_is_better: bool,
    alpha: float = power.ALPHA,
    level: float = 0.95,
    seed: int = 0,
    kind: str = CONTINUOUS,
    diverged_baseline=None,
    diverged_candidate=None,
) -> MetricComparison:
    """Compare per-seed values of a candidate against a baseline.

    Runs that diverged (``diverged_*``: a flag per value; an infinite value is one too) are
    never dropped, as in the pooled tests (:mod:`ganstudy.analysis.pooled`): on a continuous
    metric they rank at its worse end, tied among themselves (-inf if higher is better, else
    +inf); on a rate they count as its worse outcome (0 if higher is better, else 1). The n
    count them, and ``p_completed_only`` is the same test without them. Runs without a value
    (None, NaN) are left out.

    difference = mean(candidate) - mean(baseline) (for rates, the difference of rates, every run
    counted; for continuous metrics, of the completed runs) with its bootstrap CI
    (:func:`bootstrap_ci_diff_means`); the p of the kind's test; the effect size with its
    bootstrap CI (Cliff's delta, BCa, diverged runs ranked as in the test; for rates the rate
    difference). ``testable`` is False, with the reason, when a side has fewer than 2 values or
    when even the most extreme outcome could not reach ``alpha``
    (:func:`ganstudy.analysis.power.min_p`); p is still reported.
    """
    if kind == RATE:
        worst = 0.0 if higher_is_better else 1.0
    else:
        worst = -math.inf if higher_is_better else math.inf
    a, diverged_a = _runs(baseline, diverged_baseline, worst)
    b, diverged_b = _runs(candidate, diverged_candidate, worst)
    p, u, method = _test(kind, a, b)
    p_completed = math.nan
    if diverged_a.any() or diverged_b.any():
        p_completed = _test(kind, a[~diverged_a], b[~diverged_b])[0]
    # A diverged run has no value to average on a continuous metric.
    mean_of = (a, b) if kind == RATE else (a[~diverged_a], b[~diverged_b])
    lo, hi = bootstrap_ci_diff_means(*mean_of, level=level, seed=seed)
    mean_a, mean_b = (float(np.mean(v)) if len(v) else math.nan for v in mean_of)
    effect = effect_lo = effect_hi = math.nan
    if len(a) and len(b):
        if kind == RATE:
            effect, effect_lo, effect_hi = mean_b - mean_a, lo, hi
        else:
            # Cliff's delta depends on the order only: on the pooled ranks, infinite values
            # (diverged runs) compare as tied among themselves.
            ranks = sps.rankdata(np.concatenate([a, b]))
            rank_a, rank_b = ranks[: len(a)], ranks[len(a) :]
            effect = float(cliffs_delta(rank_a, rank_b))
            if len(a) >= 2 and len(b) >= 2:
                effect_lo, effect_hi = bootstrap_ci(
                    cliffs_delta, (rank_a, rank_b), level, seed=seed
                )
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
        diverged_baseline=int(diverged_a.sum()),
        diverged_candidate=int(diverged_b.sum()),
        p_completed_only=p_completed,
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
    metric (the sign of the effect size, the direction the test ranks, read with
    ``higher_is_better``); the reason instead of a verdict when the comparison is not testable.
    """
    if not cmp.testable:
        return f"{cmp.reason}."
    if math.isnan(p_adjusted):
        return "no test possible (the p-value is undefined)."
    ci = f"{level:.0%} CI of the difference [{cmp.ci_low:.3g}, {cmp.ci_high:.3g}]"
    if p_adjusted >= alpha:
        text = (
            f"no significant difference on {cmp.metric} between {candidate} and {baseline} "
            f"(Holm-adjusted p {format_p(p_adjusted, True)}; {ci})."
        )
        if detectable:
            text += f" With these seeds the test detects {detectable} with 80% power."
        return text
    # The effect size, not the difference of means: a continuous metric's difference is over
    # completed runs, while the test also ranks the diverged ones.
    higher = cmp.effect > 0
    better = candidate if higher == cmp.higher_is_better else baseline
    direction = "higher" if higher else "lower"
    return (
        f"{candidate} has a significantly {direction} {cmp.metric} than {baseline}, so {better} "
        f"is better on it (difference {cmp.difference:+.3g}; {ci}; Holm-adjusted p "
        f"{format_p(p_adjusted, True)})."
    )

"""Pooled, stratified tests of one primary hypothesis: candidate vs baseline over cells (strata).

A :class:`Cell` holds one stratum's per-run outcomes of both arms. Runs that diverged are never
dropped: on a rate they count as the outcome's ``if_diverged`` value (not a success; collapsed;
diverged), on a continuous outcome they rank below every run that completed (ties among
themselves). The same analysis among completed runs only is computed beside it.

Rates (:func:`pooled_rate`):

- p: the exact conditional test of a common odds ratio of 1 (stratified Fisher;
  :func:`ganstudy.analysis.fisher.stratified_fisher_p`), exact at any count;
- effect: the Mantel-Haenszel common odds ratio (odds of the event under the candidate over
  the baseline's) with its Robins-Breslow-Greenland 95% CI, and beside them the Cochran-Mantel-
  Haenszel chi-square test (continuity-corrected) and the Breslow-Day test of a common odds ratio
  (Tarone-adjusted), all from statsmodels' ``StratifiedTable``;
- per cell (the forest plot): the odds ratio with Woolf's 95% CI, 0.5 added to every count of a
  table with a zero (Haldane-Anscombe).

Continuous outcomes (:func:`pooled_continuous`), oriented so that higher is better:

- effect: the probability of improvement, P(candidate better than baseline) + P(tie) / 2 per
  cell (U / (n_c n_b)), averaged over cells (rliable's "probability of improvement"), with a
  stratified bootstrap 95% CI (scipy.stats.bootstrap, each arm of each cell resampled on its
  own: BCa, else percentile);
- p: the stratified permutation test with that mean as its statistic (labels permuted within
  cells; exact, ties included: :func:`ganstudy.analysis.exact.stratified_rank_test`);
- per cell: its probability of improvement with a percentile bootstrap CI.

Heterogeneity (does the effect depend on the cell?): Cochran's Q over the cells' effects
(statsmodels' ``combine_effects``; log odds ratios with Woolf's variance; probabilities of
improvement with the Hanley-McNeil variance at the pooled value) and, per factor that varies
(batch norm, architecture, dataset), the between-groups Q of a subgroup analysis,
Q_between = Q - sum_g Q_g on G - 1 degrees of freedom. Asymptotic chi-square tests: with few
seeds per cell they are rough, and they are stated as such.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ganstudy.analysis import exact, fisher

LEVEL = 0.95
N_BOOTSTRAP = 4_000
FACTORS = ("bn", "arch", "dataset")


@dataclass(frozen=True)
class Cell:
    """One stratum: ``labels`` (dataset, arch, bn, block) and each arm's outcomes (rates: 0/1;
    continuous: oriented values, higher is better, -inf for a run that diverged)."""

    labels: dict
    baseline: np.ndarray
    candidate: np.ndarray
    sign: float = 1.0  # continuous: +1 or -1, what turned the outcome into higher-is-better

    @property
    def name(self) -> str:
        return " ".join(str(self.labels[k]) for k in ("dataset", "arch", "bn") if k in self.labels)


@dataclass(frozen=True)
class CellEffect:
    name: str
    labels: dict
    n_baseline: int
    n_candidate: int
    effect: float
    low: float
    high: float
    detail: str  # "3/8 vs 1/8" or medians


@dataclass(frozen=True)
class FactorTest:
    factor: str
    q: float
    df: int
    p: float
    levels: int


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q over cells (and, for rates, Breslow-Day) with the per-factor subgroup tests."""

    test: str
    statistic: float
    df: int
    p: float
    i2: float
    factors: tuple[FactorTest, ...] = ()


@dataclass(frozen=True)
class PooledResult:
    kind: str  # "rate" or "continuous"
    n_baseline: int
    n_candidate: int
    cells: int
    effect: float  # common odds ratio, or mean probability of improvement
    low: float
    high: float
    p: float
    method: str
    events_baseline: int = 0
    events_candidate: int = 0
    diverged_baseline: int = 0
    diverged_candidate: int = 0
    p_cmh: float = math.nan
    per_cell: tuple[CellEffect, ...] = ()
    heterogeneity: Heterogeneity | None = None

    @property
    def testable(self) -> bool:
        return math.isfinite(self.p)


def _factor_tests(cells: list[Cell], effects, variances) -> tuple[FactorTest, ...]:
    """Subgroup tests: per factor with >= 2 levels among the cells, Q_between on G - 1 df."""
    total = _q(effects, variances)
    out = []
    for factor in FACTORS:
        levels = [c.labels.get(factor) for c in cells]
        distinct = list(dict.fromkeys(levels))
        if len(distinct) < 2:
            continue
        within = 0.0
        for level in distinct:
            idx = [i for i, v in enumerate(levels) if v == level]
            within += _q(effects[idx], variances[idx]) if len(idx) > 1 else 0.0
        q_between = max(0.0, total - within)
        df = len(distinct) - 1
        out.append(FactorTest(factor, q_between, df, float(sps.chi2.sf(q_between, df)), df + 1))
    return tuple(out)


def _q(effects: np.ndarray, variances: np.ndarray) -> float:
    """Cochran's Q = sum w_i (e_i - e_w)^2, w = 1 / variance (statsmodels' combine_effects)."""
    from statsmodels.stats.meta_analysis import combine_effects

    if len(effects) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(combine_effects(effects, variances, method_re="chi2").q)


def _heterogeneity(cells, effects, variances, test: str, extra=None) -> Heterogeneity | None:
    if len(cells) < 2 or not np.all(np.isfinite(variances)) or np.any(variances <= 0):
        return None
    q = _q(effects, variances)
    df = len(cells) - 1
    statistic, p = (q, float(sps.chi2.sf(q, df))) if extra is None else extra
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return Heterogeneity(test, statistic, df, p, i2, _factor_tests(cells, effects, variances))


# ---------------------------------------------------------------------------------------------
# Rates


def _tables(cells: list[Cell]) -> np.ndarray:
    """2 x 2 x K: rows candidate, baseline; columns event, no event."""
    out = []
    for c in cells:
        kc, kb = int(np.sum(c.candidate)), int(np.sum(c.baseline))
        out.append([[kc, len(c.candidate) - kc], [kb, len(c.baseline) - kb]])
    return np.asarray(out, dtype=float).transpose(1, 2, 0)


def test_p(cells: list[Cell], kind: str) -> float:
    """The p of the pooled test alone (what :func:`pooled_rate` and :func:`pooled_continuous`
    report, without their effects and intervals): NaN when no cell has runs of both arms."""
    used = [c for c in cells if len(c.baseline) and len(c.candidate)]
    if not used:
        return math.nan
    if kind == "rate":
        tables = _tables(used)
        events_c, runs_c = tables[0, 0], tables[0].sum(axis=0)
        events_b, runs_b = tables[1, 0], tables[1].sum(axis=0)
        return float(fisher.stratified_fisher_p(events_c, runs_c, events_b, runs_b))
    return exact.stratified_rank_test([(c.candidate, c.baseline) for c in used]).p


def pooled_rate(cells: list[Cell], level: float = LEVEL) -> PooledResult:
    """The pooled analysis of a rate (see the module docstring); ``level``: the confidence of
    the pooled interval (a sequential study's repeated confidence interval)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    used = [c for c in cells if len(c.baseline) and len(c.candidate)]
    if not used:
        return PooledResult("rate", 0, 0, 0, math.nan, math.nan, math.nan, math.nan,
                            fisher.EXACT_CONDITIONAL)  # fmt: skip
    tables = _tables(used)
    (events_c, runs_c), (events_b, runs_b) = (
        (tables[row, 0], tables[row].sum(axis=0)) for row in (0, 1)
    )
    p = test_p(used, "rate")
    informative = [(t.sum(axis=1) > 0).all() and (t.sum(axis=0) > 0).all()
                   for t in tables.transpose(2, 0, 1)]  # fmt: skip
    odds = low = high = p_cmh = math.nan
    hetero = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if any(informative):
            st = StratifiedTable(tables[:, :, informative])
            odds = float(st.oddsratio_pooled)
            if 0 < odds < math.inf:
                low, high = (float(v) for v in st.oddsratio_pooled_confint(alpha=1 - level))
            p_cmh = float(st.test_null_odds(correction=True).pvalue)
        per_cell, log_or, var = [], [], []
        for c, t in zip(used, tables.transpose(2, 0, 1)):
            a, b, cc, d = (t + 0.5 if (t == 0).any() else t).ravel()
            lor, v = math.log(a * d / (b * cc)), 1 / a + 1 / b + 1 / cc + 1 / d
            half = sps.norm.ppf(0.5 + LEVEL / 2) * math.sqrt(v)
            per_cell.append(
                CellEffect(c.name, c.labels, len(c.baseline), len(c.candidate), math.exp(lor),
                           math.exp(lor - half), math.exp(lor + half),
                           f"{int(t[0, 0])}/{len(c.candidate)} vs {int(t[1, 0])}/{len(c.baseline)}")
            )  # fmt: skip
            log_or.append(lor)
            var.append(v)
        if sum(informative) >= 2:
            bd = st.test_equal_odds(adjust=True)
            extra = (float(bd.statistic), float(bd.pvalue))
            hetero = _heterogeneity(used, np.asarray(log_or), np.asarray(var),
                                    "Breslow-Day (Tarone)", extra)  # fmt: skip
    return PooledResult(
        "rate", int(runs_b.sum()), int(runs_c.sum()), len(used), odds, low, high, p,
        fisher.EXACT_CONDITIONAL, events_baseline=int(events_b.sum()),
        events_candidate=int(events_c.sum()), p_cmh=p_cmh, per_cell=tuple(per_cell),
        heterogeneity=hetero,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Continuous outcomes


def _poi(candidate: np.ndarray, baseline: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(candidate > baseline) + P(tie) / 2 along ``axis`` (vectorised over the others)."""
    c = np.moveaxis(np.asarray(candidate, dtype=float), axis, -1)
    b = np.moveaxis(np.asarray(baseline, dtype=float), axis, -1)
    n, m = c.shape[-1], b.shape[-1]
    ranks = sps.rankdata(np.concatenate([c, b], axis=-1), axis=-1)
    return (ranks[..., :n].sum(axis=-1) - n * (n + 1) / 2) / (n * m)


def _mean_poi(*samples, axis=-1):
    pairs = zip(samples[0::2], samples[1::2])
    return np.mean([_poi(c, b, axis=axis) for c, b in pairs], axis=0)


def _bootstrap(
    samples, method: str, n_resamples: int, seed: int, level: float = LEVEL
) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            samples, _mean_poi, n_resamples=n_resamples, confidence_level=level, method=method,
            vectorized=True, rng=np.random.default_rng(seed),
        )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def poi_interval(
    cells: list[Cell], n_resamples: int = N_BOOTSTRAP, seed: int = 0, level: float = LEVEL
):
    """Stratified bootstrap CI of the mean probability of improvement: BCa, else percentile
    (a degenerate bootstrap distribution, e.g. complete separation in every cell)."""
    samples = tuple(a for c in cells for a in (c.candidate, c.baseline))
    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan
    for method in ("BCa", "percentile"):
        lo, hi = _bootstrap(samples, method, n_resamples, seed, level)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return lo, hi


def hanley_mcneil_variance(theta: float, n_candidate: int, n_baseline: int) -> float:
    """Variance of an estimated P(better) = theta with n_c and n_b values (Hanley & McNeil 1982):
    [theta (1 - theta) + (n_c - 1)(Q1 - theta^2) + (n_b - 1)(Q2 - theta^2)] / (n_c n_b),
    Q1 = theta / (2 - theta), Q2 = 2 theta^2 / (1 + theta)."""
    q1, q2 = theta / (2 - theta), 2 * theta**2 / (1 + theta)
    return (
        theta * (1 - theta) + (n_candidate - 1) * (q1 - theta**2)
        + (n_baseline - 1) * (q2 - theta**2)
    ) / (n_candidate * n_baseline)  # fmt: skip


def pooled_continuous(
    cells: list[Cell], n_resamples: int = N_BOOTSTRAP, seed: int = 0, level: float = LEVEL
) -> PooledResult:
    """The pooled analysis of a continuous outcome (see the module docstring); ``level``: the
    confidence of the pooled interval."""
    used = [c for c in cells if len(c.baseline) and len(c.candidate)]
    n_b = sum(len(c.baseline) for c in used)
    n_c = sum(len(c.candidate) for c in used)
    div_b = sum(int(np.sum(np.isneginf(c.baseline))) for c in used)
    div_c = sum(int(np.sum(np.isneginf(c.candidate))) for c in used)
    if not used:
        return PooledResult("continuous", 0, 0, 0, math.nan, math.nan, math.nan, math.nan,
                            exact.EXACT)  # fmt: skip
    test = exact.stratified_rank_test([(c.candidate, c.baseline) for c in used])
    effect = test.mean_probability
    low, high = poi_interval(used, n_resamples, seed, level)
    per_cell, effects = [], []
    for i, c in enumerate(used):
        theta = float(_poi(c.candidate, c.baseline))
        lo = hi = math.nan
        if len(c.candidate) >= 2 and len(c.baseline) >= 2:
            lo, hi = _bootstrap((c.candidate, c.baseline), "percentile", 2_000, seed + 1 + i)
        finite = [c.sign * np.median(a[np.isfinite(a)]) if np.isfinite(a).any() else math.nan
                  for a in (c.candidate, c.baseline)]  # fmt: skip
        per_cell.append(
            CellEffect(
                c.name,
                c.labels,
                len(c.baseline),
                len(c.candidate),
                theta,
                lo,
                hi,
                f"medians {finite[0]:.4g} vs {finite[1]:.4g}",
            )
        )
        effects.append(theta)
    variances = np.asarray(
        [hanley_mcneil_variance(effect, len(c.candidate), len(c.baseline)) for c in used]
    )
    hetero = _heterogeneity(used, np.asarray(effects), variances, "Cochran's Q")
    return PooledResult(
        "continuous", n_b, n_c, len(used), effect, low, high, test.p, test.method,
        diverged_baseline=div_b, diverged_candidate=div_c, per_cell=tuple(per_cell),
        heterogeneity=hetero,
    )  # fmt: skip

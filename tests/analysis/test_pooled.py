"""Every pooled statistic against statsmodels/scipy on fixed tables and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.meta_analysis import combine_effects

from ganstudy.analysis import exact, fisher, pooled
from ganstudy.analysis.pooled import Cell

# Candidate events / runs, baseline events / runs per cell.
TABLES = [(1, 8, 4, 8), (0, 8, 3, 8), (2, 8, 5, 8), (1, 8, 2, 8)]
LABELS = [
    {"dataset": "fashion_mnist", "arch": a, "bn": b, "block": "x"}
    for a, b in [("dcgan28", "both"), ("dcgan28", "none"), ("small", "both"), ("small", "none")]
]


def rate_cells(tables=TABLES):
    return [
        Cell(lab, np.r_[np.ones(kb), np.zeros(nb - kb)], np.r_[np.ones(kc), np.zeros(nc - kc)])
        for lab, (kc, nc, kb, nb) in zip(LABELS, tables)
    ]


def test_rates_match_statsmodels_stratified_table():
    res = pooled.pooled_rate(rate_cells())
    tables = np.array([[[kc, nc - kc], [kb, nb - kb]] for kc, nc, kb, nb in TABLES], float)
    st = StratifiedTable(tables.transpose(1, 2, 0))
    assert res.effect == pytest.approx(st.oddsratio_pooled)
    low, high = st.oddsratio_pooled_confint()
    assert (res.low, res.high) == (pytest.approx(low), pytest.approx(high))
    assert res.p_cmh == pytest.approx(st.test_null_odds(correction=True).pvalue)
    bd = st.test_equal_odds(adjust=True)
    assert res.heterogeneity.test == "Breslow-Day (Tarone)"
    assert res.heterogeneity.p == pytest.approx(bd.pvalue)
    assert (res.events_candidate, res.n_candidate, res.events_baseline, res.n_baseline) == (
        4, 32, 14, 32,
    )  # fmt: skip
    expected = fisher.stratified_fisher_p(*zip(*[(kc, nc, kb, nb) for kc, nc, kb, nb in TABLES]))
    assert res.p == pytest.approx(float(expected)) and res.method == fisher.EXACT_CONDITIONAL


def test_per_cell_odds_ratios_are_woolf_with_haldane_correction():
    res = pooled.pooled_rate(rate_cells())
    # Cell 2 has a zero: 0.5 added to every count: (0.5 * 5.5) / (8.5 * 3.5).
    second = res.per_cell[1]
    assert second.effect == pytest.approx((0.5 * 5.5) / (8.5 * 3.5))
    se = math.sqrt(1 / 0.5 + 1 / 8.5 + 1 / 3.5 + 1 / 5.5)
    assert second.low == pytest.approx(second.effect * math.exp(-1.959964 * se), rel=1e-5)
    first = res.per_cell[0]  # no zero: plain odds ratio (1 * 4) / (7 * 4)
    assert first.effect == pytest.approx(4 / 28) and first.detail == "1/8 vs 4/8"


def test_subgroup_heterogeneity_is_q_between():
    res = pooled.pooled_rate(rate_cells())
    logs = np.log([c.effect for c in res.per_cell])
    var = []
    for kc, nc, kb, nb in TABLES:
        t = np.array([kc, nc - kc, kb, nb - kb], float)
        t = t + 0.5 if (t == 0).any() else t
        var.append(float(np.sum(1 / t)))
    var = np.asarray(var)
    total = combine_effects(logs, var).q
    # by arch: cells (0, 1) and (2, 3)
    within = combine_effects(logs[:2], var[:2]).q + combine_effects(logs[2:], var[2:]).q
    by_arch = {f.factor: f for f in res.heterogeneity.factors}["arch"]
    assert by_arch.q == pytest.approx(total - within)
    assert by_arch.df == 1 and by_arch.p == pytest.approx(sps.chi2.sf(total - within, 1))


def test_no_events_anywhere_is_not_a_difference():
    res = pooled.pooled_rate(rate_cells([(0, 8, 0, 8), (0, 8, 0, 8)]))
    assert res.p == pytest.approx(1.0) and math.isnan(res.effect)


def test_probability_of_improvement_hand_worked():
    # Cell 1: candidate {3, 5} vs baseline {1, 5}: pairs 3>1, 3<5, 5>1, 5=5 -> (1+0+1+0.5)/4.
    # Cell 2: candidate {2} vs baseline {1, 4}: (1 + 0) / 2. Mean: (0.625 + 0.5) / 2.
    cells = [
        Cell(LABELS[0], np.array([1.0, 5.0]), np.array([3.0, 5.0])),
        Cell(LABELS[1], np.array([1.0, 4.0]), np.array([2.0])),
    ]
    res = pooled.pooled_continuous(cells, n_resamples=200)
    assert res.effect == pytest.approx((0.625 + 0.5) / 2)
    assert [c.effect for c in res.per_cell] == [pytest.approx(0.625), pytest.approx(0.5)]
    assert res.p == pytest.approx(
        exact.stratified_rank_test([(c.candidate, c.baseline) for c in cells]).p
    )


def test_diverged_runs_rank_worst_and_are_counted():
    base = np.array([10.0, 11.0, 12.0, 13.0])
    cand = np.array([-np.inf, 14.0, 15.0, 16.0])  # oriented: higher is better
    res = pooled.pooled_continuous([Cell(LABELS[0], base, cand)], n_resamples=200)
    assert res.diverged_candidate == 1 and res.n_candidate == 4
    assert res.effect == pytest.approx(12 / 16)


def test_poi_interval_is_scipys_stratified_bootstrap():
    rng = np.random.default_rng(1)
    cells = [Cell(lab, rng.normal(size=8), rng.normal(size=8) + 0.5) for lab in LABELS]
    low, high = pooled.poi_interval(cells, n_resamples=500, seed=3)
    samples = tuple(a for c in cells for a in (c.candidate, c.baseline))

    def mean_poi(*s, axis=-1):
        out = []
        for c, b in zip(s[0::2], s[1::2]):
            out.append((c[..., :, None] > b[..., None, :]).mean(axis=(-2, -1))
                       + 0.5 * (c[..., :, None] == b[..., None, :]).mean(axis=(-2, -1)))  # fmt: skip
        return np.mean(out, axis=0)

    ref = sps.bootstrap(samples, mean_poi, n_resamples=500, method="BCa", vectorized=True,
                        rng=np.random.default_rng(3)).confidence_interval  # fmt: skip
    assert (low, high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    point = pooled.pooled_continuous(cells, n_resamples=500, seed=3).effect
    assert low < point < high


def test_hanley_mcneil_variance_closed_form():
    theta, n1, n2 = 0.8, 10, 12
    q1, q2 = theta / (2 - theta), 2 * theta**2 / (1 + theta)
    expected = (theta * (1 - theta) + 9 * (q1 - theta**2) + 11 * (q2 - theta**2)) / 120
    assert pooled.hanley_mcneil_variance(theta, n1, n2) == pytest.approx(expected)
    # theta = 1/2 with one value each: the variance of a fair coin's indicator, 1/4
    assert pooled.hanley_mcneil_variance(0.5, 1, 1) == pytest.approx(0.25)


def test_no_cell_with_both_arms_is_not_testable():
    res = pooled.pooled_continuous([Cell(LABELS[0], np.array([]), np.array([1.0]))])
    assert not res.testable and res.cells == 0

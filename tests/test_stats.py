"""The statistics on constructed data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ganstudy.analysis import stats


def test_holm_on_known_pvalues():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06 by monotonicity), 0.5 (x1)
    assert stats.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])


def test_holm_caps_at_one_keeps_order_and_skips_nan():
    # valid p sorted: 0.001 (x3), 0.4 (x2), 0.9 (x1); the NaN is not counted in m
    adjusted = stats.holm([0.4, math.nan, 0.9, 0.001])
    assert adjusted[0] == pytest.approx(0.8)
    assert math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.9)
    assert adjusted[3] == pytest.approx(0.003)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # 0.6 x 2 = 1.2 is capped, 0.7 inherits it


def test_holm_rejects_pvalues_outside_unit_interval():
    with pytest.raises(ValueError, match="p-values must lie in"):
        stats.holm([0.2, 1.5])


def test_mann_whitney_separated_samples_exact_p():
    # complete separation of 5 vs 5: exact two-sided p = 2 / C(10, 5) = 2 / 252
    res = stats.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert res.u == 0
    assert res.p == pytest.approx(2 / 252)


def test_mann_whitney_identical_samples_give_p_one():
    res = stats.mann_whitney([3.0, 3.0, 3.0], [3.0, 3.0, 3.0])
    assert res.p == 1.0
    assert res.u == 4.5


def test_mann_whitney_same_distribution_not_significant():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert stats.mann_whitney(x, y).p > 0.05


def test_min_two_sided_p():
    assert stats.min_two_sided_p(2, 2) == pytest.approx(1 / 3)
    assert stats.min_two_sided_p(3, 3) == pytest.approx(0.1)
    assert stats.min_two_sided_p(4, 4) == pytest.approx(2 / 70)
    assert stats.min_two_sided_p(0, 4) == 1.0


def test_bootstrap_ci_contains_true_difference_and_is_reproducible():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 1.0, size=200)
    y = rng.normal(12.0, 1.0, size=200)
    lo, hi = stats.bootstrap_ci_diff_means(x, y, seed=3)
    assert lo < 2.0 < hi
    assert hi - lo < 0.6  # about 2 x 1.96 x sqrt(2 / 200) = 0.55
    assert stats.bootstrap_ci_diff_means(x, y, seed=3) == (lo, hi)
    assert stats.bootstrap_ci_diff_means(x, y, seed=4) != (lo, hi)


def test_bootstrap_ci_mean_coverage_close_to_nominal():
    # 1000 samples of size 30 from N(5, 1): a 95% interval should cover 5 in about 95% of them
    # (bootstrap intervals run a little narrow at n = 30: about 92-93%). 1000 trials keep the
    # binomial noise of the estimate near 0.008.
    rng = np.random.default_rng(7)
    covered = 0
    for i in range(1000):
        lo, hi = stats.bootstrap_ci_mean(rng.normal(5.0, 1.0, size=30), n_boot=2000, seed=i)
        covered += lo <= 5.0 <= hi
    assert 0.88 <= covered / 1000 <= 0.99


def test_bootstrap_needs_two_values_and_a_valid_level():
    assert all(math.isnan(v) for v in stats.bootstrap_ci_mean([1.0]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci_diff_means([1.0, 2.0], [3.0]))
    with pytest.raises(ValueError, match="confidence level"):
        stats.bootstrap_ci_mean([1.0, 2.0], level=95)


def test_mean_sd_ignores_missing_values():
    mean, sd, n = stats.mean_sd([1.0, None, 3.0, math.nan, math.inf])
    assert (mean, n) == (2.0, 2)
    assert sd == pytest.approx(math.sqrt(2))


def test_compare_and_verdict_significant_direction():
    base = [30.0, 31.0, 32.0, 33.0, 34.0]  # FID of the baseline
    cand = [20.0, 21.0, 22.0, 23.0, 24.0]
    cmp = stats.compare(base, cand, "FID", higher_is_better=False)
    assert cmp.testable
    assert cmp.difference == pytest.approx(-10.0)
    assert cmp.ci_low <= -10.0 <= cmp.ci_high
    text = stats.verdict(cmp, cmp.p, "gan", "lsgan")
    assert "significantly lower FID" in text
    assert "so lsgan is better" in text


def test_verdict_says_no_significant_difference():
    cmp = stats.compare([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.5, 4.5], "modes", higher_is_better=True)
    assert cmp.testable
    assert stats.verdict(cmp, cmp.p, "gan", "lsgan").startswith("no significant difference")


def test_verdict_says_too_few_seeds():
    cmp = stats.compare([1.0, 2.0], [5.0, 6.0], "FID", higher_is_better=False)
    assert not cmp.testable
    assert cmp.p == pytest.approx(1 / 3)  # reported even though it cannot be significant
    assert "too few seeds" in stats.verdict(cmp, math.nan, "gan", "lsgan")
    one = stats.compare([1.0], [5.0, 6.0, 7.0], "FID", higher_is_better=False)
    assert "too few seeds for a test (n = 1 vs 3" in stats.verdict(one, math.nan, "gan", "lsgan")


# Runs that diverged: ranked worst, as in the pooled tests, the completed runs' test beside.

X_DIVERGED = [-math.inf, 1.0, 2.0, 2.0, 9.0]  # higher is better: a diverged run is -inf
Y_DIVERGED = [-math.inf, -math.inf, 0.0, 2.0, 2.0]


def test_mann_whitney_ranks_diverged_runs_worst_as_the_pooled_test_does():
    from ganstudy.analysis import pooled

    res = stats.mann_whitney(X_DIVERGED, Y_DIVERGED)
    assert (res.n_x, res.n_y) == (5, 5)
    assert res.p == pytest.approx(25 / 63)  # 0.397
    cell = pooled.Cell({}, np.array(Y_DIVERGED), np.array(X_DIVERGED))
    assert pooled.test_p([cell], "continuous") == pytest.approx(res.p, rel=1e-12)
    completed = stats.mann_whitney(X_DIVERGED, Y_DIVERGED, completed_only=True)
    assert (completed.n_x, completed.n_y) == (4, 3)
    assert completed.p == pytest.approx(22 / 35)  # 0.629


def test_compare_counts_diverged_runs_at_the_metric_worse_end():
    # FID, lower is better: the diverged runs (no FID) go to +inf; the one missing run is left
    # out. The same ranks as the example above, negated.
    base = [-v for v in Y_DIVERGED] + [math.nan]
    cand = [-v for v in X_DIVERGED]
    flags_base = [True, True, False, False, False, False]
    flags_cand = [True, False, False, False, False]
    base = [math.nan if f else v for v, f in zip(base, flags_base)]
    cand = [math.nan if f else v for v, f in zip(cand, flags_cand)]
    cmp = stats.compare(base, cand, "FID", False, diverged_baseline=flags_base,
                        diverged_candidate=flags_cand)  # fmt: skip
    assert (cmp.n_baseline, cmp.n_candidate) == (5, 5)
    assert (cmp.diverged_baseline, cmp.diverged_candidate) == (2, 1)
    assert cmp.p == pytest.approx(25 / 63) and cmp.p_completed_only == pytest.approx(22 / 35)
    # the means are the completed runs'; Cliff's delta ranks like the test (P(cand lower FID)
    # = U / 25 = 17 / 25 on the candidate's side: delta of the raw FIDs -(2 * 17 / 25 - 1))
    assert cmp.mean_baseline == pytest.approx(-4 / 3) and cmp.mean_candidate == pytest.approx(-3.5)
    assert cmp.effect == pytest.approx(-(2 * 17 / 25 - 1))
    # the same runs without flags, encoded as +inf, give the same test
    encoded = stats.compare([math.inf if f else v for v, f in zip(base, flags_base)],
                            [math.inf if f else v for v, f in zip(cand, flags_cand)], "FID", False)  # fmt: skip
    assert encoded.p == cmp.p and encoded.p_completed_only == cmp.p_completed_only
    # without a diverged run there is no second test
    assert math.isnan(stats.compare([1.0, 2.0], [3.0, 4.0], "FID", False).p_completed_only)


def test_a_diverged_run_fails_a_success_rate():
    cmp = stats.compare([1, 1, 1, 0], [1, 1, math.nan, math.nan], "success rate", True,
                        kind="rate", diverged_candidate=[False, False, True, True])  # fmt: skip
    assert (cmp.n_candidate, cmp.diverged_candidate) == (4, 2)
    assert cmp.mean_candidate == 0.5 and cmp.mean_baseline == 0.75
    assert cmp.p == pytest.approx(stats.fisher_rates([1, 1, 1, 0], [1, 1, 0, 0]))
    assert cmp.p_completed_only == pytest.approx(stats.fisher_rates([1, 1, 1, 0], [1, 1]))

"""The exact tests against scipy's exact methods, exhaustive permutations and hand-worked cases."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from ganstudy.analysis import exact, fisher, stats


@pytest.mark.parametrize("n", [9, 10, 16, 24])
def test_separated_arms_reach_the_planned_smallest_p(n):
    x, y = np.arange(n) + 100.0, np.arange(n, dtype=float)
    test = exact.mann_whitney(x, y)
    planned = 2 / math.comb(2 * n, n)
    assert test.method == exact.EXACT
    assert test.p == pytest.approx(planned, rel=1e-9)
    assert test.p == pytest.approx(exact.min_p_separated([(n, n)]), rel=1e-9)
    if n <= 10:  # scipy's exact method without ties
        assert test.p == pytest.approx(sps.mannwhitneyu(x, y, method="exact").pvalue, rel=1e-9)


@pytest.mark.parametrize(("n", "smallest"), [(5, 2 / 252), (3, 0.1)])
def test_tied_arms_are_not_more_significant_than_the_exact_test_allows(n, smallest):
    test = stats.mann_whitney([8.0] * n, [3.0] * n)
    assert test.p == pytest.approx(smallest, rel=1e-12)
    assert test.p == pytest.approx(
        sps.mannwhitneyu([8.0] * n, [3.0] * n, method="exact").pvalue, rel=1e-12
    )
    assert test.method == exact.EXACT


def test_without_ties_it_is_scipys_exact_test():
    rng = np.random.default_rng(3)
    for n, m in [(4, 7), (8, 8), (10, 6)]:
        x, y = rng.normal(size=n), rng.normal(size=m) + 0.7
        assert exact.mann_whitney(x, y).p == pytest.approx(
            sps.mannwhitneyu(x, y, method="exact").pvalue, rel=1e-9
        )


def test_with_ties_it_is_the_exhaustive_permutation_test():
    rng = np.random.default_rng(5)
    for _ in range(6):
        x = rng.integers(0, 4, 6).astype(float)
        y = rng.integers(1, 5, 5).astype(float)
        res = sps.permutation_test(
            (x, y),
            lambda a, b, axis=-1: sps.mannwhitneyu(a, b, axis=axis).statistic,
            permutation_type="independent",
            n_resamples=np.inf,
            vectorized=True,
        )
        assert exact.mann_whitney(x, y).p == pytest.approx(res.pvalue, rel=1e-9)


def _brute_force_stratified(strata):
    """Every within-stratum relabelling, enumerated: P(|T - S/2| >= |t - S/2|) two-sided by
    doubling the smaller tail, T = sum of U_s / (n m)."""
    observed = sum(exact.u_statistic(x, y) / (len(x) * len(y)) for x, y in strata)
    per_stratum = []
    for x, y in strata:
        pooled = np.concatenate([x, y])
        values = []
        for idx in itertools.combinations(range(len(pooled)), len(x)):
            mask = np.zeros(len(pooled), bool)
            mask[list(idx)] = True
            values.append(exact.u_statistic(pooled[mask], pooled[~mask]) / (len(x) * len(y)))
        per_stratum.append(values)
    totals = np.array([sum(c) for c in itertools.product(*per_stratum)])
    lower = np.mean(totals <= observed + 1e-12)
    upper = np.mean(totals >= observed - 1e-12)
    return min(1.0, 2 * min(lower, upper)), observed


def test_stratified_test_is_the_exhaustive_within_stratum_permutation_test():
    strata = [
        (np.array([3.0, 5.0, 5.0, 9.0]), np.array([1.0, 5.0, 2.0])),
        (np.array([0.5, 0.7, 2.0]), np.array([0.1, 0.2, 0.7, 0.3])),
        (np.array([4.0, 4.0]), np.array([4.0, 1.0, 2.0])),
    ]
    test = exact.stratified_rank_test(strata)
    p, observed = _brute_force_stratified(strata)
    assert test.statistic == pytest.approx(observed)
    assert test.p == pytest.approx(p, rel=1e-9)
    assert test.strata == 3 and test.mean_probability == pytest.approx(observed / 3)


def test_large_strata_use_the_named_normal_approximation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=80), rng.normal(size=80)
    test = exact.mann_whitney(x, y)
    assert test.method == exact.NORMAL
    # scipy's asymptotic method without continuity correction is the same approximation
    reference = sps.mannwhitneyu(x, y, method="asymptotic", use_continuity=False).pvalue
    assert test.p == pytest.approx(reference, rel=1e-9)


def test_fisher_single_stratum_is_scipys_fisher_exact():
    for kx, nx, ky, ny in [(3, 8, 7, 8), (0, 8, 5, 8), (1, 10, 9, 12), (40, 130, 60, 130)]:
        p = fisher.stratified_fisher_p([kx], [nx], [ky], [ny])
        ref = sps.fisher_exact([[kx, nx - kx], [ky, ny - ky]]).pvalue
        assert float(p) == pytest.approx(ref, rel=1e-9)


def test_stratified_fisher_is_the_enumerated_conditional_test():
    # Hand-enumerated: the exact conditional law of the total events of x given each stratum's
    # margins, two-sided by probability ordering (R's mantelhaen.test(exact = TRUE)).
    events_x, n_x, events_y, n_y = [2, 0, 3], [4, 3, 5], [0, 1, 1], [3, 4, 5]
    laws = []
    for kx, nx, ky, ny in zip(events_x, n_x, events_y, n_y):
        k = kx + ky
        laws.append({a: sps.hypergeom.pmf(a, nx + ny, k, nx) for a in range(0, min(k, nx) + 1)})
    total: dict[int, float] = {}
    for combo in itertools.product(*(law.items() for law in laws)):
        s = sum(a for a, _ in combo)
        total[s] = total.get(s, 0.0) + math.prod(p for _, p in combo)
    observed = total[sum(events_x)]
    expected = sum(p for p in total.values() if p <= observed * (1 + 1e-7))
    p = float(fisher.stratified_fisher_p(events_x, n_x, events_y, n_y))
    assert p == pytest.approx(expected, rel=1e-9)


def test_stratified_fisher_fft_path_equals_direct_convolution(monkeypatch):
    args = ([30, 40, 20, 35], [120] * 4, [45, 50, 30, 40], [120] * 4)
    fft = float(fisher.stratified_fisher_p(*args))
    monkeypatch.setattr(fisher, "FFT_MIN_WIDTH", 10**9)
    direct = float(fisher.stratified_fisher_p(*args))
    assert fft == pytest.approx(direct, rel=1e-9)


def test_fisher_batches_and_skips_empty_strata():
    p = fisher.stratified_fisher_p(
        [[3, 0], [0, 0]], [[8, 0], [8, 8]], [[7, 5], [5, 0]], [[8, 8], [8, 8]]
    )
    assert p.shape == (2,)
    assert p[0] == pytest.approx(sps.fisher_exact([[3, 5], [7, 1]]).pvalue, rel=1e-9)


def test_min_p_of_separated_strata_is_the_product():
    sizes = [(8, 8), (8, 8), (4, 5)]
    expected = 2 / (math.comb(16, 8) ** 2 * math.comb(9, 4))
    assert exact.min_p_separated(sizes) == pytest.approx(expected, rel=1e-12)
    strata = [(np.arange(n) + 100.0, np.arange(m, dtype=float)) for n, m in sizes]
    assert exact.stratified_rank_test(strata).p == pytest.approx(expected, rel=1e-9)
    # Rates: all events in one arm, as many as its runs. With equal arms both extremes are
    # equally probable and the bound is reached; with unequal arms the tails differ and the
    # exact test can go lower: the plan's value is then an upper bound.
    events = fisher.stratified_fisher_p([n for n, _ in sizes], [n for n, _ in sizes],
                                       [0 for _ in sizes], [m for _, m in sizes])  # fmt: skip
    assert float(events) <= expected
    equal = [(8, 8), (5, 5)]
    events = fisher.stratified_fisher_p([8, 5], [8, 5], [0, 0], [8, 5])
    assert float(events) == pytest.approx(exact.min_p_separated(equal), rel=1e-9)


# Far tails: p-values far below the FFT's rounding (about 1e-16 of the largest probability).


def _integer_fisher_p(events_x, n_x, events_y, n_y) -> float:
    """The stratified conditional test in integers: each stratum's hypergeometric counts
    C(K, k) C(N - K, n_x - k) convolved exactly, two-sided by the same ordering and tolerance."""
    law, denominator = [1], 1
    for kx, nx, ky, ny in zip(events_x, n_x, events_y, n_y):
        events, total = kx + ky, nx + ny
        counts = [math.comb(events, k) * math.comb(total - events, nx - k) for k in range(nx + 1)]
        law = [
            sum(law[i] * counts[j - i] for i in range(max(0, j - nx), min(j, len(law) - 1) + 1))
            for j in range(len(law) + nx)
        ]
        denominator *= math.comb(total, nx)
    observed = law[sum(events_x)]
    tail = sum(c for c in law if c * 10**7 <= observed * (10**7 + 1))
    return float(Fraction(tail, denominator))


def test_stratified_fisher_far_tail_is_the_integer_convolution():
    args = ([100] * 4, [144] * 4, [30] * 4, [144] * 4)  # 577 totals: the FFT's batch path
    expected = _integer_fisher_p(*args)
    assert expected == pytest.approx(7.78e-64, rel=1e-3)
    assert float(fisher.stratified_fisher_p(*args)) == pytest.approx(expected, rel=1e-9)


def test_fisher_batch_recomputes_only_what_the_fft_cannot_resolve():
    # Rows of one batch: ordinary p-values (the FFT's), and tails far below its rounding.
    rows = [
        ([70, 80], [75, 70]),
        ([140, 120], [10, 30]),
        ([60, 149], [90, 1]),
        ([75, 75], [75, 75]),
    ]
    events_x, events_y = (np.array([r[i] for r in rows]) for i in (0, 1))
    runs = np.array([150, 150])
    p = fisher.stratified_fisher_p(events_x, runs, events_y, runs)
    for row, got in zip(rows, p):
        assert got == pytest.approx(_integer_fisher_p(row[0], runs, row[1], runs), rel=1e-9)
    assert p[0] > 0.01 and p[1] < 1e-70 and p[2] < 1e-20 and p[3] == 1


def test_one_far_stratum_is_scipys_hypergeometric_law():
    kx, nx, ky, ny = 250, 300, 40, 300
    law = sps.hypergeom(nx + ny, kx + ky, nx).logpmf(np.arange(nx + 1))
    expected = np.exp(law[law <= law[kx] + math.log1p(1e-7)]).sum()
    assert float(fisher.stratified_fisher_p([kx], [nx], [ky], [ny])) == pytest.approx(
        expected, rel=1e-9
    )


def test_separated_strata_far_below_the_fft_rounding():
    # 6 strata of 24 vs 24: the closed form, 2 prod_s 1 / C(48, 24) = 1.8e-81.
    expected = float(Fraction(2, math.comb(48, 24) ** 6))
    strata = [(np.arange(24) + 100.0, np.arange(24.0))] * 6
    assert exact.stratified_rank_test(strata).p == pytest.approx(expected, rel=1e-9)
    assert exact.min_p_separated([(24, 24)] * 6) == pytest.approx(expected, rel=1e-9)
    null = exact.StratifiedNull.without_ties([(24, 24)] * 6)
    assert null.p(np.array([0.0, 6.0])) == pytest.approx([expected, expected], rel=1e-9)


@pytest.fixture
def mixed_strata():
    """Strata of unequal sizes (a lattice step per stratum), one with ties."""
    rng = np.random.default_rng(7)
    return [
        (rng.normal(size=8), rng.normal(size=8)),
        (rng.normal(size=4), rng.normal(size=8)),
        (rng.integers(0, 3, 6).astype(float), rng.integers(1, 4, 6).astype(float)),
    ]


@pytest.mark.parametrize("tilting", [True, False])
def test_fft_tails_are_recomputed_to_the_direct_convolution(monkeypatch, mixed_strata, tilting):
    direct = exact.StratifiedNull.of(mixed_strata)
    assert direct.floor == 0  # small: convolved directly
    monkeypatch.setattr(exact, "DIRECT_MAX_WORK", 0)
    through_fft = exact.StratifiedNull.of(mixed_strata)
    assert through_fft.floor > 0
    if not tilting:  # no tilted sum is trusted: the truncated direct convolution
        monkeypatch.setattr(exact, "TRUSTED", 0.0)
    t = np.arange(0, len(direct.probs), 23) / (2 * direct.lcm)
    expected = direct.p(t)
    assert expected.min() < 1e-12  # far tails, where the FFT alone is noise
    got = through_fft.p(t)
    positive = expected > 0  # lattice points no arrangement reaches have P(T <= t) = 0
    assert np.array_equal(got > 0, positive)
    np.testing.assert_allclose(got[positive], expected[positive], rtol=1e-9)

"""Power designed in: reachable p-values, Holm's threshold, detectable effects, exact tests and
effect sizes, against hand-computed values and simulations with fixed seeds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from ganstudy.analysis import power, stats
from ganstudy.study import plan
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study


def test_smallest_reachable_p_by_hand():
    assert power.min_p_mann_whitney(3, 3) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert power.min_p_mann_whitney(5, 5) == pytest.approx(2 / 252)
    assert power.min_p_fisher(3, 3) == pytest.approx(0.1)  # all vs none: 2 / C(6, 3) as well
    assert power.min_p_fisher(5, 5) == pytest.approx(2 / 252)
    assert power.min_p("rate", 1, 4) == pytest.approx(1 / 5)  # the one success: p = 1 / C(5, 1)
    assert power.min_p("continuous", 0, 4) == 1.0


def test_holm_threshold_and_reachability():
    assert power.holm_threshold(44) == pytest.approx(0.05 / 44)
    assert power.min_p_mann_whitney(5, 5) > power.holm_threshold(10)  # 0.0079 > 0.005
    assert power.min_p_mann_whitney(8, 8) < power.holm_threshold(44)


def test_fisher_p_equals_scipy_on_every_table():
    for n_x, n_y in ((3, 3), (4, 7), (6, 6), (12, 20)):
        table = power._fisher_table(n_x, n_y)
        for k_x, k_y in itertools.product(range(n_x + 1), range(n_y + 1)):
            expected = sps.fisher_exact([[k_x, n_x - k_x], [k_y, n_y - k_y]]).pvalue
            assert power.fisher_p(k_x, n_x, k_y, n_y) == pytest.approx(expected, abs=1e-12)
            assert table[k_x][k_y] == pytest.approx(expected, abs=1e-12)


def test_exact_rate_test_on_known_tables():
    assert stats.fisher_rates([1] * 5, [0] * 5) == pytest.approx(2 / 252)
    # [[3, 1], [1, 3]]: the classic tea-tasting table, two-sided p = 34/70
    assert stats.fisher_rates([1, 1, 1, 0], [1, 0, 0, 0]) == pytest.approx(34 / 70)
    cmp = stats.compare([0, 0, 0, 0, 0], [1, 1, 1, 1, 0], "diverged rate", False, kind="rate")
    assert cmp.p == pytest.approx(sps.fisher_exact([[0, 5], [4, 1]]).pvalue)
    assert cmp.effect == pytest.approx(0.8) and cmp.min_p == pytest.approx(2 / 252)
    assert math.isnan(cmp.u)


def test_cliffs_delta_and_its_bootstrap_ci():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0]
    # 25 pairs: y > x in 19, y < x in 3, ties 3 -> (19 - 3) / 25
    assert stats.cliffs_delta(x, y) == pytest.approx(16 / 25)
    assert stats.cliffs_delta(y, x) == pytest.approx(-16 / 25)
    cmp = stats.compare(x, y, "modes covered", True)
    assert cmp.effect == pytest.approx(16 / 25)
    assert -1.0 <= cmp.effect_low <= cmp.effect <= cmp.effect_high <= 1.0
    separated = stats.compare([1.0, 2.0, 3.0], [7.0, 8.0, 9.0], "FID", False)
    assert separated.effect == 1.0 and (separated.effect_low, separated.effect_high) == (1.0, 1.0)


def test_detectable_cliffs_delta_has_its_power_in_a_simulation():
    n, level = 20, 0.05
    delta = power.detectable_cliffs_delta(n, n, level)
    assert delta == pytest.approx(2 * (1.959964 + 0.841621) / math.sqrt(12 * 0.25 * 2 * n), 1e-5)
    # Normal samples shifted by s have Cliff's delta 2 Phi(s / sqrt 2) - 1.
    shift = math.sqrt(2) * sps.norm.ppf((delta + 1) / 2)
    rng = np.random.default_rng(0)
    trials = 2000
    x = rng.normal(size=(trials, n))
    y = rng.normal(loc=shift, size=(trials, n))
    p = sps.mannwhitneyu(x, y, alternative="two-sided", axis=1).pvalue
    assert 0.75 <= float(np.mean(p <= level)) <= 0.9  # Noether's approximation: about 0.8


def test_detectable_rate_difference_matches_exact_and_simulated_power():
    n, level = 20, 0.05
    d = power.fisher_detectable_rate_difference(n, n, level, base_rate=0.5)
    assert power.fisher_power(0.5, 0.5 + d, n, n, level) >= 0.8
    assert power.fisher_power(0.5, 0.5 + d - 0.01, n, n, level) < 0.8
    rng = np.random.default_rng(1)
    k_x, k_y = rng.binomial(n, 0.5, size=4000), rng.binomial(n, 0.5 + d, size=4000)
    simulated = np.mean([power.fisher_p(a, n, b, n) <= level for a, b in zip(k_x, k_y)])
    assert simulated == pytest.approx(power.fisher_power(0.5, 0.5 + d, n, n, level), abs=0.03)
    assert power.fisher_detectable_rate_difference(3, 3, 0.05) is None  # p >= 0.1 at best


def _study(seeds: int) -> Study:
    block = {
        "datasets": ["ring8", "fashion_mnist"],
        "archs": ["dcgan28", "mlp2d"],
        "losses": ["gan", "lsgan"],
        "bn": ["both"],
        "seeds": seeds,
        "train": {"steps": 10},
    }
    fashion = {**block, "datasets": ["fashion_mnist"], "archs": ["dcgan28"]}
    mixtures = {**block, "datasets": ["ring8"], "archs": ["mlp2d"]}
    return Study.from_config({"experiments": {"f": fashion, "m": mixtures}}, default_schema_path())


def test_the_study_plans_its_comparisons_and_warns_about_unreachable_ones():
    small = plan.plan(_study(3))
    # fashion: FID + diverged rate; ring8: modes covered + success rate + diverged rate
    assert [(c.dataset, c.metric, c.kind) for c in small] == [
        ("fashion_mnist", "FID", "continuous"),
        ("fashion_mnist", "diverged rate", "rate"),
        ("ring8", "modes covered", "continuous"),
        ("ring8", "success rate", "rate"),
        ("ring8", "diverged rate", "rate"),
    ]
    assert len(plan.unreachable(small)) == 5
    assert "5 of 5 planned comparisons can never reach significance" in plan.warning(small)
    assert "can never reach significance" in plan.table(small)
    enough = plan.plan(_study(6))  # 2 / C(12, 6) = 0.0022 < 0.05 / 5
    assert plan.unreachable(enough) == [] and plan.warning(enough) is None
    assert "every one can reach significance" in plan.table(enough)

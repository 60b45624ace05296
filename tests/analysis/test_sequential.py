"""The group-sequential design: boundaries against published tables and an independent
integration, the Brownian-motion figures of a one-hypothesis design, and the decisions of the
sequential Holm procedure (hand-worked cases, a planted effect, futility on no events)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ganstudy.analysis import fisher, simulate, stats
from ganstudy.analysis import sequential as seq

EQUAL = {k: tuple((i + 1) / k for i in range(k)) for k in (2, 3, 4, 5)}

# gsDesign (Anderson), sfLDOF, one-sided alpha 0.025, equally spaced looks: the upper
# boundaries that our two-sided symmetric design at 0.05 must reproduce.
GSDESIGN_LDOF = {
    3: (3.7103, 2.5114, 1.9930),
    4: (4.3326, 2.9631, 2.3590, 2.0141),
    5: (4.8769, 3.3569, 2.6803, 2.2898, 2.0310),
}


@pytest.mark.parametrize("looks", sorted(GSDESIGN_LDOF))
def test_obrien_fleming_boundaries_match_the_published_table(looks):
    bounds = seq.boundaries(EQUAL[looks], 0.05, seq.OBRIEN_FLEMING)
    assert bounds == pytest.approx(GSDESIGN_LDOF[looks], abs=2e-4)


@pytest.mark.parametrize("spending", seq.SPENDING_NAMES)
@pytest.mark.parametrize("fractions", [EQUAL[3], (0.25, 0.6, 1.0), EQUAL[2]])
def test_each_look_spends_its_alpha_by_an_independent_integration(spending, fractions):
    """P(cross first at look k) from scipy's multivariate normal CDF (Genz) equals the
    spending function's increment."""
    level = 0.02
    bounds = seq.boundaries(fractions, level, spending)
    t = np.asarray(fractions)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    previous = 0.0
    for k in range(1, len(t) + 1):
        # P(|Z_j| < c_j for all j <= k), by inclusion-exclusion over the signs of the box.
        inside = sps.multivariate_normal(np.zeros(k), cov[:k, :k], allow_singular=True)
        lower = -np.asarray(bounds[:k])
        stay = inside.cdf(np.asarray(bounds[:k]), lower_limit=lower, rng=np.random.default_rng(0))
        spent = 1 - stay
        assert spent == pytest.approx(seq.spent(spending, t[k - 1], level), abs=2e-5)
        assert spent >= previous
        previous = spent


def test_pocock_boundaries_are_nearly_flat_and_obrien_fleming_falls():
    pocock = seq.boundaries(EQUAL[5], 0.05, seq.POCOCK)
    assert max(pocock) - min(pocock) < 0.06
    obf = seq.boundaries(EQUAL[5], 0.05, seq.OBRIEN_FLEMING)
    assert all(a > b for a, b in zip(obf, obf[1:]))
    # One look is the fixed test.
    assert seq.boundaries((1.0,), 0.05, seq.POCOCK)[0] == pytest.approx(1.959964, abs=1e-5)


def test_the_one_hypothesis_design_of_the_brownian_motion_model():
    """Three looks at 0.05/8, futility |Z| < 0.5 and < 1.5: maximum 1.06 x the fixed design,
    expected 0.61 x with no effect and 0.89 x at the effect it is powered for."""
    from scipy.optimize import brentq

    level, fractions, futility = 0.05 / 8, EQUAL[3], (0.5, 1.5)
    drift_fixed = sps.norm.isf(level / 2) + sps.norm.isf(0.2)
    bounds = seq.boundaries(fractions, level, seq.OBRIEN_FLEMING)

    def power(ratio):
        up, down, _ = seq.crossing(fractions, bounds, drift_fixed * math.sqrt(ratio), futility)
        return up.sum() + down.sum()

    ratio = brentq(lambda r: power(r) - 0.8, 0.5, 2.0)
    assert ratio == pytest.approx(1.06, abs=0.01)
    expected = []
    for scale in (0.0, 1.0):
        up, down, fut = seq.crossing(fractions, bounds, drift_fixed * math.sqrt(ratio) * scale,
                                     futility)  # fmt: skip
        stop = up + down + fut
        stop[-1] = 1 - stop[:-1].sum()
        expected.append(ratio * float(np.dot(stop, fractions)))
    assert expected == pytest.approx([0.61, 0.89], abs=0.01)


def test_with_one_look_the_procedure_is_holms():
    p = [0.004, 0.03, 0.012, 0.2, 0.0001]
    proc = seq.Procedure.of(seq.Design((1.0,)), len(p))
    proc.look(p)
    holm = stats.holm(p)
    assert [s == seq.REJECTED for s in proc.status] == [h < 0.05 for h in holm]
    assert proc.adjusted_p() == pytest.approx(holm, rel=1e-3)
    assert all(s in (seq.REJECTED, seq.NOT_REJECTED) for s in proc.status)


def test_a_hand_worked_two_look_family():
    """Two looks at fractions 0.5 and 1, O'Brien-Fleming-like, futility |Z| < 0.5, three
    hypotheses. Look 1 at alpha/3 = 0.01667: nominal 2 (1 - Phi(c_1)); H1's p = 1e-5 crosses it,
    H3's p = 0.8 (|Z| = 0.25) stops for futility; H2 continues. Look 2: with H1 rejected H2 is
    tested at alpha/2 = 0.025: its boundary is the second one of the design at 0.025."""
    design = seq.Design((0.5, 1.0), seq.OBRIEN_FLEMING, (0.5,))
    c1 = seq.boundaries((0.5, 1.0), 0.05 / 3, seq.OBRIEN_FLEMING)[0]
    # Each side spends 2 - 2 Phi(z_{1 - a/4} / sqrt 0.5) of a = 0.05/3 at t = 0.5.
    side = 2 - 2 * sps.norm.cdf(sps.norm.isf(0.05 / 12) / math.sqrt(0.5))
    assert 2 * sps.norm.sf(c1) == pytest.approx(2 * side, rel=1e-6)
    proc = seq.Procedure.of(design, 3)
    first = proc.look([1e-5, 0.05, 0.8])
    assert [d.status for d in first] == [seq.REJECTED, seq.CONTINUE, seq.FUTILITY]
    assert first[1].nominal == pytest.approx(2 * sps.norm.sf(
        seq.boundaries((0.5, 1.0), 0.05 / 2, seq.OBRIEN_FLEMING)[0]), rel=1e-9)  # fmt: skip
    c2 = seq.boundaries((0.5, 1.0), 0.025, seq.OBRIEN_FLEMING)[1]
    just_inside = 2 * sps.norm.sf(c2) * 0.99
    second = proc.look([None, just_inside, None])
    assert [d.status for d in second] == [seq.REJECTED, seq.REJECTED, seq.FUTILITY]
    adjusted = proc.adjusted_p()
    assert adjusted[0] < adjusted[1] < 0.05 <= adjusted[2]
    # The same family with H2 just outside its boundary is not rejected at the last look.
    again = seq.Procedure.of(design, 3)
    again.look([1e-5, 0.05, 0.8])
    again.look([None, 2 * sps.norm.sf(c2) * 1.01, None])
    assert again.status == [seq.REJECTED, seq.NOT_REJECTED, seq.FUTILITY]
    assert again.adjusted_p()[1] > 0.05


def test_a_planted_effect_far_above_min_effect_stops_at_the_first_look():
    design = seq.Design(EQUAL[3], seq.OBRIEN_FLEMING, (0.5, 1.5))
    cells = tuple((8, 8) for _ in range(4))
    h = simulate.Monitored("continuous", 0.5, (cells, tuple((16, 16) for _ in range(4)),
                                               tuple((24, 24) for _ in range(4))))  # fmt: skip
    out = simulate.run(design, [h], [0.99], simulations=50)
    assert out.rejected.all() and (out.decided_at == 0).all()


def test_no_events_in_either_arm_stops_for_futility_at_the_first_look():
    """Both losses never diverge: the exact test's p is 1, |Z| = 0 < 0.5."""
    p = float(fisher.stratified_fisher_p([0, 0], [10, 10], [0, 0], [10, 10]))
    assert p == 1.0
    proc = seq.Procedure.of(seq.Design(EQUAL[3], seq.OBRIEN_FLEMING, (0.5, 1.5)), 1)
    (decision,) = proc.look([p])
    assert decision.status == seq.FUTILITY
    # Without a futility rule it continues.
    proc = seq.Procedure.of(seq.Design(EQUAL[3], seq.OBRIEN_FLEMING, ()), 1)
    assert proc.look([p])[0].status == seq.CONTINUE


def test_a_hypothesis_with_all_its_runs_at_the_first_look_is_decided_there():
    design = seq.Design((0.5, 1.0), seq.OBRIEN_FLEMING, (0.5,))
    proc = seq.Procedure(design, [(1.0, 1.0), (0.5, 1.0)])
    decisions = proc.look([0.02, 0.3])
    # Its whole alpha (0.025 after Holm's split) at its only look: the fixed test.
    assert decisions[0].nominal == pytest.approx(0.025, rel=1e-6)
    assert [d.status for d in decisions] == [seq.REJECTED, seq.CONTINUE]


def test_the_error_rate_of_a_sequential_family_under_no_effect():
    """1,000 studies of four continuous hypotheses, three looks: family-wise error <= 0.05
    (the Clopper-Pearson interval's lower end below alpha)."""
    design = seq.Design(EQUAL[3], seq.OBRIEN_FLEMING, (0.5, 1.5))
    h = simulate.Monitored("continuous", 0.5, tuple(((n, n),) * 3 for n in (10, 20, 30)))
    out = simulate.run(design, [h] * 4, [None] * 4, simulations=1000, seed=3)
    errors = int(out.rejected.any(axis=1).sum())
    ci = sps.binomtest(errors, 1000).proportion_ci(0.95, method="exact")
    assert ci.low <= 0.05, errors


def test_sequential_p_is_the_smallest_level_that_rejects():
    design = seq.Design(EQUAL[3])
    q = seq.sequential_p(design, [0.2, 0.001])
    assert q < 1
    nominal = design.nominal(q * 1.001)
    assert nominal[1] >= 0.001
    assert design.nominal(q * 0.999)[1] < 0.001

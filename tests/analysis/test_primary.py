"""The primary family: config validation before any work, the derived default, the plan."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from ganstudy.analysis import planning, primary
from ganstudy.analysis.comparisons import Pair
from ganstudy.errors import ConfigError

PAIRS = [
    Pair("mixtures", "ring8", "mlp2d", True, True, "gan", "lsgan"),
    Pair("mixtures", "grid25", "mlp2d", True, True, "gan", "lsgan"),
    Pair("mixtures", "ring8", "mlp2d", True, True, "gan", "lsgan_chi2"),
    Pair("fashion_mnist", "fashion_mnist", "dcgan28", True, True, "gan", "lsgan"),
    Pair("fashion_mnist", "fashion_mnist", "dcgan28", False, False, "gan", "lsgan"),
    Pair("cats", "cat64", "dcgan64", True, True, "gan", "lsgan"),
    Pair("lsgan_stability_adam", "cat64", "dcgan64", False, True, "gan", "lsgan"),
]
GOOD = {"candidate": "lsgan", "baseline": "gan", "outcome": "fid", "scope": ["fashion_mnist"]}


def config(*items):
    return {"analysis": {"primary": [dict(GOOD, **i) for i in items]}}


def test_a_hypothesis_pools_its_scope():
    (h,) = primary.hypotheses(config({}), PAIRS)
    assert h.min_effect == 0.65 and [p.bn_g for p in h.strata(PAIRS)] == [False, True]
    (h,) = primary.hypotheses(config({"scope": ["cat64"], "outcome": "diverged"}), PAIRS)
    assert len(h.strata(PAIRS)) == 2 and h.min_effect == 0.10 and h.base_rate == 0.5


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"outcome": "fid", "scope": ["ring8"]},
         "key 'analysis.primary[0].outcome': 'fid' is not measured on 'ring8'"),
        ({"scope": ["fashion-mnist"]},
         "key 'analysis.primary[0].scope': 'fashion-mnist' is not a dataset; allowed:"),
        ({"outcome": "success"},
         "'success' is not measured on 'fashion_mnist'; allowed there: outcomes of the 2D "
         "mixtures only"),
        ({"min_effect": 0.4}, "key 'analysis.primary[0].min_effect': 0.4 is not allowed for FID"),
        ({"outcome": "diverged", "min_effect": 1.5},
         "key 'analysis.primary[0].min_effect': 1.5 is not allowed for a rate"),
        ({"base_rate": 0.3}, "key 'analysis.primary[0].base_rate': set for FID; allowed: rate"),
        ({"outcome": "kl"}, "key 'analysis.primary[0].outcome': 'kl' is not allowed; allowed: "
         "fid, modes_covered, kl_to_uniform, high_quality_fraction, success, diverged, collapsed"),
    ],
)  # fmt: skip
def test_bad_hypotheses_are_named_before_any_work(item, message):
    with pytest.raises(ConfigError) as err:
        primary.hypotheses(config(item), PAIRS)
    assert message in str(err.value)


def test_a_hypothesis_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="listed twice"):
        primary.hypotheses(config({}, {}), PAIRS)


def test_hypotheses_of_blocks_switched_off_are_left_out_with_a_note():
    items = config({}, {"scope": ["stacked_mnist"], "outcome": "diverged"},
                   {"scope": ["ring8", "stacked_mnist"], "outcome": "diverged"})  # fmt: skip
    notes: list[str] = []
    kept = primary.hypotheses(items, PAIRS, notes)
    assert [h.scope for h in kept] == [("fashion_mnist",), ("ring8",)]
    assert notes == [
        "analysis.primary[1] (lsgan vs gan: diverged rate on stacked_mnist): left out, no "
        "planned comparison of lsgan vs gan on stacked_mnist in this study",
        "analysis.primary[2] (lsgan vs gan: diverged rate on ring8+stacked_mnist): pooled over "
        "ring8 only, no planned comparison on stacked_mnist in this study",
    ]


def test_an_arm_no_block_names_is_an_error():
    cfg = config({"candidate": "lsgn"})
    cfg["experiments"] = {"toy": {"losses": ["gan", "lsgan"]}}
    with pytest.raises(ConfigError, match=r"primary\[0\].candidate': 'lsgn' is not an arm of any"):
        primary.hypotheses(cfg, PAIRS)


def test_the_default_family_is_derived_per_dataset_family():
    family = primary.hypotheses({"analysis": {"primary": None}}, PAIRS)
    assert [(h.outcome.column, h.scope) for h in family] == [
        ("success", ("ring8", "grid25")),
        ("collapsed", ("ring8", "grid25")),
        ("diverged", ("fashion_mnist",)),
        ("fid", ("fashion_mnist",)),
        ("diverged", ("cat64",)),  # the cats block and the LSGAN stability block: one family
        ("fid", ("cat64",)),
    ]
    assert all((h.candidate, h.baseline) == ("lsgan", "gan") for h in family)


def test_the_schema_checks_the_keys(tmp_path):
    from ganstudy.study import schema

    toy = {"toy": {"datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["gan", "lsgan"]}}
    cfg = {"experiments": toy, "analysis": {"primary": [dict(GOOD, scopes=["x"])]}}
    with pytest.raises(ConfigError, match=r"unknown key 'analysis.primary.0.scopes'"):
        schema.validate(copy.deepcopy(cfg), schema.load_schema())
    cfg = {"experiments": toy, "analysis": {"primary": [{"candidate": "lsgan"}]}}
    with pytest.raises(ConfigError, match=r"analysis.primary.0.baseline' is missing"):
        schema.validate(cfg, schema.load_schema())


# ---------------------------------------------------------------------------------------------
# planning


def test_detectable_poi_matches_the_closed_form_roughly():
    # One stratum of n vs n: Noether, |P - 1/2| = (z_{1-a/2} + z_0.8) / sqrt(12 * n / 2).
    from statistics import NormalDist

    n, level = 40, 0.05
    z = NormalDist().inv_cdf
    noether = 0.5 + (z(1 - level / 2) + z(0.8)) / (12 * n / 2) ** 0.5
    found = planning.detectable_poi([(n, n)], level)
    assert found == pytest.approx(noether, abs=0.02)
    # and the power there is 80% by the simulation that found it
    assert planning.poi_power([(n, n)], found, level) == pytest.approx(0.8, abs=0.01)


def test_detectable_rate_difference_matches_the_normal_approximation_roughly():
    # Two proportions 0.5 vs 0.5 + d with n per arm: n = (z_a/2 + z_b)^2 (p0 q0 + p1 q1) / d^2.
    found = planning.stratified_detectable_rate_difference([(100, 100)] * 2, 0.5, 0.05)
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    d = found
    n_needed = (z(0.975) + z(0.8)) ** 2 * (0.25 + (0.5 + d) * (0.5 - d)) / d**2
    assert n_needed == pytest.approx(200, rel=0.15)
    assert planning.rate_power([(100, 100)] * 2, 0.5, d, 0.05) >= 0.8


def test_nothing_is_detectable_below_the_smallest_p():
    assert planning.detectable_poi([(2, 2)], 0.01) is None
    assert planning.stratified_detectable_rate_difference([(2, 2)], 0.5, 0.01) is None


def test_plan_table_and_warning(monkeypatch):
    from ganstudy.study.schema import default_schema_path
    from ganstudy.study.workflow import Study

    cfg = {
        "experiments": {
            "toy": {
                "datasets": ["ring8"],
                "archs": ["mlp2d"],
                "losses": ["gan", "lsgan"],
                "seeds": 3,
                "train": {"steps": 10},
            }  # fmt: skip
        }
    }
    study = Study.from_config(cfg, default_schema_path())
    evaluated = planning.evaluate(planning.plan(study))
    assert [p.hypothesis.outcome.column for p, _ in evaluated] == ["success", "collapsed"]
    text = planning.table(evaluated)
    assert "lsgan vs gan: success rate on ring8" in text and "3/3" in text
    assert "2 cannot detect their min_effect" in text
    assert "cannot detect the effect that matters" in planning.warning(evaluated)


def test_the_schema_allows_exactly_the_registered_outcomes(monkeypatch):
    from ganstudy.metrics import registry
    from ganstudy.study import schema

    def enum():
        return schema.load_schema()["$defs"]["hypothesis"]["properties"]["outcome"]["enum"]

    assert enum() == list(registry.outcomes())
    assert {"diverged", "fid", "success"} <= set(enum()) and "modes_total" not in enum()
    # The file names no outcome: the enum comes from the registry, so a new outcome is allowed
    # by its entry alone.
    assert "kl_to_uniform" not in schema.default_schema_path().read_text()
    toy = replace(registry.KL_TO_UNIFORM, name="toy_outcome", path=("modes", "toy_outcome"))
    monkeypatch.setitem(registry.METRICS, toy.name, toy)
    assert "toy_outcome" in enum()

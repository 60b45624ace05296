"""Calibration of the primary family, by simulation of whole studies with the study's design.

For the primary hypotheses of a study config (``analysis.primary`` and the seeds of its cells),
``--studies`` synthetic studies are drawn and every hypothesis is tested with the report's own
tests (the p that :mod:`ganstudy.analysis.pooled` reports: the exact conditional test for rates,
the stratified permutation test for continuous outcomes), Holm-corrected over the family:

- **no effect**: both arms alike in every cell, cells unlike each other. Rates: each cell's rate
  uniform in [0.05, 0.95]. Continuous: each cell's location N(0, 1), values N(location, 1); a
  cell's share of runs that diverge uniform in [0, 0.3] in both arms (they rank worst, as in the
  report), and values rounded to integers on integer outcomes (modes covered), so ties and
  diverged runs are part of the check. The family-wise false-positive rate (any Holm-adjusted
  p < alpha) must be at most alpha.
- **the planned effect**: every hypothesis at the effect ``ganstudy study cost`` calls detectable
  (the planned model: rates at base_rate and base_rate + d, then base_rate - d; continuous values
  shifted so that P(better) is the detectable one, no ties, no divergence). The observed power of
  each hypothesis (its p at Holm's first threshold alpha / m, the level the plan uses; and its
  Holm-adjusted p < alpha) should be about 80%.

Rates are given with Clopper-Pearson 95% intervals (scipy.stats.binomtest).

    python benchmarks/calibration.py [config/config.yaml] --studies 500 --seed 0 --out calibration.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from ganstudy import atomic
from ganstudy.analysis import exact, planning, stats
from ganstudy.analysis.power import ALPHA, RATE
from ganstudy.errors import ConfigError
from ganstudy.study.files import load_configs
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study

ROOT = Path(__file__).resolve().parents[1]
INTEGER_OUTCOMES = ("modes_covered",)


def null_p(planned, rng) -> float:
    h, sizes = planned.hypothesis, planned.sizes
    if h.outcome.kind == RATE:
        rates = rng.uniform(0.05, 0.95, len(sizes))
        ex = [rng.binomial(n, r) for (n, _), r in zip(sizes, rates)]
        ey = [rng.binomial(m, r) for (_, m), r in zip(sizes, rates)]
        return float(
            exact.stratified_fisher_p(ex, [n for n, _ in sizes], ey, [m for _, m in sizes])
        )
    strata = []
    for n, m in sizes:
        loc, diverge = rng.normal(), rng.uniform(0, 0.3)
        arms = []
        for k in (n, m):
            values = loc + rng.standard_normal(k)
            if h.outcome.column in INTEGER_OUTCOMES:
                values = np.round(values * 3)
            values[rng.random(k) < diverge] = -np.inf
            arms.append(values)
        strata.append(tuple(arms))
    return exact.stratified_rank_test(strata).p


def effect_p(planned, effect: float, direction: int, rng) -> float:
    h, sizes = planned.hypothesis, planned.sizes
    if h.outcome.kind == RATE:
        cand_rate = h.base_rate + direction * effect
        ex = [rng.binomial(n, cand_rate) for n, _ in sizes]
        ey = [rng.binomial(m, h.base_rate) for _, m in sizes]
        return float(
            exact.stratified_fisher_p(ex, [n for n, _ in sizes], ey, [m for _, m in sizes])
        )
    delta = math.sqrt(2) * float(sps.norm.ppf(effect))
    strata = [(rng.standard_normal(n) + delta, rng.standard_normal(m)) for n, m in sizes]
    return exact.stratified_rank_test(strata).p


def interval(k: int, n: int) -> str:
    ci = sps.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="*", default=[str(ROOT / "config" / "config.yaml")])
    parser.add_argument("--studies", type=int, default=500, help="simulated studies per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error(f"--studies {args.studies} is not allowed; allowed: an integer >= 1")
    try:
        study = Study.from_config(load_configs(args.config), default_schema_path())
    except ConfigError as err:
        parser.error(str(err))
    family = planning.plan(study)
    if not family:
        parser.error("the study has no primary hypothesis")
    m, level = len(family), family[0].level
    rng = np.random.default_rng(args.seed)
    start = time.monotonic()

    any_rejection = 0
    for _ in range(args.studies):
        p = [null_p(f, rng) for f in family]
        any_rejection += any(q < ALPHA for q in stats.holm(p))
    fwer_seconds = time.monotonic() - start
    print(f"Primary family of {', '.join(args.config)}: {m} hypotheses, alpha {ALPHA}, "
          f"Holm's first threshold {level:.4g}")  # fmt: skip
    print(
        f"No effect, {args.studies} simulated studies: family-wise false-positive rate "
        f"{interval(any_rejection, args.studies)} (must be <= {ALPHA}); {fwer_seconds:.0f} s"
    )

    detectable = [f.detectable() for f in family]
    directions = [(+1,) if f.hypothesis.outcome.kind != RATE else tuple(
        s for s in (+1, -1) if 0 <= f.hypothesis.base_rate + s * (d or 0) <= 1)
        for f, d in zip(family, detectable)]  # fmt: skip
    results = []
    for direction in (+1, -1):
        hits_level = [0] * m
        hits_holm = [0] * m
        active = [direction in dirs and d is not None for dirs, d in zip(directions, detectable)]
        if not any(active):
            continue
        for _ in range(args.studies):
            p = [effect_p(f, d, direction, rng) if on else 1.0
                 for f, d, on in zip(family, detectable, active)]  # fmt: skip
            for i, (q, adj) in enumerate(zip(p, stats.holm(p))):
                hits_level[i] += q <= level
                hits_holm[i] += adj < ALPHA
        for i, f in enumerate(family):
            if active[i]:
                results.append((f, detectable[i], direction, hits_level[i], hits_holm[i]))

    print(f"\nThe planned effect, {args.studies} simulated studies per direction:")
    header = ["primary hypothesis", "planted effect", "power at alpha/m [95% CI]",
              "Holm-adjusted < alpha [95% CI]"]  # fmt: skip
    rows = []
    for f, d, direction, k_level, k_holm in results:
        h = f.hypothesis
        planted = (f"rate {h.base_rate:.2f} vs {h.base_rate + direction * d:.3f}"
                   if h.outcome.kind == RATE else f"P(better) {d:.3f}")  # fmt: skip
        rows.append(
            [h.name, planted, interval(k_level, args.studies), interval(k_holm, args.studies)]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"({time.monotonic() - start:.0f} s in all; seed {args.seed})")

    if args.out:
        atomic.write_json(args.out, {
            "config": args.config, "studies": args.studies, "seed": args.seed, "alpha": ALPHA,
            "level": level, "false_positive_studies": any_rejection,
            "power": [{"hypothesis": f.hypothesis.name, "effect": d, "direction": s,
                       "rejections_at_level": kl, "rejections_holm": kh}
                      for f, d, s, kl, kh in results],
        })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

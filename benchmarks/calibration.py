"""Calibration of the primary family, by simulation of whole studies with the study's design.

For the primary hypotheses of a study config (``analysis.primary``, the seeds of its cells and
its waves, ``analysis.sequential``), synthetic studies are drawn and run through the looks with
the decision code the workflow's looks run (:class:`ganstudy.analysis.sequential.Procedure`);
each look's p is the report's own test (the exact conditional test for rates, the stratified
permutation test for continuous outcomes) on the runs of the waves trained so far. A fixed
design (``waves: 1``) is the one-look case: Holm's procedure on the p-values.

- **no effect** (the error rate): both arms alike in every cell, cells unlike each other. Rates:
  each cell's rate uniform in [0.05, 0.95]. Continuous: each cell's location N(0, 1), values
  N(location, 1); a cell's share of runs that diverge uniform in [0, 0.3] in both arms (they
  rank worst, as in the report), values rounded to integers on integer outcomes (modes covered),
  so ties and diverged runs are part of the check. The family-wise false-positive rate (any
  hypothesis rejected at any look) must be at most alpha.
- **power at min_effect**: each hypothesis alone at its ``min_effect`` (the others null: the
  hardest case, its test at Holm's first level), and every hypothesis at its min_effect
  (the planned models of :mod:`ganstudy.analysis.simulate`: rates at base_rate vs
  base_rate + d, continuous values shifted so P(better) = min_effect; no ties).
- **expected cost**: per block the runs, CPU-hours and H200-hours trained under no effect,
  every hypothesis at its min_effect, at twice it, and the published effects where the config
  declares them (:mod:`ganstudy.study.expected`), against the maximum and against a fixed
  design (``--fixed``: another config, e.g. the previous default).
- **bias after an early stop**: the mean estimate of the hypotheses rejected at the first look
  under min_effect, against the true effect.

Rates are given with Clopper-Pearson 95% intervals (scipy.stats.binomtest), means with normal
95% intervals.

    python benchmarks/calibration.py [config/config.yaml] --studies 1000 --seed 0 --out calibration.json
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
from ganstudy.analysis import exact, fisher, simulate
from ganstudy.analysis.power import ALPHA
from ganstudy.errors import ConfigError
from ganstudy.metrics import registry as metric_registry
from ganstudy.metrics.registry import RATE
from ganstudy.study import expected
from ganstudy.study.files import load_configs
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study

ROOT = Path(__file__).resolve().parents[1]
# Counts (e.g. modes covered) tie often: their draws are rounded.
INTEGER_OUTCOMES = tuple(m.name for m in metric_registry.metrics() if m.dtype == "int")


def null_draw(columns: list[str]):
    """The no-effect model with heterogeneous cells, ties and divergence: a draw function for
    :func:`ganstudy.analysis.simulate.run` (p at each look on the runs so far)."""
    column_of = {}

    def draw(h: simulate.Monitored, rng, simulations: int, effect):
        column = column_of.get(id(h))
        final = h.sizes[-1]
        out = np.ones((simulations, len(h.sizes)))
        for s in range(simulations):
            if h.kind == RATE:
                rates = rng.uniform(0.05, 0.95, len(final))
                arms = [((rng.random(n) < r).astype(int), (rng.random(m) < r).astype(int))
                        for (n, m), r in zip(final, rates)]  # fmt: skip
                for k, look in enumerate(h.sizes):
                    ex = [a[:n].sum() for (a, _), (n, _m) in zip(arms, look)]
                    ey = [b[:m].sum() for (_, b), (_n, m) in zip(arms, look)]
                    out[s, k] = float(fisher.stratified_fisher_p(
                        ex, [n for n, _ in look], ey, [m for _, m in look]))  # fmt: skip
                continue
            arms = []
            for n, m in final:
                loc, diverge = rng.normal(), rng.uniform(0, 0.3)
                pair = []
                for size in (n, m):
                    values = loc + rng.standard_normal(size)
                    if column in INTEGER_OUTCOMES:
                        values = np.round(values * 3)
                    values[rng.random(size) < diverge] = -np.inf
                    pair.append(values)
                arms.append(pair)
            for k, look in enumerate(h.sizes):
                strata = [(c[:n], b[:m]) for (c, b), (n, m) in zip(arms, look)]
                out[s, k] = exact.stratified_rank_test(strata).p
        return out, np.full_like(out, np.nan)

    def bind(family):
        for h, column in zip(family, columns):
            column_of[id(h)] = column
        return draw

    return bind


def interval(k: int, n: int) -> str:
    ci = sps.binomtest(int(k), n).proportion_ci(0.95, method="exact")
    return f"{k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def mean_interval(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.3g}" if len(values) else "-"
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    return f"{values.mean():,.1f} [{values.mean() - half:,.1f}, {values.mean() + half:,.1f}]"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def load(paths: list[str], parser) -> Study:
    try:
        return Study.from_config(load_configs(paths), default_schema_path())
    except ConfigError as err:
        parser.error(str(err))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="*", default=[str(ROOT / "config" / "config.yaml")])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs for the wall-clock estimate")
    parser.add_argument("--fixed", nargs="*", metavar="CONFIG",
                        help="a fixed design to compare the cost with (config files)")  # fmt: skip
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error(f"--studies {args.studies} is not allowed; allowed: an integer >= 1")
    study = load(args.config, parser)
    if not study.primary:
        parser.error("the study has no primary hypothesis")
    family = expected.monitored(study)
    design = study.waves.design
    m = len(family)
    names = [h.name for h in study.primary]
    start = time.monotonic()
    print(f"Primary family of {', '.join(args.config)}: {m} hypotheses, alpha {ALPHA}; "
          f"{design.describe() if study.waves.sequential else 'fixed design (one look)'}")  # fmt: skip

    draw = null_draw([h.outcome.column for h in study.primary])(family)
    null = simulate.run(design, family, [None] * m, args.studies, args.seed, draw=draw)
    any_rejection = int(null.rejected.any(axis=1).sum())
    print(f"No effect (heterogeneous cells, ties, divergence), {args.studies} simulated studies: "
          f"family-wise false-positive rate {interval(any_rejection, args.studies)} "
          f"(must be <= {ALPHA}); {time.monotonic() - start:.0f} s")  # fmt: skip

    alone = []
    for i, h in enumerate(study.primary):
        effects = [None] * m
        effects[i] = h.min_effect
        out = simulate.run(design, family, effects, args.studies, args.seed + 1 + i)
        alone.append(int(out.rejected[:, i].sum()))
    every = simulate.run(design, family, [h.min_effect for h in study.primary], args.studies,
                         args.seed + 100)  # fmt: skip
    print(f"\nPower at min_effect, {args.studies} simulated studies each (power at alpha/m: the "
          "hypothesis alone at its effect, the others null):")  # fmt: skip
    rows = []
    bias = []
    for i, h in enumerate(study.primary):
        first = every.rejected[:, i] & (every.decided_at[:, i] == 0)
        est = every.estimate[first, i]
        truth = h.min_effect if h.outcome.kind != RATE else h.min_effect
        shift = (np.abs(est - (0.5 if h.outcome.kind != RATE else 0.0)) - (truth - 0.5 if
                 h.outcome.kind != RATE else truth)) if len(est) else np.zeros(0)  # fmt: skip
        bias.append(float(shift.mean()) if len(shift) else math.nan)
        rows.append([h.name, h.describe_min_effect(), interval(alone[i], args.studies),
                     interval(int(every.rejected[:, i].sum()), args.studies),
                     f"{every.decided_at[:, i].mean() + 1:.2f}",
                     f"{bias[-1]:+.3f} ({len(est)})" if len(est) else "-"])  # fmt: skip
    print_table(["primary hypothesis", "min_effect", "power at alpha/m [95% CI]",
                 "every one at min_effect [95% CI]", "mean look decided",
                 "bias when rejected at look 1 (n)"], rows)  # fmt: skip

    costs = expected.wave_costs(study)
    top = expected.maximum_per_block(costs)
    fixed_totals = None
    if args.fixed:
        fixed = load(args.fixed, parser)
        f_costs = expected.wave_costs(fixed)
        fixed_totals = list(f_costs.maximum())
    max_totals = list(costs.maximum())
    print("\nCost: maximum (every wave) and expected, per block (runs; mean [95% CI]):")
    header = ["scenario", *costs.blocks, "total runs", "CPU-h", "H200-h", "vs maximum (CPU-h)"]
    if fixed_totals:
        header += ["vs fixed: runs", "CPU-h", "H200-h"]
    rows = [["maximum", *(f"{top[b][0]:,.0f}" for b in costs.blocks),
             *(f"{x:,.0f}" for x in max_totals), "1.000"]]  # fmt: skip
    if fixed_totals:
        rows[0] += [f"{a / b:.3f}" for a, b in zip(max_totals, fixed_totals)]
    scenario_records = []
    for s in expected.scenarios(study):
        out = simulate.run(design, family, s.effects, args.studies, args.seed + 200)
        trained = expected.waves_trained(study, out.decided_at, costs)
        runs, cpu, gpu = costs.per_block(trained)
        totals = np.stack([a.sum(axis=1) for a in (runs, cpu, gpu)], axis=1)
        per_block = list(runs.T)
        row = [s.name, *(mean_interval(v) for v in per_block),
               mean_interval(totals[:, 0]), f"{totals[:, 1].mean() / 3600:,.0f}",
               f"{totals[:, 2].mean() / 3600:,.1f}",
               f"{totals[:, 1].mean() / 3600 / max_totals[1]:.3f}"]  # fmt: skip
        ratios = []
        if fixed_totals:
            ratios = [totals[:, 0].mean() / fixed_totals[0],
                      totals[:, 1].mean() / 3600 / fixed_totals[1],
                      totals[:, 2].mean() / 3600 / fixed_totals[2]]  # fmt: skip
            row += [f"{r:.3f}" for r in ratios]
        rows.append(row)
        scenario_records.append({"scenario": s.name, "note": s.note,
                                 "runs": float(totals[:, 0].mean()),
                                 "cpu_hours": float(totals[:, 1].mean() / 3600),
                                 "gpu_hours": float(totals[:, 2].mean() / 3600),
                                 "vs_fixed": ratios,
                                 "power": [float(p) for p in out.power()]})  # fmt: skip
        if s.note:
            print(f"({s.name}: {s.note})")
    print_table(header, rows)
    print(f"({time.monotonic() - start:.0f} s in all; seed {args.seed})")

    if args.out:
        atomic.write_json(args.out, {
            "config": args.config, "studies": args.studies, "seed": args.seed, "alpha": ALPHA,
            "design": design.describe(), "false_positive_studies": any_rejection,
            "power": [{"hypothesis": n, "min_effect": h.min_effect, "alone": a,
                       "every_at_min_effect": int(every.rejected[:, i].sum()),
                       "bias_first_look": None if math.isnan(b) else b}
                      for i, (n, h, a, b) in enumerate(zip(names, study.primary, alone, bias))],
            "maximum": {"runs": max_totals[0], "cpu_hours": max_totals[1],
                        "gpu_hours": max_totals[2]},
            "fixed": None if fixed_totals is None else {
                "runs": fixed_totals[0], "cpu_hours": fixed_totals[1],
                "gpu_hours": fixed_totals[2]},
            "scenarios": scenario_records,
        })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every candidate vs its baseline, per dataset x architecture x batch norm: tests and their
section.

The pairs are the study's (``comparisons.csv``, written when the study is designed: each block's
candidates against the baseline its config names, checked to differ only in what their arms
set). Runs without that file (trained by hand) are paired by the ``compare`` roles (``gan``
against every LSGAN loss by default; :class:`~ganstudy.losses.ComparedLosses`) among the
plain losses of each group. Each pair is compared on the FID where the dataset has one, else on
its mode metric(s), with :func:`ganstudy.analysis.stats.compare`; Holm's correction runs over every
comparison that can reach significance. Runs that diverged rank worst, as in the pooled tests
(:mod:`ganstudy.analysis.pooled`), with the same test among completed runs only beside.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from ganstudy import store
from ganstudy.analysis import power, stats
from ganstudy.analysis.comparisons import DIVERGED, Pair, metric_tests
from ganstudy.analysis.strata import fid_settings
from ganstudy.losses import ComparedLosses
from ganstudy.metrics.registry import RATE, Metric
from ganstudy.report.html import LEVEL, Html, fmt, fmt_p, join, table, tag
from ganstudy.report.inputs import ReportInputs

GROUP = ["dataset", "arch", "bn_g", "bn_d"]


def comparison_metrics(dataset_runs: pd.DataFrame) -> tuple[Metric, ...]:
    """The tests of a dataset (:func:`ganstudy.analysis.comparisons.metric_tests`): FID where its runs
    have FID values, else its mode metric(s); and the rate of diverged runs."""
    kinds = dataset_runs["modes_kind"].dropna().unique()
    return metric_tests(
        dataset_runs["dataset"].iloc[0],
        has_fid=bool(dataset_runs["fid"].notna().any()),
        mode_kind=kinds[0] if len(kinds) else None,
    )


def pairs_of(
    runs: pd.DataFrame, comparison: ComparedLosses, pairs: list[Pair] | None
) -> list[tuple[str, str, bool, bool, str, str]]:
    """(dataset, arch, bn_g, bn_d, baseline arm, candidate arm) of every comparison: the study's
    pairs, else the roles of ``comparison`` among the plain losses (arm = loss) of each group."""
    if pairs is not None:
        keys = {tuple(k) for k in runs[[*GROUP, "arm"]].itertuples(index=False)}
        return [
            (p.dataset, p.arch, p.bn_g, p.bn_d, p.baseline, p.candidate)
            for p in pairs
            if (p.dataset, p.arch, p.bn_g, p.bn_d, p.candidate) in keys
        ]
    out = []
    plain = runs[runs["arm"] == runs["loss"]]
    for (dataset, arch, bn_g, bn_d), group in plain.groupby(GROUP, sort=True):
        candidates = group[comparison.is_candidate(group)]
        for arm in sorted(candidates["arm"].unique()):
            out.append((dataset, arch, bn_g, bn_d, comparison.baseline, arm))
    return out


def is_compared(runs: pd.DataFrame, comparison: ComparedLosses, pairs: list[Pair] | None):
    """Rows of a runs table that are the baseline or the candidate of a comparison."""
    arms = set()
    for dataset, arch, bn_g, bn_d, base, cand in pairs_of(runs, comparison, pairs):
        arms |= {(dataset, arch, bn_g, bn_d, base), (dataset, arch, bn_g, bn_d, cand)}
    return pd.Series(
        [tuple(k) in arms for k in runs[[*GROUP, "arm"]].itertuples(index=False)],
        index=runs.index,
        dtype=bool,
    )


def compare_losses(
    runs: pd.DataFrame,
    alpha: float = power.ALPHA,
    comparison: ComparedLosses | None = None,
    pairs: list[Pair] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, arch, bn, baseline, candidate, metric): Mann-Whitney p (runs that
    diverged ranked worst; ``cmp.p_completed_only`` without them), bootstrap CI of the
    difference of means (candidate - baseline), Holm-adjusted p over all testable comparisons
    (of ``cmp.p``), verdict."""
    comparison = comparison or ComparedLosses.from_config()
    compared = pairs_of(runs, comparison, pairs)
    rows = []
    for dataset, dataset_runs in runs.groupby("dataset", sort=True):
        # Without any metric value yet (runs missing or not evaluated) the groups are still
        # listed, each with the reason no test was made.
        metrics = comparison_metrics(dataset_runs)
        for _, arch, bn_g, bn_d, base_arm, cand_arm in sorted(
            (p for p in compared if p[0] == dataset), key=lambda p: (p[1], p[2], p[3])
        ):
            group = dataset_runs[
                (dataset_runs["arch"] == arch)
                & (dataset_runs["bn_g"] == bn_g)
                & (dataset_runs["bn_d"] == bn_d)
            ]
            base = group[group["arm"] == base_arm]
            cand = group[group["arm"] == cand_arm]
            baseline = base["loss_label"].iloc[0] if len(base) else base_arm
            cand_label = cand["loss_label"].iloc[0]
            for test in metrics:
                metric = test.column
                # The rate of diverged runs already counts them.
                flags = test.column != DIVERGED.column
                cmp = stats.compare(
                    base[metric].astype(float),
                    cand[metric].astype(float),
                    test.label,
                    test.higher_is_better,
                    kind=test.kind,
                    diverged_baseline=_diverged(base) if flags else None,
                    diverged_candidate=_diverged(cand) if flags else None,
                )
                if metric == "fid" and len(fid_settings(pd.concat([base, cand]))) > 1:
                    cmp = _untestable(
                        cmp, "not compared: the FIDs were computed with different settings"
                    )
                if base.empty:
                    cmp = _untestable(cmp, f"no {baseline} runs in this group")
                rows.append(
                    {
                        "dataset": dataset,
                        "arch": arch,
                        "bn": store.bn_label(bn_g, bn_d),
                        "baseline": baseline,
                        "candidate": cand_label,
                        "metric": test.label,
                        "cmp": cmp,
                        "no_value": _no_value_note({baseline: base, cand_label: cand}, metric),
                    }
                )
    if not rows:
        return pd.DataFrame(
            columns=["dataset", "arch", "bn", "baseline", "candidate", "metric", "cmp", "no_value"]
        )
    df = pd.DataFrame(rows)
    p = [c.p if c.testable else math.nan for c in df["cmp"]]
    df["p_holm"] = stats.holm(p)
    # Holm's first step, the level the smallest p must reach for any rejection: the detectable
    # effects are stated at it (the most demanding step of the procedure).
    threshold = power.holm_threshold(int(sum(c.testable for c in df["cmp"])), alpha)
    df["detectable"] = [_detectable(c, threshold) for c in df["cmp"]]
    df["verdict"] = [
        stats.verdict(
            c,
            ph,
            base,
            cand,
            alpha=alpha,
            level=LEVEL,
            detectable=power.describe_effect(c.kind, d) if c.testable else None,
        )
        for c, ph, base, cand, d in zip(
            df["cmp"], df["p_holm"], df["baseline"], df["candidate"], df["detectable"]
        )
    ]
    return df


def _detectable(cmp: stats.MetricComparison, threshold: float) -> float | None:
    """The smallest effect this comparison's test detects with 80% power at the threshold, with
    its arm sizes (rates from the baseline's observed rate)."""
    base_rate = cmp.mean_baseline if math.isfinite(cmp.mean_baseline) else 0.5
    return power.detectable_effect(
        cmp.kind, cmp.n_baseline, cmp.n_candidate, threshold, base_rate=base_rate
    )


def _untestable(cmp: stats.MetricComparison, reason: str) -> stats.MetricComparison:
    return replace(cmp, testable=False, reason=reason)


def _diverged(runs: pd.DataFrame) -> pd.Series:
    return (runs["state"] == "diverged") | (runs["diverged"] == 1.0)


def _no_value_note(groups: dict[str, pd.DataFrame], metric: str) -> str:
    """Which runs of the compared groups have no value of the metric, and why (their state);
    runs that diverged have one: the worst."""
    notes = []
    for label, runs in groups.items():
        lacking = runs[runs[metric].isna() & ~_diverged(runs)]
        if not lacking.empty:
            counts = lacking["state"].value_counts()
            notes.append(f"{label}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "; ".join(notes)


def _n_text(c: stats.MetricComparison) -> str:
    """Runs per arm (baseline / candidate), with the diverged ones among them."""
    text = f"{c.n_baseline} / {c.n_candidate}"
    if c.diverged:
        text += f" (diverged: {c.diverged_baseline} / {c.diverged_candidate})"
    return text


def _completed_text(c: stats.MetricComparison) -> str:
    """The p without the runs that diverged, and the runs it drew on ("-": none diverged)."""
    if not c.diverged:
        return "-"
    runs = f"{c.n_baseline - c.diverged_baseline} / {c.n_candidate - c.diverged_candidate}"
    return f"p {fmt_p(c.p_completed_only, True)} ({runs} runs)"


def _which_pairs(study: ReportInputs) -> str:
    comparison = study.comparison
    if study.pairs is not None:
        shown = sorted({f"{p.baseline} vs {p.candidate}" for p in study.pairs})
        return (
            "For each dataset, architecture and batch-norm setting, every candidate is compared "
            "with its baseline as the study configures them per block (comparisons.csv: "
            f"{', '.join(shown) or 'none'}); the two differ only in their loss and in what their "
            "arms set (optimizer, learning-rate schedule, alpha), everything else being equal,"
        )
    return (
        f"For each dataset, architecture and batch-norm setting, {comparison.baseline} is "
        f"compared with each candidate loss present ({', '.join(comparison.candidates)}) among "
        "the runs of a plain loss (no comparisons.csv: runs not designed by a study),"
    )


def statistics_section(study: ReportInputs) -> Html:
    comparison = study.comparison
    baseline = comparison.baseline
    candidates = ", ".join(comparison.candidates)
    cmp = compare_losses(study.runs, comparison=comparison, pairs=study.pairs)
    n_testable = int(sum(c.testable for c in cmp["cmp"])) if not cmp.empty else 0
    intro = tag(
        "p",
        f"{_which_pairs(study)} on the FID where the dataset has one and on its mode "
        "metric(s) otherwise, and on the rate of diverged runs. Secondary and exploratory: the "
        "question's answer is the primary family above; these per-cell tests have their own "
        "Holm correction. Continuous metrics: two-sided Mann-Whitney U over seeds, exact with "
        "ties (the permutation distribution of U given the values; its normal approximation "
        "above 100 runs, as named beside each U), effect size Cliff's delta "
        "(P(candidate > baseline) - P(candidate < baseline)); rates (success, diverged): "
        "two-sided Fisher exact test (scipy.stats.fisher_exact), effect size the difference of "
        f"rates. Holm correction over the {n_testable} comparisons that can reach significance "
        "(comparisons with too few seeds cannot and are not counted). Difference = "
        "mean(candidate) - mean(baseline); every CI is a 95% bootstrap interval "
        f"(scipy.stats.bootstrap, BCa, else percentile; {stats.N_BOOTSTRAP} resamples, seed 0). "
        "Smallest reachable p: what the most extreme outcome would give at these n. Detectable "
        "with 80% power: the smallest effect the test finds 4 times in 5 at Holm's first "
        f"threshold {power.ALPHA:g}/{max(1, n_testable)} (Noether's approximation for Cliff's "
        "delta; exact binomial power from the baseline's rate for rates). Significance level "
        f"{power.ALPHA}. Runs that diverged are counted, never dropped, as in the answer above: "
        "on FID and mode counts they rank below every completed run (tied among themselves; "
        "Cliff's delta ranks them the same way), on the success rate they count as failures; n "
        "counts them (with how many diverged), the means and their difference are over "
        "completed runs, and the same test among completed runs only is shown beside. Runs "
        "without a value (not evaluated, missing) are left out of a test and listed in the last "
        "column; the stability section counts them.",
    )
    if cmp.empty:
        missing = (
            "No planned comparison has runs."
            if study.pairs is not None
            else f"No group has both {baseline} and candidate ({candidates}) runs."
        )
        return join([intro, tag("p", missing)])
    rows = []
    for r in cmp.itertuples():
        c: stats.MetricComparison = r.cmp
        rows.append(
            [
                r.dataset,
                r.arch,
                r.bn,
                f"{r.baseline} vs {r.candidate}",
                r.metric,
                _n_text(c),
                fmt(c.mean_baseline),
                fmt(c.mean_candidate),
                f"{fmt(c.difference)} [{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
                f"{c.effect_name} {fmt(c.effect)} [{fmt(c.effect_low)}, {fmt(c.effect_high)}]",
                c.method if c.kind == RATE else f"U = {fmt(c.u)} ({c.method})",
                fmt_p(c.p),
                fmt_p(c.min_p),
                fmt_p(r.p_holm),
                _completed_text(c),
                power.describe_effect(c.kind, r.detectable) if c.testable else "-",
                r.verdict,
                r.no_value,
            ]
        )
    return join(
        [
            intro,
            table(
                [
                    "dataset",
                    "arch",
                    "batch norm",
                    "comparison",
                    "metric",
                    "n",
                    "mean baseline",
                    "mean candidate",
                    "difference [95% CI]",
                    "effect size [95% CI]",
                    "test",
                    "p",
                    "smallest reachable p",
                    "p (Holm)",
                    "among completed runs only",
                    "detectable with 80% power",
                    "verdict",
                    "runs without a value",
                ],
                rows,
                cls="stats",
            ),
        ]
    )

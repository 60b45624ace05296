"""The baseline loss vs every candidate loss, per dataset x architecture x batch norm: tests and
their section.

Per group the baseline (``gan`` by default) is compared with each candidate (every LSGAN loss by
default; see :class:`~ganstudy.report.inputs.Comparison`) on the FID where the dataset has one, else on its mode metric(s), with :func:`ganstudy.stats.compare`; Holm's correction runs
over every comparison that can reach significance.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from ganstudy import layout, stats
from ganstudy.report.html import LEVEL, Html, fmt, join, table, tag
from ganstudy.report.inputs import Comparison, ReportInputs

GROUP = ["dataset", "arch", "bn_g", "bn_d"]


MODE_COMPARISONS = {
    "stacked_mnist": (("modes_covered", "modes covered", True),),
    "classes": (("modes_covered", "modes covered", True),),
    "mixture2d": (("modes_covered", "modes covered", True), ("success", "success", True)),
}


def comparison_metrics(dataset_runs: pd.DataFrame) -> tuple[tuple[str, str, bool], ...]:
    """FID (lower is better) where the dataset has one, else its mode metric(s)."""
    if dataset_runs["fid"].notna().any():
        return (("fid", "FID", False),)
    kinds = dataset_runs["modes_kind"].dropna().unique()
    return MODE_COMPARISONS.get(kinds[0], ()) if len(kinds) else ()


def fid_settings(runs: pd.DataFrame) -> set[str]:
    """The distinct FID settings (sorted JSON of eval.json's fid.settings) of runs with an FID."""
    return set(runs.loc[runs["fid"].notna(), "fid_settings"].dropna())


def compare_losses(
    runs: pd.DataFrame, alpha: float = stats.ALPHA, comparison: Comparison | None = None
) -> pd.DataFrame:
    """One row per (dataset, arch, bn, candidate loss, metric): Mann-Whitney p, bootstrap CI of
    the difference of means (candidate - baseline), Holm-adjusted p over all testable
    comparisons, verdict."""
    comparison = comparison or Comparison.from_config()
    baseline = comparison.baseline
    rows = []
    for dataset, dataset_runs in runs.groupby("dataset", sort=True):
        # Without any metric value yet (runs missing or not evaluated) the groups are still
        # listed, each with the reason no test was made.
        metrics = comparison_metrics(dataset_runs) or (("fid", "no metric recorded yet", False),)
        for (_, arch, bn_g, bn_d), group in dataset_runs.groupby(GROUP, sort=True):
            base = group[group["loss_label"] == baseline]
            candidates = sorted(group.loc[comparison.is_candidate(group), "loss_label"].unique())
            for cand_label in candidates:
                cand = group[group["loss_label"] == cand_label]
                for metric, label, higher in metrics:
                    cmp = stats.compare(
                        base[metric].astype(float), cand[metric].astype(float), label, higher
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
                            "bn": layout.bn_label(bn_g, bn_d),
                            "candidate": cand_label,
                            "metric": label,
                            "cmp": cmp,
                            "no_value": _no_value_note({baseline: base, cand_label: cand}, metric),
                        }
                    )
    if not rows:
        return pd.DataFrame(
            columns=["dataset", "arch", "bn", "candidate", "metric", "cmp", "no_value"]
        )
    df = pd.DataFrame(rows)
    p = [c.p if c.testable else math.nan for c in df["cmp"]]
    df["p_holm"] = stats.holm(p)
    df["verdict"] = [
        stats.verdict(c, ph, baseline, cand, alpha=alpha, level=LEVEL)
        for c, ph, cand in zip(df["cmp"], df["p_holm"], df["candidate"])
    ]
    return df


def _untestable(cmp: stats.Comparison, reason: str) -> stats.Comparison:
    return replace(cmp, testable=False, reason=reason)


def _no_value_note(groups: dict[str, pd.DataFrame], metric: str) -> str:
    """Which runs of the compared groups have no value of the metric, and why (their state)."""
    notes = []
    for label, runs in groups.items():
        lacking = runs[runs[metric].isna()]
        if not lacking.empty:
            counts = lacking["state"].value_counts()
            notes.append(f"{label}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "; ".join(notes)


def statistics_section(study: ReportInputs) -> Html:
    comparison = study.comparison
    baseline, candidates = comparison.baseline, ", ".join(comparison.candidates)
    cmp = compare_losses(study.runs, comparison=comparison)
    intro = tag(
        "p",
        f"For each dataset, architecture and batch-norm setting, {baseline} is compared with each "
        f"candidate loss present ({candidates}), on the FID where the dataset has one and on its mode "
        "metric otherwise. Test: two-sided Mann-Whitney U over seeds (scipy.stats.mannwhitneyu); "
        f"Holm correction over the {int(sum(c.testable for c in cmp['cmp']))} comparisons that "
        "can reach significance (comparisons with too few seeds cannot and are not counted); "
        f"difference = mean(candidate) - mean({baseline}) with its 95% percentile "
        f"bootstrap CI ({stats.N_BOOTSTRAP} resamples, seed 0). Significance level "
        f"{stats.ALPHA}. Runs without a value (diverged, not evaluated, missing) are left out of "
        "a test and listed in the last column; the stability section counts them.",
    )
    if cmp.empty:
        return join(
            [intro, tag("p", f"No group has both {baseline} and candidate ({candidates}) runs.")]
        )
    rows = []
    for r in cmp.itertuples():
        c: stats.Comparison = r.cmp
        rows.append(
            [
                r.dataset,
                r.arch,
                r.bn,
                f"{baseline} vs {r.candidate}",
                r.metric,
                f"{c.n_baseline} / {c.n_candidate}",
                fmt(c.mean_baseline),
                fmt(c.mean_candidate),
                f"{fmt(c.difference)} [{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
                fmt(c.u),
                fmt(c.p),
                fmt(r.p_holm),
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
                    f"mean {baseline}",
                    "mean other",
                    "difference [95% CI]",
                    "U",
                    "p",
                    "p (Holm)",
                    "verdict",
                    "runs without a value",
                ],
                rows,
                cls="stats",
            ),
        ]
    )

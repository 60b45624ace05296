"""The study's secondary family, per cell and exploratory (the primary hypotheses, pooled over
cells, are :mod:`ganstudy.analysis.planning`'s), planned before any run: every pair of the study (a candidate arm
against its baseline in a dataset x arch x bn group, :func:`ganstudy.study.grid.plan_pairs`) on
each metric test of the dataset (:func:`ganstudy.analysis.comparisons.metric_tests`), with the seeds each
arm will have.

For each planned comparison: the smallest p its test can reach, whether that clears Holm's first
threshold alpha / m over the whole planned family (if not, no outcome can be significant after
the correction), and the smallest effect it detects with 80% power at that threshold.
``ganstudy study cost`` prints the table; the workflow warns at start about every comparison that
can never reach significance.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganstudy import store
from ganstudy.analysis import power
from ganstudy.analysis.comparisons import metric_tests

# Rates are planned from a baseline rate of one half, where a difference is hardest to detect.
PLANNING_BASE_RATE = 0.5


@dataclass(frozen=True)
class PlannedComparison:
    dataset: str
    arch: str
    bn: str
    baseline: str
    candidate: str
    metric: str
    kind: str
    n_baseline: int
    n_candidate: int

    @property
    def min_p(self) -> float:
        return power.min_p(self.kind, self.n_baseline, self.n_candidate)

    def detectable(self, level: float) -> float | None:
        return power.detectable_effect(
            self.kind, self.n_baseline, self.n_candidate, level, base_rate=PLANNING_BASE_RATE
        )


def plan(study) -> list[PlannedComparison]:
    """Every comparison the report will make once all runs of ``study`` are in: its pairs
    (:func:`ganstudy.study.grid.plan_pairs`), each on every metric test of its dataset."""
    seeds = {v.key: len(v.seeds) for v in study.variants}
    out = []
    for p in sorted(study.pairs, key=lambda p: (p.dataset, p.arch, p.bn_g, p.bn_d)):
        base = store.VariantKey(p.dataset, p.arch, p.baseline, p.bn_g, p.bn_d).path
        cand = store.VariantKey(p.dataset, p.arch, p.candidate, p.bn_g, p.bn_d).path
        for test in metric_tests(p.dataset):
            out.append(
                PlannedComparison(
                    p.dataset, p.arch, store.bn_label(p.bn_g, p.bn_d), p.baseline, p.candidate,
                    test.label, test.kind, seeds[base], seeds[cand],
                )
            )  # fmt: skip
    return out


def threshold(comparisons: list[PlannedComparison], alpha: float = power.ALPHA) -> float:
    """Holm's first threshold over the family of comparisons that can reach ``alpha`` at all."""
    family = sum(c.min_p < alpha for c in comparisons)
    return power.holm_threshold(family, alpha)


def unreachable(comparisons: list[PlannedComparison], alpha: float = power.ALPHA):
    level = threshold(comparisons, alpha)
    return [c for c in comparisons if c.min_p > level]


def table(comparisons: list[PlannedComparison], alpha: float = power.ALPHA) -> str:
    """The planned comparisons as a text table, with the family's Holm threshold."""
    if not comparisons:
        return "No planned comparison: no group has both the baseline and a candidate loss."
    level = threshold(comparisons, alpha)
    header = ["dataset", "arch", "bn", "comparison", "metric", "n", "min p", "reachable",
              "detectable with 80% power"]  # fmt: skip
    rows = [
        [
            c.dataset, c.arch, c.bn, f"{c.baseline} vs {c.candidate}", c.metric,
            f"{c.n_baseline}/{c.n_candidate}", f"{c.min_p:.2g}",
            "yes" if c.min_p <= level else "NO",
            power.describe_effect(c.kind, c.detectable(level)),
        ]
        for c in comparisons
    ]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    bad = unreachable(comparisons, alpha)
    family = max(1, sum(c.min_p < alpha for c in comparisons))
    lines.append(
        f"{len(comparisons)} planned comparisons; Holm's first threshold {alpha:g}/{family} = "
        f"{level:.2g}; "
        + (
            f"{len(bad)} can never reach significance: give their arms more seeds."
            if bad
            else "every one can reach significance."
        )
    )
    return "\n".join(lines)


def warning(comparisons: list[PlannedComparison], alpha: float = power.ALPHA) -> str | None:
    """The start-of-study warning about comparisons that can never be significant."""
    bad = unreachable(comparisons, alpha)
    if not bad:
        return None
    level = threshold(comparisons, alpha)
    shown = "; ".join(
        f"{c.dataset}/{c.arch}/{c.bn} {c.baseline} vs {c.candidate} on {c.metric} "
        f"(n = {c.n_baseline}/{c.n_candidate}, smallest p {c.min_p:.2g})"
        for c in bad[:5]
    )
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (
        f"Power of the secondary (per-cell, exploratory) family: {len(bad)} of "
        f"{len(comparisons)} planned comparisons can never reach "
        f"significance after Holm's correction (first threshold {level:.2g}): {shown}{more}. "
        "Their verdicts will read 'no significant difference' whatever the truth; give their "
        "arms more seeds (`ganstudy study cost` lists every comparison)."
    )

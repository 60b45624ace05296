"""The cells of a primary hypothesis from the runs of a summary, and the p its look reads.

A cell (:class:`ganstudy.analysis.pooled.Cell`) is one stratum of the hypothesis (dataset x
architecture x batch norm x block) with each arm's per-run outcomes: rates 0/1; continuous
outcomes oriented so that higher is better, -inf for a run that diverged (it ranks worst); a
run without a value (not finished, not evaluated, metric missing) is left out and named. The
report (:mod:`ganstudy.report.answer`) and the looks of a sequential study
(``ganstudy study look``) draw on the same cells and the same test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ganstudy import store
from ganstudy.analysis import pooled
from ganstudy.analysis.comparisons import Pair
from ganstudy.analysis.primary import Hypothesis
from ganstudy.metrics.registry import RATE

FINISHED = store.FINISHED


def fid_settings(runs: pd.DataFrame) -> set[str]:
    """The distinct FID settings (sorted JSON of eval.json's fid.settings) of runs with an FID."""
    return set(runs.loc[runs["fid"].notna(), "fid_settings"].dropna())


def mixed_fid_settings(h: Hypothesis, used: pd.DataFrame) -> bool:
    """An FID hypothesis whose runs were measured with different settings: not testable."""
    return h.outcome.column == "fid" and len(fid_settings(used)) > 1


def value(h: Hypothesis, row, completed_only: bool) -> float | None:
    """The run's outcome (rates 0/1; continuous oriented, higher is better, -inf: diverged);
    None when the run has no value (not finished, not evaluated, metric missing)."""
    diverged = row.state == "diverged" or row.diverged == 1.0
    outcome = h.outcome
    if outcome.column == "diverged":
        known = row.state in FINISHED or row.train_status in FINISHED
        return float(diverged) if known and not (completed_only and diverged) else None
    if row.state not in FINISHED:
        return None
    if diverged:
        if completed_only:
            return None
        return float(outcome.if_diverged) if outcome.kind == RATE else -math.inf
    value = getattr(row, outcome.column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    return value if outcome.kind == RATE or outcome.higher_is_better else -value


def cells(h: Hypothesis, runs: pd.DataFrame, pairs: list[Pair], completed_only: bool = False):
    """The hypothesis' cells from the runs (a plain summary, :func:`ganstudy.report.inputs.plain`)
    of the planned ``pairs``: (cells, runs used, note on runs without a value)."""
    out, used, notes = [], [], []
    for p in h.strata(pairs):
        group = runs[(runs["dataset"] == p.dataset) & (runs["arch"] == p.arch)
                     & (runs["bn_g"] == p.bn_g) & (runs["bn_d"] == p.bn_d)]  # fmt: skip
        arms = {}
        for role, arm in (("baseline", p.baseline), ("candidate", p.candidate)):
            members = group[group["arm"] == arm]
            values = [(r, value(h, r, completed_only)) for r in members.itertuples()]
            arms[role] = np.asarray([v for _, v in values if v is not None], dtype=float)
            used += [r.Index for r, v in values if v is not None]
            lacking = [r.state for r, v in values if v is None]
            if lacking:
                counts = pd.Series(lacking).value_counts()
                shown = ", ".join(f"{n} {s}" for s, n in counts.items())
                notes.append(
                    f"{p.dataset} {p.arch} {store.bn_label(p.bn_g, p.bn_d)} {arm}: {shown}"
                )
        labels = {"dataset": p.dataset, "arch": p.arch,
                  "bn": store.bn_label(p.bn_g, p.bn_d), "block": p.block}  # fmt: skip
        sign = 1.0 if h.outcome.kind == RATE or h.outcome.higher_is_better else -1.0
        out.append(pooled.Cell(labels, arms["baseline"], arms["candidate"], sign))
    return out, runs.loc[used], "; ".join(notes)


def look_p(h: Hypothesis, runs: pd.DataFrame, pairs: list[Pair]) -> tuple[float | None, int, int]:
    """The p of the hypothesis' pooled test on ``runs`` (None: not testable), and the runs of
    the candidate and the baseline it drew on."""
    found, used, _ = cells(h, runs, pairs)
    n_c = sum(len(c.candidate) for c in found)
    n_b = sum(len(c.baseline) for c in found)
    if mixed_fid_settings(h, used):
        return None, n_c, n_b
    p = pooled.test_p(found, h.outcome.kind)
    return (p if math.isfinite(p) else None), n_c, n_b

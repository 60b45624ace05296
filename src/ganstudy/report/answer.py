"""The report's first section, "The answer": the primary hypotheses, pooled over cells.

Each primary hypothesis (:mod:`ganstudy.analysis.primary`, from the study config's
``analysis.primary``) is tested over its cells (:mod:`ganstudy.analysis.pooled`) with Holm's
correction over the primary family only, and stated in one line of plain words. Beside it: the
same analysis among completed runs (runs that diverged left out), the heterogeneity tests, the
smallest effect the design detects, and a forest plot of every cell's effect with the pooled one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import yaml

from ganstudy import store
from ganstudy.analysis import planning, pooled, stats, strata
from ganstudy.analysis import primary as primary_mod
from ganstudy.analysis.comparisons import Pair
from ganstudy.analysis.power import ALPHA
from ganstudy.analysis.primary import Hypothesis
from ganstudy.errors import ConfigError
from ganstudy.metrics.registry import RATE
from ganstudy.report import figures
from ganstudy.report import looks as report_looks
from ganstudy.report.compare import pairs_of
from ganstudy.report.html import Html, figure, fmt, fmt_p, join, table, tag
from ganstudy.report.inputs import ReportInputs

FINISHED = store.FINISHED
FOREST_FILE = "forest.png"  # the forest plots, as a file of the figures directory


@dataclass(frozen=True)
class Answer:
    hypothesis: Hypothesis
    result: pooled.PooledResult
    completed_only: pooled.PooledResult | None
    runs: pd.DataFrame  # the runs the test drew on
    missing: str  # runs of the cells without a value, and why
    untestable: str = ""


def _study_pairs(study: ReportInputs) -> list[Pair]:
    if study.pairs is not None:
        return study.pairs
    # Runs not designed by a study: each dataset is a family of its own.
    return [Pair(d, d, a, g, b, base, cand)
            for d, a, g, b, base, cand in pairs_of(study.runs, study.comparison, None)]  # fmt: skip


def family(study: ReportInputs, notes: list[str] | None = None) -> list[Hypothesis]:
    """The primary family: the study config's (``--config``), else the derived default."""
    config = yaml.safe_load(study.config_text) if study.config_text else None
    try:
        return primary_mod.hypotheses(config, _study_pairs(study), notes)
    except ConfigError as err:
        raise ConfigError(f"study config {study.config_path}: {err}") from err


def cells(h: Hypothesis, study: ReportInputs, completed_only: bool = False):
    """The hypothesis' cells from the runs: (cells, runs used, note on runs without a value)."""
    return strata.cells(h, study.runs, _study_pairs(study), completed_only)


def analyse(h: Hypothesis, study: ReportInputs, level: float = pooled.LEVEL) -> Answer:
    """The pooled test of ``h`` on the study's runs; ``level``: the interval's confidence."""
    found, used, missing = cells(h, study)
    analysis = pooled.pooled_rate if h.outcome.kind == RATE else pooled.pooled_continuous
    result = analysis(found, level=level)
    untestable = ""
    if strata.mixed_fid_settings(h, used):
        untestable = "not tested: the FIDs were computed with different settings"
    elif not result.testable:
        untestable = "not tested yet: no cell has finished runs of both arms"
    completed = None
    if h.outcome.column != "diverged" and _any_diverged(used):
        completed = analysis(cells(h, study, completed_only=True)[0], level=level)
    return Answer(h, result, completed, used, missing, untestable)


def _any_diverged(runs: pd.DataFrame) -> bool:
    return bool(((runs["state"] == "diverged") | (runs["diverged"] == 1.0)).any())


def _scope(h: Hypothesis) -> str:
    return " + ".join(h.scope)


def _effect_text(h: Hypothesis, r: pooled.PooledResult) -> str:
    if r.kind == RATE:
        counts = (f"{r.events_candidate} of {r.n_candidate} vs {r.events_baseline} of "
                  f"{r.n_baseline} runs")  # fmt: skip
        if math.isnan(r.effect):
            return f"{counts}; no cell has runs both with and without the event: no odds ratio"
        if r.effect == 0 or math.isinf(r.effect):
            return (f"{counts}; common odds ratio {fmt(r.effect)} (events in one arm only: "
                    "no confidence interval)")  # fmt: skip
        return f"{counts}; common odds ratio {fmt(r.effect)} [{fmt(r.low)}, {fmt(r.high)}]"
    diverged = ""
    if r.diverged_candidate or r.diverged_baseline:
        diverged = (f", of which {r.diverged_candidate} and {r.diverged_baseline} diverged and "
                    "rank worst")  # fmt: skip
    return (f"probability of improvement {fmt(r.effect)} [{fmt(r.low)}, {fmt(r.high)}] over "
            f"{r.cells} cell(s) ({r.n_candidate} vs {r.n_baseline} runs{diverged})")  # fmt: skip


def _detectable_text(h: Hypothesis, r: pooled.PooledResult, level: float) -> str:
    sizes = [(c.n_candidate, c.n_baseline) for c in r.per_cell]
    if h.outcome.kind == RATE:
        d = planning.stratified_detectable_rate_difference(sizes, h.base_rate, level)
        if d is None:
            return "these runs cannot detect any difference of rates with 80% power"
        return (f"this design detects a difference of rates of at least {d:.3f} from a baseline "
                f"rate of {h.base_rate:.2f} with 80% power")  # fmt: skip
    d = planning.detectable_poi(sizes, level)
    if d is None:
        return "these runs cannot detect any effect with 80% power"
    return (
        f"this design detects a probability of improvement outside [{1 - d:.2f}, {d:.2f}] "
        "with 80% power"
    )


def sentence(a: Answer, p_holm: float, level: float, adjusted: str = "Holm-adjusted") -> str:
    """One line of plain words for a primary hypothesis."""
    h, r = a.hypothesis, a.result
    cand, base, scope = h.candidate, h.baseline, _scope(h)
    if a.untestable:
        return f"{cand} vs {base}, {h.outcome.label} on {scope}: {a.untestable}."
    test = f"{r.method} p {fmt_p(r.p, True)}, {adjusted} {fmt_p(p_holm)}"
    if p_holm < ALPHA:
        if r.kind == RATE:
            fewer = r.effect < 1
            verb = f"{h.outcome.verb} {'less' if fewer else 'more'} often"
            return f"{cand} {verb} than {base} on {scope}: {_effect_text(h, r)}, {test}."
        better = r.effect > 0.5
        direction = {True: "higher", False: "lower"}[better == h.outcome.higher_is_better]
        quality = "better" if better else "worse"
        return (f"{cand} gave {quality} {h.outcome.label} ({direction}) than {base} on {scope}: "
                f"{_effect_text(h, r)}, {test}.")  # fmt: skip
    return (f"No difference detected in the {h.outcome.label} of {cand} and {base} on {scope} "
            f"({_effect_text(h, r)}, {test}); {_detectable_text(h, r, level)}.")  # fmt: skip


def _heterogeneity_text(r: pooled.PooledResult) -> str:
    het = r.heterogeneity
    if het is None:
        return "-"
    parts = [f"{het.test}: {fmt(het.statistic)} on {het.df} df, p {fmt_p(het.p, True)}"]
    parts += [
        f"by {f.factor}: Q = {fmt(f.q)} on {f.df} df, p {fmt_p(f.p, True)}" for f in het.factors
    ]
    return "; ".join(parts)


def _forest_title(a: Answer) -> str:
    het = a.result.heterogeneity
    text = "heterogeneity: -" if het is None else f"{het.test} p {fmt_p(het.p, True)}"
    return f"{a.hypothesis.name}\n{text}"


def _forest_rows(index: int, a: Answer) -> list[dict]:
    r = a.result
    is_rate = r.kind == RATE
    common = {"panel": str(index), "null": 1.0 if is_rate else 0.5, "log": is_rate,
              "xlabel": "odds ratio (candidate / baseline)" if is_rate
              else "P(candidate better than baseline)"}  # fmt: skip
    rows = [dict(common, label=f"{c.name} ({c.detail})", effect=c.effect, low=c.low,
                 high=c.high, pooled=False) for c in r.per_cell]  # fmt: skip
    label = f"pooled: {fmt(r.effect)} [{fmt(r.low)}, {fmt(r.high)}]"
    rows.append(dict(common, label=label, effect=r.effect, low=r.low, high=r.high, pooled=True))
    return rows


METHODS = (
    "Each primary hypothesis pools its cells (dataset x architecture x batch norm x block; the "
    "arms of a cell differ only in their loss and what their arms set). Rates: the exact "
    "conditional test of a common odds ratio of 1 (a stratified Fisher test, exact at any count), "
    "the Mantel-Haenszel common odds ratio (candidate's odds over the baseline's) with its "
    "Robins-Breslow-Greenland 95% CI, the Cochran-Mantel-Haenszel test beside it, and the "
    "Breslow-Day test (Tarone) of a common odds ratio (statsmodels' StratifiedTable). "
    "Continuous outcomes (FID, modes covered, KL): the probability of improvement P(candidate "
    "better than baseline) + P(tie)/2 per cell, averaged over cells, with a stratified bootstrap "
    "95% CI (scipy.stats.bootstrap, each arm of each cell resampled on its own, BCa else "
    "percentile, 4000 resamples, seed 0), tested by the stratified permutation test of that mean "
    "(labels permuted within cells; the exact permutation distribution, ties included, or its "
    "normal approximation above 100 runs per cell, as named beside each p). Runs that diverged "
    "are counted, never dropped: on a continuous outcome they rank below every completed run; "
    "on the success rate they count as failures, on the collapse rate as collapsed. The same "
    "analysis among completed runs only is shown beside. Heterogeneity: Breslow-Day or Cochran's "
    "Q over the cells (per-cell odds ratios with Woolf's variance, 0.5 added to tables with a "
    "zero; probabilities of improvement with the Hanley-McNeil variance at the pooled value) and, "
    "for each factor that varies, the between-groups Q of a subgroup analysis: asymptotic tests, "
    "rough with few seeds per cell. Holm's correction runs over the primary family only; the "
    "detectable effect is at Holm's first threshold alpha / m, by simulation of the same test "
    f"({planning.SIMULATIONS} simulated studies, seed {planning.SEED}). Significance level "
    f"{ALPHA}."
)


def study_looks(study: ReportInputs, hypotheses: list[Hypothesis], notes: list[str]):
    """The study's look records where they match its primary family, else None (with a note
    when they do not match)."""
    seq = report_looks.read(study.results)
    if seq is None:
        return None
    if seq.names != [h.name for h in hypotheses]:
        notes.append(f"the look records in {store.ResultsDir(study.results).looks} name another "
                     "primary family than the study config: the p-values below ignore them")  # fmt: skip
        return None
    return seq


def answer_section(study: ReportInputs, files: dict[str, bytes] | None = None) -> Html:
    """The section; ``files``, where given, receives its figures as PNG files by name
    (FOREST_FILE: the forest plots), for the report's figures directory."""
    notes: list[str] = []
    hypotheses = family(study, notes)
    if not hypotheses:
        return tag("p", "No primary hypothesis: no cell compares lsgan with its baseline, and the "
                   "study config names none (analysis.primary).")  # fmt: skip
    seq = study_looks(study, hypotheses, notes)
    if seq is None:
        answers = [analyse(h, study) for h in hypotheses]
        p = [a.result.p if not a.untestable else math.nan for a in answers]
        p_holm, adjusted = stats.holm(p), "Holm-adjusted"
    else:
        # The final p: the looks' Holm-adjusted sequential p; the interval: repeated.
        answers = [analyse(h, study, seq.rci_level(h.name)) for h in hypotheses]
        p_holm = [seq.adjusted_p[seq.of(h.name)] for h in hypotheses]
        adjusted = "sequential Holm-adjusted"
    level = ALPHA / max(1, len(hypotheses))
    lines = [tag("li", sentence(a, ph, level, adjusted)) for a, ph in zip(answers, p_holm)]
    rows = []
    for a, ph in zip(answers, p_holm):
        r, c = a.result, a.completed_only
        completed = "-" if c is None else (
            f"{fmt(c.effect)} [{fmt(c.low)}, {fmt(c.high)}], p {fmt_p(c.p, True)} "
            f"({c.n_candidate} vs {c.n_baseline} runs)"
        )  # fmt: skip
        effect_name = "common odds ratio" if r.kind == RATE else "P(better)"
        rows.append([
            a.hypothesis.name, r.cells, f"{r.n_candidate} / {r.n_baseline}",
            f"{effect_name} {fmt(r.effect)} [{fmt(r.low)}, {fmt(r.high)}]",
            r.method, fmt_p(r.p), fmt_p(r.p_cmh) if r.kind == RATE else "-", fmt_p(ph), completed,
            _heterogeneity_text(r), a.missing or "-",
        ])  # fmt: skip
    parts = [
        tag(
            "p",
            f"Holm's correction over these {len(hypotheses)} primary hypotheses only (the "
            "study config's analysis.primary); every per-cell comparison further down is "
            "secondary and exploratory.",
        ),  # fmt: skip
        tag("ol", join(lines), class_="answer"),
        *(tag("p", f"Note: {n}.", class_="note") for n in notes),
    ]
    forest = pd.DataFrame([row for i, a in enumerate(answers) if not a.untestable
                           for row in _forest_rows(i, a)])  # fmt: skip
    if not forest.empty:
        titles = {str(i): _forest_title(a) for i, a in enumerate(answers)}
        used = pd.concat([a.runs for a in answers]).drop_duplicates(subset="run_dir")
        png = figures.forest(forest, titles)
        if files is not None:
            files[FOREST_FILE] = png
        parts.append(figure(
            png,
            "Forest plots: each cell's effect (squares, with 95% CIs) and the pooled estimate "
            "(diamond); dashed: no effect. Rates: odds ratios (log scale; per cell Woolf's CI, "
            "0.5 added to tables with a zero); continuous: P(candidate better than baseline) "
            "with percentile bootstrap CIs per cell.",
            used,
        ))  # fmt: skip
    if seq is not None:
        used = pd.concat([a.runs for a in answers]).drop_duplicates(subset="run_dir")
        parts.append(report_looks.section(seq, study.config_text, used))
    interval = "95% CI" if seq is None else "repeated CI"
    parts.append(table(
        ["primary hypothesis", "cells", "runs (candidate / baseline)", f"effect [{interval}]",
         "test", "p", "CMH p",
         "p (Holm, primary family)" if seq is None else "p (sequential, Holm)",
         "among completed runs only",
         "heterogeneity (does the effect depend on the cell?)", "runs without a value"],
        rows, cls="answer-table",
    ))  # fmt: skip
    parts.append(tag("p", METHODS, class_="note"))
    return join(parts)

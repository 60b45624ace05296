"""The per-dataset results and the stability section of the report.

Per dataset: a table of every metric as mean +/- SD and bootstrap CI over seeds for each
architecture x batch norm x loss, then the figures registered in ``DATASET_PARTS``. Stability:
divergence and collapse rates per variant, the gradient norm of G over training, and the
learning rate of D of runs that schedule it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from ganstudy import store
from ganstudy.aggregate import columns as summary_columns
from ganstudy.data.registry import DATASETS
from ganstudy.metrics.registry import FID, MODES_COVERED, RATES, VALUES, Metric, metrics
from ganstudy.report import figures as report_figures
from ganstudy.report.compare import fid_settings, is_compared
from ganstudy.report.html import Html, figure, fmt, img, join, run_list, summarize, table, tag
from ganstudy.report.inputs import (
    REPRESENTATIVE_RULE,
    ReportInputs,
    dataset_info,
    read_run_csvs,
    representative,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _present(d: pd.DataFrame, metrics) -> list[Metric]:
    return [m for m in metrics if m.name in d and d[m.name].notna().any()]


def _metric_table(d: pd.DataFrame) -> Html:
    # The registry's table metrics; a rate's mean is the share of runs where it holds.
    present = {m.name: m.heading for m in _present(d, (m for m in metrics() if m.table))}
    rows = []
    for (arch, bn, loss), g in d.groupby(["arch", "bn", "loss_label"], sort=True):
        counts = g["state"].value_counts()
        state = ", ".join(f"{counts[s]} {s}" for s in summary_columns.STATES if s in counts)
        rows.append([arch, bn, loss, state, *(summarize(g[c].astype(float)) for c in present)])
    return table(["arch", "batch norm", "loss", "runs", *present.values()], rows)


def _describe_settings(settings_json: str, runs: pd.DataFrame) -> str:
    settings = json.loads(settings_json)
    n = int((runs["fid_settings"] == settings_json).sum())
    return ", ".join(f"{k}={v}" for k, v in settings.items()) + f" ({n} runs)"


def _weak_classifier_note(d: pd.DataFrame) -> Html:
    """A warning where mode metrics were measured by a classifier below its target accuracy."""
    weak = d[d["classifier_below_target"].map(lambda v: v is True)]
    if weak.empty:
        return Html("")
    accuracies = sorted({fmt(a) for a in weak["classifier_test_accuracy"].dropna()})
    return tag(
        "p",
        f"Warning: the mode metrics of {len(weak)} of {len(d)} runs here were measured by an "
        f"evaluation classifier below its target accuracy (test accuracy "
        f"{', '.join(accuracies)}): treat their mode counts, KL and the tests on them with "
        "caution.",
        class_="note",
    )


def _fid_settings_note(d: pd.DataFrame) -> Html:
    settings = sorted(fid_settings(d))
    if not settings:
        return Html("")
    if len(settings) == 1:
        text = _describe_settings(settings[0], d)
        return tag("p", f"FID settings, the same for every run here: {text}.", class_="note")
    listing = join(tag("li", _describe_settings(s, d)) for s in settings)
    return join(
        [
            tag(
                "p",
                "Warning: the FIDs of this dataset were computed with different settings; values "
                "from different settings are not comparable, and comparisons across them are not "
                "tested:",
                class_="warning",
            ),
            tag("ul", listing),
        ]
    )


def _fig_fid_box(study: ReportInputs, d: pd.DataFrame) -> Html:
    data = d[d["fid"].notna()]
    if data.empty:
        return Html("")
    png = report_figures.box_strip(data, y="fid", ylabel="FID (lower is better)")
    return figure(
        png,
        "FID by loss: boxes over seeds with each seed as a dot, per architecture, "
        "coloured by batch-norm setting",
        data,
    )


def _fig_fid_curves(study: ReportInputs, d: pd.DataFrame) -> Html:
    curves = read_run_csvs(study, d, store.FID_CURVE, ["step", "fid"]).dropna(subset=["fid"])
    if curves.empty:
        return Html("")
    png = report_figures.curves(curves, y="fid", ylabel="FID")
    used = d[d["run_dir"].isin(curves["run_dir"].unique())]
    return figure(png, "FID over training: mean over seeds (line) and +/- 1 SD band", used)


def _fig_metrics(study: ReportInputs, d: pd.DataFrame) -> Html:
    """The registry's per-run panels: values over seeds, and rates."""
    kinds = d["modes_kind"].dropna().unique()
    of_kind = f" (mode metric: {kinds[0]})" if len(kinds) else ""
    parts = []
    panels = [(m.name, m.heading) for m in _present(d, metrics()) if m.panel == VALUES]
    if panels:
        long = pd.concat(
            [d[d[c].notna()].assign(metric=h, value=d[c].astype(float)) for c, h in panels],
            ignore_index=True,
        )
        png = report_figures.box_strip(
            long, y="value", ylabel="", panel="metric", hue="variant", sharey=False
        )
        used = d[d["run_dir"].isin(long["run_dir"].unique())]
        parts.append(figure(png, f"Metrics by loss{of_kind}, coloured by variant", used))
    rate_cols = {m.name: m.label for m in _present(d, metrics()) if m.panel == RATES}
    if rate_cols:
        data = d[d[list(rate_cols)].notna().any(axis=1)]
        rule = "; ".join(sorted(set(data["modes_rule"].dropna())))
        png = report_figures.rates(data, rate_cols)
        parts.append(
            figure(png, f"Success and failure rates by loss and variant. Rule: {rule}", data)
        )
    return join(parts)


def scatter_title(row) -> str:
    """The title of one run's generated points (a summary row): arm, variant, seed, modes."""
    covered = fmt(getattr(row, MODES_COVERED.name))
    return f"{row.loss_label}, {row.variant}\nseed {int(row.seed)}, {covered} modes"


def _fig_scatter2d(study: ReportInputs, d: pd.DataFrame) -> Html:
    dataset = d["dataset"].iloc[0]
    try:
        means = np.array(DATASETS[dataset].mixture.means)
    except (KeyError, AttributeError):
        return Html("")
    points, titles, used = {}, {}, []
    for (variant, loss), g in d.groupby(["variant", "loss_label"], sort=True):
        row = representative(
            g, MODES_COVERED.name, lambda r: study.run_path(r, store.SAMPLES_2D).exists()
        )
        if row is None:
            continue
        pts = read_run_csvs(study, g[g["run_dir"] == row.run_dir], store.SAMPLES_2D, ["x", "y"])
        points[(variant, loss)] = pts
        titles[(variant, loss)] = scatter_title(row)
        used.append(row.run_dir)
    if not points:
        return Html("")
    png = report_figures.scatter2d(points, means, titles)
    caption = (
        "Generated points (blue) over the true mixture means (red circles), one seed per "
        "loss and variant. " + REPRESENTATIVE_RULE
    )
    return figure(png, caption, d[d["run_dir"].isin(used)])


def _sample_grids(study: ReportInputs, d: pd.DataFrame) -> Html:
    metric = (FID if d[FID.name].notna().any() else MODES_COVERED).name
    losses = sorted(d["loss_label"].unique())
    rows, used = [], []
    for variant, g in d.groupby("variant", sort=True):
        cells = [variant]
        for loss in losses:
            members = g[g["loss_label"] == loss]
            if members.empty:
                cells.append("not in the design")
                continue
            row = representative(
                members, metric, lambda r: study.run_path(r, store.SAMPLE_GRID).exists()
            )
            if row is None:
                states = ", ".join(f"{n} {s}" for s, n in members["state"].value_counts().items())
                cells.append(f"no samples.png yet ({states})")
                continue
            data = study.run_path(row, store.SAMPLE_GRID).read_bytes()
            if not data.startswith(PNG_SIGNATURE):
                cells.append(f"{row.run_dir}/samples.png is not a PNG file")
                continue
            label = f"seed {int(row.seed)}, {metric} {fmt(getattr(row, metric))}"
            cells.append(
                join([img(data, f"{loss} {variant} {label}", cls="grid"), tag("div", label)])
            )
            used.append(row.run_dir)
        rows.append(cells)
    if not used:
        return Html("")
    return join(
        [
            tag("h4", "Samples of the final generator"),
            tag("p", REPRESENTATIVE_RULE),
            table(["variant", *losses], rows, cls="samples"),
            run_list(d[d["run_dir"].isin(used)]),
        ]
    )


DATASET_PARTS: tuple[Callable[[ReportInputs, pd.DataFrame], Html], ...] = (
    _fig_fid_box,
    _fig_fid_curves,
    _fig_metrics,
    _fig_scatter2d,
    _sample_grids,
)


def results_section(study: ReportInputs) -> Html:
    parts = [
        tag(
            "p",
            "Per dataset: metrics as mean ± SD over seeds, the 95% percentile bootstrap CI of the "
            "mean in brackets and the number of runs with a value. Runs without a value (diverged, "
            "not evaluated, missing) are counted in the runs column.",
        )
    ]
    for dataset, d in study.runs.groupby("dataset", sort=True):
        parts.append(tag("h3", f"{dataset}", id=f"dataset-{dataset}"))
        described, substitute = dataset_info(dataset)
        parts.append(tag("p", described))
        if substitute:
            parts.append(
                tag(
                    "p",
                    f"{dataset} is a substitute for {substitute}, a different dataset: these are "
                    f"results on {dataset}, not on {substitute}.",
                    class_="warning",
                )
            )
        parts.append(_fid_settings_note(d))
        parts.append(_weak_classifier_note(d))
        parts.append(_metric_table(d))
        parts.extend(part(study, d) for part in DATASET_PARTS)
    return join(parts)


# States of a run whose training has ended (see ganstudy.aggregate.columns.STATES).
FINISHED_STATES = (*store.FINISHED, store.NOT_EVALUATED)


def stability_section(study: ReportInputs) -> Html:
    rows = []
    for (dataset, arch, bn, loss), g in study.runs.groupby(
        ["dataset", "arch", "bn", "loss_label"], sort=True
    ):
        trained = g[g["state"].isin(FINISHED_STATES)]
        unfinished = g[g["state"].isin((store.Status.INTERRUPTED, store.Status.RUNNING))]
        diverged = trained["diverged"].map(lambda v: v is True)
        evaluated = g[g["collapsed"].notna()]
        collapsed = evaluated["collapsed"].map(lambda v: v is True)
        judged = g[g["not_converged"].notna()]
        not_converged = judged["not_converged"].map(lambda v: v is True)
        steps = trained.loc[diverged, "diverged_step"]
        rows.append(
            [
                dataset,
                arch,
                bn,
                loss,
                len(g),
                len(trained),
                len(unfinished),
                f"{int(diverged.sum())} ({_pct(diverged.sum(), len(trained))})",
                f"{int(collapsed.sum())} of {len(evaluated)} ({_pct(collapsed.sum(), len(evaluated))})",
                f"{int(not_converged.sum())} of {len(judged)} "
                f"({_pct(not_converged.sum(), len(judged))})"
                if len(judged)
                else "-",
                fmt(float(steps.median())) if len(steps) else "-",
            ]
        )
    rules = sorted(set(study.runs["collapse_rule"].dropna()))
    parts = [
        tag(
            "p",
            "Trained: training finished (completed or diverged). Interrupted: stopped by a signal "
            "or by the death of its process, to be resumed by rerunning its job; never counted "
            "as trained. "
            "Divergence: training stopped on a non-finite loss (rate over trained runs). Collapse "
            "(good samples on too few modes) and not converged (too few good samples at all, "
            "2D mixtures; such a run is not counted as collapsed): as decided by the evaluation "
            "(rates over evaluated runs). Rule(s): "
            + ("; ".join(rules) if rules else "none recorded")
            + ".",
        ),
        table(
            [
                "dataset",
                "arch",
                "batch norm",
                "loss",
                "runs",
                "trained",
                "interrupted or running",
                "diverged",
                "collapsed",
                "not converged",
                "median divergence step",
            ],
            rows,
        ),
    ]

    for dataset, d in study.runs.groupby("dataset", sort=True):
        compared = d[is_compared(d, study.comparison, study.pairs)]
        logs = read_run_csvs(study, compared, store.LOG, ["step", "grad_norm_g"])
        logs = logs[np.isfinite(logs["grad_norm_g"].astype(float)) & (logs["grad_norm_g"] > 0)]
        if not logs.empty:
            png = report_figures.curves(
                logs, y="grad_norm_g", ylabel="gradient norm of G", logy=True
            )
            used = compared[compared["run_dir"].isin(logs["run_dir"].unique())]
            parts.append(tag("h3", f"{dataset}: gradient norm of G"))
            parts.append(
                figure(
                    png,
                    f"{dataset}: gradient norm of G over training (log scale), mean over seeds "
                    "and +/- 1 SD band, per compared loss",
                    used,
                )
            )
        parts.append(_fig_d_learning_rate(study, dataset, d))
    return join(parts)


def _fig_d_learning_rate(study: ReportInputs, dataset: str, d: pd.DataFrame) -> Html:
    """The effective learning rate of D over training, for runs with a schedule of it."""
    scheduled = d[d["d_lr_schedule"].notna() & (d["d_lr_schedule"] != "none")]
    logs = read_run_csvs(study, scheduled, store.LOG, ["step", "lr_d"])
    logs = logs[np.isfinite(logs["lr_d"].astype(float)) & (logs["lr_d"] > 0)]
    if logs.empty:
        return Html("")
    png = report_figures.curves(logs, y="lr_d", ylabel="learning rate of D", logy=True)
    used = scheduled[scheduled["run_dir"].isin(logs["run_dir"].unique())]
    schedules = ", ".join(sorted(used["d_lr_schedule"].unique()))
    return join(
        [
            tag("h3", f"{dataset}: learning rate of D under its schedule"),
            figure(
                png,
                f"{dataset}: D's effective learning rate (lr_d times the factor of its schedule: "
                f"{schedules}) over training (log scale), mean over seeds and +/- 1 SD band. "
                "The gap-aware schedule raises it (up to f_max) while D's moving-average loss is "
                "above the ideal loss and lowers it (down to h_min) while D is winning.",
                used,
            ),
        ]
    )


def _pct(k: float, n: int) -> str:
    return f"{100 * k / n:.0f}%" if n else "-"

"""The comparison report: one self-contained HTML file built from the results on disk.

``build_report(results, out, config)`` reads (or rebuilds) ``summary.csv`` through
:mod:`ganstudy.aggregate.summary`, the run files the figures need (``log.csv``, ``fid_curve.csv``,
``samples.png``, ``samples2d.csv``) and ``references.yaml``; it never queries MLflow. Figures are
embedded as base64 PNG and the style sheet is inline, so the page opens offline in any browser.
With ``figures`` and ``samples`` (folders) it also writes the figures that sections hand over and
every run's samples as PNG files (:mod:`ganstudy.report.exports`).

The page is a sequence of sections, registered in ``SECTIONS``; each renders HTML from a
:class:`ReportInputs` (the runs as a plain data frame plus what was read alongside them).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ganstudy import atomic, store, yamlfile
from ganstudy.aggregate import columns as summary_columns
from ganstudy.aggregate import summary as aggregate
from ganstudy.analysis.comparisons import read_pairs
from ganstudy.errors import ConfigError
from ganstudy.losses import ComparedLosses
from ganstudy.report import exports
from ganstudy.report.answer import answer_section
from ganstudy.report.compare import statistics_section
from ganstudy.report.html import Html, fmt, join, table, tag
from ganstudy.report.inputs import (
    ReportInputs,
    check_run_csvs,
    dataset_info,
    load_references,
    plain,
)
from ganstudy.report.published import published_section
from ganstudy.report.results import results_section, stability_section

QUESTION = (
    "Does the least-squares GAN (LSGAN) train more stably and give better samples than the "
    "standard GAN with the sigmoid cross-entropy loss, across architectures and batch-norm choices?"
)


def _question(study: ReportInputs) -> Html:
    return join(
        [
            tag("p", QUESTION),
            tag(
                "p",
                "Stability is read from divergence, mode collapse and the generator's gradient "
                "norm; sample quality from the FID and, where the data has countable modes, from "
                "mode coverage. Every number below is computed from the files in "
                f"{study.results} (summary.csv and the run directories), not from MLflow.",
            ),
        ]
    )


def _design(study: ReportInputs) -> Html:
    runs = study.runs
    rows = []
    for dataset, d in runs.groupby("dataset", sort=True):
        counts = d["state"].value_counts()
        rows.append(
            [
                dataset,
                ", ".join(sorted(d["arch"].unique())),
                ", ".join(sorted(d["loss_label"].unique())),
                ", ".join(sorted(d["bn"].unique())),
                ", ".join(str(int(s)) for s in sorted(d["seed"].unique())),
                len(d),
                *(counts.get(s, 0) for s in summary_columns.STATES),
            ]
        )
    grid = table(
        [
            "dataset",
            "architectures",
            "losses",
            "batch norm",
            "seeds",
            "runs",
            *summary_columns.STATES,
        ],
        rows,
    )
    incomplete = runs[runs["state"] != store.Status.COMPLETED]
    parts = [
        tag(
            "p",
            f"The grid actually run: {len(runs)} runs in the design, "
            f"{int((runs['state'] == 'completed').sum())} completed. Batch norm bn-gX-dY: "
            "batch norm in G (X) and in D (Y) switched on (1) or off (0).",
        ),
        grid,
    ]
    if incomplete.empty:
        parts.append(tag("p", "Every run of the design completed and was evaluated."))
    else:
        parts.append(
            tag(
                "h3",
                f"Runs that did not complete ({len(incomplete)}): listed, counted, never dropped",
            )
        )
        parts.append(
            table(
                ["dataset", "arch", "loss", "bn", "seed", "state", "note", "run dir"],
                [
                    [
                        r.dataset,
                        r.arch,
                        r.loss_label,
                        r.bn,
                        int(r.seed),
                        r.state,
                        r.note or "",
                        r.run_dir,
                    ]
                    for r in incomplete.itertuples()
                ],
                cls="incomplete",
            )
        )
    return join(parts)


def _data_sources(study: ReportInputs) -> Html:
    sources = study.references.get("datasets", {})
    rows = []
    for name in sorted(study.runs["dataset"].unique()):
        described, substitute = dataset_info(name)
        role = f"SUBSTITUTE for {substitute} (a different dataset)" if substitute else "as named"
        rows.append([name, described, sources.get(name, "no source on file"), role])
    return join(
        [
            tag(
                "p",
                "The datasets of the study, with their sources. A substitute dataset is "
                "named as such; its results are results on that dataset only.",
            ),
            table(["dataset", "description", "source", "role"], rows),
        ]
    )


def _environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from ganstudy import provenance

    info = dict(provenance.versions())
    for package in ("pandas", "scipy", "statsmodels", "matplotlib", "seaborn"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    info["machine"] = platform.machine()
    info["processor"] = platform.processor() or None
    info["cpu_count"] = os.cpu_count()
    info["python_executable"] = sys.executable
    return info


def _distinct_rows(runs: pd.DataFrame, columns: list[str]) -> list[list[str]]:
    """The distinct combinations of ``columns`` among ``runs``, formatted, with their run count."""
    cells = [tuple(fmt(v) for v in row) for row in runs[columns].itertuples(index=False)]
    counts: dict[tuple[str, ...], int] = {}
    for row in cells:
        counts[row] = counts.get(row, 0) + 1
    return [[*row, n] for row, n in counts.items()]


def _provenance(study: ReportInputs) -> Html:
    env = _environment()
    run_cols = [
        "ganstudy_version",
        "git_revision",
        "torch_version",
        "device",
        "numerics",
        "fid_pytorch_fid_version",
    ]
    trained = study.runs[study.runs["train_status"].notna()]
    combos = _distinct_rows(trained, run_cols)
    settings_cols = [
        "dataset",
        "arch",
        "loss_label",
        "steps",
        "epochs",
        "batch_size",
        "lr_g",
        "lr_d",
        "optimizer",
        "beta1",
        "beta2",
        "rmsprop_alpha",
        "rmsprop_momentum",
        "d_lr_schedule",
        "alpha_d",
        "alpha_g",
        "d_steps",
        "width",
        "z_dim",
        "z_dist",
    ]
    settings = _distinct_rows(study.runs[study.runs["batch_size"].notna()], settings_cols)
    if study.config_text is not None:
        config = join(
            [tag("p", f"Study config {study.config_path}:"), tag("pre", study.config_text)]
        )
    else:
        config = tag(
            "p",
            "No study config was given (--config); the run settings below come "
            "from each run's config.yaml.",
        )
    return join(
        [
            tag("h3", "Study configuration"),
            config,
            table([*settings_cols, "runs"], settings),
            tag("h3", "What produced the runs (from metrics.json and eval.json)"),
            table([*run_cols, "runs"], combos),
            tag("h3", "What produced this report"),
            table(["item", "value"], [[k, fmt(v)] for k, v in env.items()]),
            tag(
                "p",
                f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
                f"from {study.results}. Each figure lists the MLflow run ids it draws on.",
            ),
        ]
    )


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    render: Callable[..., Html]
    # True: render(study, files) also puts its figures as PNG files (name -> bytes) into files
    exports: bool = False


SECTIONS: tuple[Section, ...] = (
    Section("answer", "The answer", answer_section, exports=True),
    Section("question", "The question", _question),
    Section("design", "Study design", _design),
    Section("data", "Data sources", _data_sources),
    Section("results", "Results by dataset", results_section),
    Section("stability", "Stability", stability_section),
    Section(
        "statistics",
        "Secondary comparisons (exploratory): each candidate vs its baseline, per cell",
        statistics_section,
    ),
    Section("published", "Reproduction vs published numbers", published_section),
    Section("provenance", "Provenance", _provenance),
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
div.scroll { overflow-x: auto; max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; }
img.grid { width: 224px; image-rendering: pixelated; }
details { font-size: 0.8em; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.warning { color: #a00; font-weight: bold; } .note { color: #555; }
nav ol { columns: 2; }
"""


def render(study: ReportInputs, files: dict[str, bytes] | None = None) -> str:
    """The complete HTML page of a study; ``files``, where given, receives the figures that
    sections export as files (name -> PNG bytes)."""
    body = []
    for section in SECTIONS:
        body.append(tag("h2", section.title, id=section.key))
        exported = section.exports and files is not None
        body.append(section.render(study, files) if exported else section.render(study))
    nav = tag(
        "nav",
        tag("ol", join(tag("li", tag("a", s.title, href=f"#{s.key}")) for s in SECTIONS)),
    )
    title = "LSGAN vs GAN: study report"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        + join([tag("h1", title), nav, *body])
        + "</body></html>\n"
    )


def read_config(path: str | Path | None) -> tuple[Path | None, str | None]:
    if path is None:
        return None, None
    path = Path(path)
    text = yamlfile.read_text(path, "study config")
    data = yamlfile.parse(text, f"study config {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"study config {path}: expected a mapping at the top level")
    return path, text


def build_report(
    results: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    figures: str | Path | None = None,
    samples: str | Path | None = None,
) -> Path:
    """Render the report of ``results`` to ``out`` (written atomically) and return ``out``;
    ``figures``, ``samples``: folders to write the exported figures and every run's samples to
    (:mod:`ganstudy.report.exports`)."""
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise ConfigError(f"results directory {results} does not exist")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the HTML file to write")
    config_path, config_text = read_config(config)
    comparison = ComparedLosses.from_config(yaml.safe_load(config_text) if config_text else None)
    summary = aggregate.load_or_build(results)
    study = ReportInputs(
        results=results,
        runs=plain(summary),
        references=load_references(),
        config_path=config_path,
        config_text=config_text,
        comparison=comparison,
        pairs=read_pairs(results / store.COMPARISONS),
    )
    check_run_csvs(study)
    files: dict[str, bytes] = {}
    page = render(study, files)
    if figures is not None:
        exports.write_figures(files, figures)
    if samples is not None:
        exports.write_samples(study, samples)
    atomic.write_bytes(out, page.encode("utf-8"))
    return out

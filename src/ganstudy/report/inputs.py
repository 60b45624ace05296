"""The study as the report sees it: the summary as a plain data frame plus the run files.

Reads only files: the summary (through :mod:`ganstudy.aggregate.summary`), per-run CSVs and
``references.yaml``; never MLflow.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ganstudy import protocols, store
from ganstudy.aggregate import columns as summary_columns
from ganstudy.analysis.comparisons import Pair
from ganstudy.data.registry import DATASETS
from ganstudy.errors import ConfigError
from ganstudy.losses import ComparedLosses


def plain(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with numpy-friendly types (floats with NaN, objects with None) and the labels
    the report groups by: ``bn`` (bn-g1-d0) and ``variant`` (architecture and batch norm)."""
    out = pd.DataFrame(index=summary.index)
    for col in summary_columns.columns():
        s = summary[col.name]
        if col.kind in ("int", "float"):
            out[col.name] = s.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        else:
            out[col.name] = s.astype(object).where(s.notna(), None)
    out["bn"] = [store.bn_label(g, d) for g, d in zip(out["bn_g"], out["bn_d"])]
    out["variant"] = out["arch"] + " " + out["bn"]
    return out


@dataclass
class ReportInputs:
    results: Path
    runs: pd.DataFrame
    references: dict[str, Any]
    config_path: Path | None = None
    config_text: str | None = None
    comparison: ComparedLosses = field(default_factory=ComparedLosses.from_config)
    # The study's planned comparisons (comparisons.csv); None: pair by ``comparison``'s roles.
    pairs: list[Pair] | None = None

    def run_path(self, row: Any, name: str) -> Path:
        return self.results / row.run_dir / name


def dataset_info(name: str) -> tuple[str, str | None]:
    """(description, name of the dataset it substitutes for or None) from the dataset registry."""
    spec = DATASETS.get(name)
    if spec is None:
        return "not in this version's dataset registry", None
    return spec.description, getattr(spec, "substitute_for", None)


def load_references() -> dict[str, Any]:
    text = resources.files("ganstudy.report").joinpath("references.yaml").read_text()
    refs = yaml.safe_load(text)
    protocols.check_references(refs)
    return refs


RUN_CSVS = {
    # file -> columns the report reads from it
    store.LOG: ["step", "grad_norm_g"],
    store.FID_CURVE: ["step", "fid"],
    store.SAMPLES_2D: ["x", "y"],
}


def check_run_csvs(study: ReportInputs) -> None:
    """Check the header of every run CSV the report reads, before any figure is drawn."""
    for row in study.runs.itertuples():
        for name, columns in RUN_CSVS.items():
            path = study.run_path(row, name)
            if not path.exists():
                continue
            try:
                with path.open(newline="") as fh:
                    header = next(csv.reader(fh), [])
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"{path} is not a readable CSV file: {err}") from err
            missing = [c for c in columns if c not in header]
            if missing:
                raise ConfigError(
                    f"{path} lacks column(s) {', '.join(missing)}; expected: {', '.join(columns)}"
                )


def read_run_csvs(
    study: ReportInputs, runs: pd.DataFrame, name: str, columns: list[str]
) -> pd.DataFrame:
    """Concatenate the CSV ``name`` of each run that has one, with the run's labels attached."""
    frames = []
    for row in runs.itertuples():
        path = study.run_path(row, name)
        if not path.exists():
            continue
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not a readable CSV file: {err}") from err
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ConfigError(
                f"{path} lacks column(s) {', '.join(missing)}; expected: {', '.join(columns)}"
            )
        df = df[columns].apply(pd.to_numeric, errors="coerce")
        frames.append(
            df.assign(
                loss_label=row.loss_label,
                variant=row.variant,
                seed=row.seed,
                run_dir=row.run_dir,
                mlflow_run_id=row.mlflow_run_id,
            )
        )
    if not frames:
        return pd.DataFrame(columns=[*columns, "loss_label", "variant", "seed", "run_dir"])
    return pd.concat(frames, ignore_index=True)


def representative(runs: pd.DataFrame, metric: str | None, has_file: Callable) -> Any | None:
    """The run shown for a variant: among runs with the file, the one whose ``metric`` is the
    median (the lower middle one for an even count; equal values by lowest seed); the lowest
    seed when no run has the metric. None when no run has the file."""
    candidates = runs[[has_file(r) for r in runs.itertuples()]]
    if candidates.empty:
        return None
    if metric is not None and candidates[metric].notna().any():
        ranked = candidates[candidates[metric].notna()].sort_values([metric, "seed"])
        return next(ranked.iloc[[(len(ranked) - 1) // 2]].itertuples())
    return next(candidates.sort_values("seed").itertuples())


REPRESENTATIVE_RULE = (
    "One seed is shown per variant: the seed whose FID (without FID: modes covered) is the median "
    "of the variant's seeds, the lower middle one for an even count, the lowest seed among equal "
    "values; the lowest seed when no run of the variant has the metric."
)

"""Tidy results: one row per run of the study design, with every factor and every metric.

Reads only files on disk (``results/design.csv`` and each run directory's ``config.yaml``,
``metrics.json`` and ``eval.json``) and writes ``results/summary.csv`` atomically. Every design
row gets a row, whatever state its run is in:

* ``completed``: evaluated, training finished;
* ``diverged``: training stopped on a non-finite loss (evaluated or not);
* ``not evaluated``: training finished but there is no ``eval.json`` yet;
* ``missing``: no run directory, no ``metrics.json``, or training has not finished.

The columns are declared once in :func:`ganstudy.aggregate.columns.columns` (name, type, where the
value comes from), which is also how ``summary.csv`` is read back with the right types.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ganstudy import atomic, store
from ganstudy.aggregate.columns import RunRecord, column_names, columns
from ganstudy.csvfile import parse_bool, parse_int, read_rows
from ganstudy.errors import ConfigError

EVAL_FORMAT = store.EVAL_FORMAT
DESIGN_COLUMNS = store.DESIGN_COLUMNS
# The files whose change makes a summary stale.
RUN_FILES = (store.CONFIG, store.METRICS, store.EVAL)


# ---------------------------------------------------------------------------------------------
# reading the design and the run files


def read_design(results: Path) -> list[dict[str, Any]]:
    """The expected runs: ``design.csv`` if present, else the run dirs found under ``runs/``."""
    path = results / store.DESIGN
    if not path.exists():
        return discover_runs(results)
    rows = []
    for where, raw in read_rows(path, DESIGN_COLUMNS):
        for key in ("dataset", "arch", "loss", "run_dir"):
            if not (raw[key] or "").strip():
                raise ConfigError(f"{where}: column '{key}' is empty")
        rows.append(
            {
                "dataset": raw["dataset"].strip(),
                "arch": raw["arch"].strip(),
                "loss": raw["loss"].strip(),
                "bn_g": parse_bool(raw["bn_g"], f"{where}, column 'bn_g'"),
                "bn_d": parse_bool(raw["bn_d"], f"{where}, column 'bn_d'"),
                "seed": parse_int(raw["seed"], f"{where}, column 'seed'"),
                "run_dir": raw["run_dir"].strip(),
            }
        )
    return rows


def discover_runs(results: Path) -> list[dict[str, Any]]:
    """Design rows for the run dirs on disk (``runs/<dataset>/<arch>/<loss>/bn-gX-dY/seedS``)."""
    found, strays = store.ResultsDir(results).find_runs()
    for path in strays:
        # Not dropped silently: a stray directory is named so it can be cleaned up.
        warnings.warn(
            f"{path}: not a run directory ({store.RUN_DIR_FORM}); it is not part of the summary",
            stacklevel=2,
        )
    return [key.design_row() for key, _ in found]


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(doc).__name__}")
    return doc


def read_run(results: Path, design_row: dict[str, Any]) -> RunRecord:
    """Parse the files of one design row's run dir (absent files give None)."""
    run_dir = results / design_row["run_dir"]
    evaluation = store.read_record(run_dir / store.EVAL, missing_ok=True)
    if evaluation is not None and evaluation.get("format") != EVAL_FORMAT:
        raise ConfigError(
            f"{run_dir / store.EVAL}: key 'format' is {evaluation.get('format')!r}; "
            f"allowed: {EVAL_FORMAT!r}"
        )
    return RunRecord(
        design=design_row,
        config=_read_yaml(run_dir / store.CONFIG),
        metrics=store.read_record(run_dir / store.METRICS, missing_ok=True),
        evaluation=evaluation,
    )


def _cell(value: Any) -> Any:
    """Empty cells for what a CSV cannot tell apart from one: non-finite floats (a diverged
    loss written as NaN) and empty strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return None if value == "" else value


def _as_bool(series: pd.Series) -> pd.Series:
    # CSV round trips give "True"/"False" strings; map them back before the cast.
    def one(value: Any) -> Any:
        if value is None or isinstance(value, bool) or pd.isna(value):
            return value
        return str(value) == "True"

    return series.map(one).astype("boolean")


CASTS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "str": lambda s: s.astype("string"),
    "int": lambda s: pd.to_numeric(s).astype("Int64"),
    "float": lambda s: pd.to_numeric(s).astype("Float64"),
    "bool": _as_bool,
}


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for col in columns():
        df[col.name] = CASTS[col.kind](df[col.name].astype(object))
    return df


def not_trained(results: Path) -> set[str]:
    """Runs of the design that a sequential study will never train (the later waves of the
    blocks its looks stopped), from its latest look record; empty for a fixed design."""
    latest = store.ResultsDir(results).latest_look()
    if latest is None:
        return set()
    return set(store.read_record(latest[1]).get("not_trained") or [])


def collect(results: str | Path) -> pd.DataFrame:
    """The summary table of a results dir: one row per design row (but the runs a sequential
    study stopped before training), columns :func:`~ganstudy.aggregate.columns.column_names`."""
    results = Path(results)
    if not results.is_dir():
        raise ConfigError(f"results directory {results} does not exist")
    design = read_design(results)
    if not design:
        raise ConfigError(
            f"results directory {results} has no design.csv and no run directories under runs/"
        )
    skipped = not_trained(results)
    rows = []
    table = columns()
    for design_row in design:
        if design_row["run_dir"] in skipped:
            continue
        rec = read_run(results, design_row)
        rows.append({col.name: _cell(col.value(rec)) for col in table})
    return _typed(pd.DataFrame(rows, columns=[col.name for col in table]))


# ---------------------------------------------------------------------------------------------
# summary.csv on disk


def write_summary(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    atomic.write_bytes(path, df.to_csv(index=False).encode())
    return path


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read a summary.csv back with the column types of its columns."""
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    names = column_names()
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks column(s) {', '.join(missing)}: it was written by another version; "
            "delete it or run `ganstudy aggregate` again"
        )
    df = df[list(names)].astype(object).where(df.notna(), None)
    return _typed(df)


def newest_input_mtime(results: Path) -> float:
    """The latest modification time of design.csv and the run files the summary is built from."""
    newest = 0.0
    candidates = [results / store.DESIGN]
    for _, run in store.ResultsDir(results).find_runs()[0]:
        candidates.extend(run / name for name in RUN_FILES)
    for path in candidates:
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def is_stale(results: Path, summary: Path) -> bool:
    """True when ``summary`` is absent or older than any input it was built from."""
    if not summary.exists():
        return True
    return summary.stat().st_mtime < newest_input_mtime(results)


def load_or_build(results: str | Path, summary: str | Path | None = None) -> pd.DataFrame:
    """The summary of ``results``: read from ``summary`` if up to date, else rebuilt and written."""
    results = Path(results)
    summary = Path(summary) if summary is not None else results / store.SUMMARY
    if not results.is_dir():
        raise ConfigError(f"results directory {results} does not exist")
    if is_stale(results, summary):
        df = collect(results)
        write_summary(df, summary)
        return df
    return read_summary(summary)

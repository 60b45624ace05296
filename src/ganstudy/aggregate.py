"""Tidy results: one row per run of the study design, with every factor and every metric.

Reads only files on disk (``results/design.csv`` and each run directory's ``config.yaml``,
``metrics.json`` and ``eval.json``) and writes ``results/summary.csv`` atomically. Every design
row gets a row, whatever state its run is in:

* ``completed``: evaluated, training finished;
* ``diverged``: training stopped on a non-finite loss (evaluated or not);
* ``not evaluated``: training finished but there is no ``eval.json`` yet;
* ``missing``: no run directory, no ``metrics.json``, or training has not finished.

The columns are declared once in ``COLUMNS`` (name, type, where the value comes from), which is
also how ``summary.csv`` is read back with the right types.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ganstudy import layout
from ganstudy.errors import ConfigError
from ganstudy.losses import LOSSES

EVAL_FORMAT = layout.EVAL_FORMAT
DESIGN_COLUMNS = layout.DESIGN_COLUMNS
STATES = ("completed", "diverged", "not evaluated", "missing")
# The files whose change makes a summary stale.
RUN_FILES = (layout.CONFIG, layout.METRICS, layout.EVAL)


@dataclass
class RunRecord:
    """What is known about one design row: its factors and the parsed files of its run dir."""

    design: dict[str, Any]
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None


def _get(doc: dict | None, *path: str) -> Any:
    """doc[path[0]][path[1]]... or None where any level is absent or not a mapping."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _source(doc: str, *path: str) -> Callable[[RunRecord], Any]:
    return lambda rec: _get(getattr(rec, doc), *path)


def _first(*sources: Callable[[RunRecord], Any]) -> Callable[[RunRecord], Any]:
    """The first source that gives a value (e.g. eval.json, then metrics.json as a fallback)."""

    def pick(rec: RunRecord) -> Any:
        for src in sources:
            value = src(rec)
            if value is not None:
                return value
        return None

    return pick


def _loss_label(rec: RunRecord) -> str:
    """The loss name, with its (a, b, c) coding appended where it is not the named preset."""
    name = rec.design["loss"]
    coding = tuple(_get(rec.config, "loss", k) for k in ("a", "b", "c"))
    preset = LOSSES[name].coding if name in LOSSES else None
    if preset is None or None in coding or tuple(map(float, coding)) == preset:
        return name
    return f"{name}({coding[0]:g},{coding[1]:g},{coding[2]:g})"


def _diverged(rec: RunRecord) -> bool | None:
    from_eval = _get(rec.evaluation, "stability", "diverged")
    if from_eval is not None:
        return bool(from_eval)
    status = _get(rec.metrics, "status")
    return None if status is None else status == "diverged"


def _fid_settings_json(rec: RunRecord) -> str | None:
    settings = _get(rec.evaluation, "fid", "settings")
    return None if settings is None else json.dumps(settings, sort_keys=True)


def _diverged_step(rec: RunRecord) -> Any:
    step = _get(rec.evaluation, "stability", "diverged_step")
    return step if step is not None else _get(rec.metrics, "diverged_step")


def _state_and_note(rec: RunRecord) -> tuple[str, str]:
    if rec.metrics is None:
        if rec.config is None:
            return "missing", "no run directory (or no config.yaml / metrics.json in it)"
        return "missing", "training has not written metrics.json"
    status = rec.metrics.get("status")
    if rec.evaluation is not None:
        state = rec.evaluation.get("status") or status
        notes = {"completed": "", "diverged": f"diverged at step {_diverged_step(rec)}"}
        return state, notes.get(state, f"evaluation status {state!r}")
    if status == "diverged":
        return "diverged", f"diverged at step {_diverged_step(rec)}; not evaluated"
    if status == "completed":
        return "not evaluated", "training completed; no eval.json"
    done, planned = rec.metrics.get("steps"), rec.metrics.get("steps_planned")
    return "missing", f"training not finished (status {status!r}, {done} of {planned} steps)"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str", "int", "float", "bool"
    value: Callable[[RunRecord], Any]
    description: str


def _design(key: str) -> Callable[[RunRecord], Any]:
    return lambda rec: rec.design[key]


def _config_source(*path: str) -> Callable[[RunRecord], Any]:
    return _source("config", *path)


def _eval(*path: str) -> Callable[[RunRecord], Any]:
    return _source("evaluation", *path)


def _metrics(*path: str) -> Callable[[RunRecord], Any]:
    return _source("metrics", *path)


COLUMNS: tuple[Column, ...] = (
    # factors of the design
    Column("dataset", "str", _design("dataset"), "dataset name"),
    Column("arch", "str", _design("arch"), "architecture name"),
    Column("loss", "str", _design("loss"), "loss name"),
    Column("loss_label", "str", _loss_label, "loss name, with (a,b,c) where not its preset"),
    Column("loss_a", "float", _config_source("loss", "a"), "LSGAN target of D on fakes"),
    Column("loss_b", "float", _config_source("loss", "b"), "LSGAN target of D on reals"),
    Column("loss_c", "float", _config_source("loss", "c"), "LSGAN value G wants D to output"),
    Column("gp_lambda", "float", _config_source("loss", "gp_lambda"), "gradient-penalty weight"),
    Column("bn_g", "bool", _design("bn_g"), "batch norm in G"),
    Column("bn_d", "bool", _design("bn_d"), "batch norm in D"),
    Column("seed", "int", _design("seed"), "run seed"),
    Column("run_dir", "str", _design("run_dir"), "run directory, relative to the results dir"),
    # training settings
    Column("width", "int", _config_source("arch", "width"), "network width"),
    Column("z_dim", "int", _config_source("arch", "z_dim"), "latent dimension"),
    Column("z_dist", "str", _config_source("arch", "z_dist"), "latent distribution"),
    Column("steps", "int", _config_source("train", "steps"), "configured steps (or empty)"),
    Column("epochs", "float", _config_source("train", "epochs"), "configured epochs (or empty)"),
    Column("batch_size", "int", _config_source("train", "batch_size"), "batch size"),
    Column("lr_g", "float", _config_source("train", "lr_g"), "Adam learning rate of G"),
    Column("lr_d", "float", _config_source("train", "lr_d"), "Adam learning rate of D"),
    Column("beta1", "float", _config_source("train", "beta1"), "Adam beta1"),
    Column("beta2", "float", _config_source("train", "beta2"), "Adam beta2"),
    Column("d_steps", "int", _config_source("train", "d_steps"), "D steps per G step"),
    # state of the run
    Column("state", "str", lambda rec: _state_and_note(rec)[0], "; ".join(STATES)),
    Column("note", "str", lambda rec: _state_and_note(rec)[1], "why a run is not complete"),
    Column("evaluated", "bool", lambda rec: rec.evaluation is not None, "eval.json present"),
    Column("train_status", "str", _metrics("status"), "status in metrics.json"),
    Column("steps_done", "int", _metrics("steps"), "steps trained"),
    Column("steps_planned", "int", _metrics("steps_planned"), "steps planned"),
    Column("wall_time_s", "float", _metrics("wall_time_s"), "training wall time (s)"),
    Column("device", "str", _metrics("device"), "training device"),
    Column(
        "mlflow_run_id",
        "str",
        _first(_metrics("mlflow_run_id"), _eval("mlflow_run_id")),
        "MLflow run id",
    ),
    Column("mlflow_experiment_id", "str", _metrics("mlflow_experiment_id"), "MLflow experiment"),
    Column("ganstudy_version", "str", _metrics("versions", "ganstudy"), "package version"),
    Column("git_revision", "str", _metrics("versions", "git_revision"), "git revision"),
    Column("torch_version", "str", _metrics("versions", "torch"), "torch version"),
    # FID with its settings
    Column("fid", "float", _eval("fid", "value"), "final FID"),
    Column("fid_flag", "str", _eval("fid", "flag"), "why the FID is absent or doubtful"),
    Column("fid_protocol", "str", _eval("fid", "settings", "protocol"), "named FID protocol"),
    Column(
        "fid_pytorch_fid_version",
        "str",
        _eval("fid", "settings", "pytorch_fid_version"),
        "pytorch-fid version",
    ),
    Column("fid_dims", "int", _eval("fid", "settings", "dims"), "Inception feature dims"),
    Column("fid_n_generated", "int", _eval("fid", "settings", "n_generated"), "generated images"),
    Column("fid_n_reference", "int", _eval("fid", "settings", "n_reference"), "reference images"),
    Column(
        "fid_reference_split", "str", _eval("fid", "settings", "reference_split"), "reference split"
    ),
    Column("fid_resize", "str", _eval("fid", "settings", "resize"), "how images were resized"),
    Column("fid_input", "str", _eval("fid", "settings", "input"), "how images enter Inception"),
    Column("fid_weights", "str", _eval("fid", "settings", "weights"), "Inception weights"),
    Column(
        "fid_settings",
        "str",
        _fid_settings_json,
        "every FID setting as sorted JSON: FIDs are comparable only where this is equal",
    ),
    # mode coverage
    Column("modes_kind", "str", _eval("modes", "kind"), "stacked_mnist, mixture2d or classes"),
    Column("modes_n_samples", "int", _eval("modes", "n_samples"), "samples classified"),
    Column("modes_total", "int", _eval("modes", "modes_total"), "modes of the data"),
    Column("modes_covered", "int", _eval("modes", "modes_covered"), "modes covered"),
    Column("kl_to_uniform", "float", _eval("modes", "kl_to_uniform"), "KL(mode histogram || U)"),
    Column(
        "high_quality_fraction",
        "float",
        _eval("modes", "high_quality_fraction"),
        "fraction of high-quality samples (2D)",
    ),
    Column("success", "bool", _eval("modes", "success"), "2D success (see modes_rule)"),
    Column("failure", "bool", _eval("modes", "failure"), "2D failure (see modes_rule)"),
    Column("modes_rule", "str", _eval("modes", "rule"), "definition of the mode metrics"),
    Column(
        "classifier_test_accuracy",
        "float",
        _eval("modes", "classifier", "test_accuracy"),
        "accuracy of the mode classifier",
    ),
    # stability
    Column("diverged", "bool", _diverged, "training diverged"),
    Column(
        "diverged_step",
        "int",
        _diverged_step,
        "step of divergence",
    ),
    Column("collapsed", "bool", _eval("stability", "collapsed"), "mode collapse detected"),
    Column("collapse_rule", "str", _eval("stability", "collapse_rule"), "definition of collapse"),
    Column("best_fid", "float", _eval("stability", "best_fid"), "best FID over training"),
    Column("best_fid_step", "int", _eval("stability", "best_fid_step"), "step of the best FID"),
    Column("final_fid", "float", _eval("stability", "final_fid"), "FID at the end of training"),
    *(
        Column(
            f"grad_norm_g_{stat}",
            "float",
            _first(_eval("stability", "grad_norm_g", stat), _metrics("grad_norm_g", stat)),
            f"{stat} gradient norm of G",
        )
        for stat in ("mean", "median", "max", "final")
    ),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


# ---------------------------------------------------------------------------------------------
# reading the design and the run files


def _parse_bool(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    allowed = {"0": False, "1": True, "false": False, "true": True}
    if text not in allowed:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: 0, 1, true, false")
    return allowed[text]


def _parse_int(value: Any, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an integer") from None


def read_design(results: Path) -> list[dict[str, Any]]:
    """The expected runs: ``design.csv`` if present, else the run dirs found under ``runs/``."""
    path = results / layout.DESIGN
    if not path.exists():
        return discover_runs(results)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in DESIGN_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"required columns: {', '.join(DESIGN_COLUMNS)}"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            where = f"{path} line {line}"
            for key in ("dataset", "arch", "loss", "run_dir"):
                if not (raw[key] or "").strip():
                    raise ConfigError(f"{where}: column '{key}' is empty")
            rows.append(
                {
                    "dataset": raw["dataset"].strip(),
                    "arch": raw["arch"].strip(),
                    "loss": raw["loss"].strip(),
                    "bn_g": _parse_bool(raw["bn_g"], f"{where}, column 'bn_g'"),
                    "bn_d": _parse_bool(raw["bn_d"], f"{where}, column 'bn_d'"),
                    "seed": _parse_int(raw["seed"], f"{where}, column 'seed'"),
                    "run_dir": raw["run_dir"].strip(),
                }
            )
    return rows


def discover_runs(results: Path) -> list[dict[str, Any]]:
    """Design rows for the run dirs on disk (``runs/<dataset>/<arch>/<loss>/bn-gX-dY/seedS``)."""
    rows = []
    runs = results / layout.RUNS
    if not runs.is_dir():
        return rows
    for path in sorted(runs.glob("*/*/*/*/*")):
        if not path.is_dir():
            continue
        rel = path.relative_to(results).as_posix()
        try:
            key = layout.RunKey.parse(rel)
        except ValueError as err:
            # Not dropped silently: a stray directory is named so it can be cleaned up.
            warnings.warn(f"{path}: {err}; it is not part of the summary", stacklevel=2)
            continue
        rows.append(key.design_row())
    return rows


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


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
    evaluation = _read_json(run_dir / layout.EVAL)
    if evaluation is not None and evaluation.get("format") != EVAL_FORMAT:
        raise ConfigError(
            f"{run_dir / 'eval.json'}: key 'format' is {evaluation.get('format')!r}; "
            f"allowed: {EVAL_FORMAT!r}"
        )
    return RunRecord(
        design=design_row,
        config=_read_yaml(run_dir / layout.CONFIG),
        metrics=_read_json(run_dir / layout.METRICS),
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
    for col in COLUMNS:
        df[col.name] = CASTS[col.kind](df[col.name].astype(object))
    return df


def collect(results: str | Path) -> pd.DataFrame:
    """The summary table of a results dir: one row per design row, columns ``COLUMN_NAMES``."""
    results = Path(results)
    if not results.is_dir():
        raise ConfigError(f"results directory {results} does not exist")
    design = read_design(results)
    if not design:
        raise ConfigError(
            f"results directory {results} has no design.csv and no run directories under runs/"
        )
    rows = []
    for design_row in design:
        rec = read_run(results, design_row)
        rows.append({col.name: _cell(col.value(rec)) for col in COLUMNS})
    return _typed(pd.DataFrame(rows, columns=list(COLUMN_NAMES)))


# ---------------------------------------------------------------------------------------------
# summary.csv on disk


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_summary(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, df.to_csv(index=False).encode())
    return path


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read a summary.csv back with the column types of ``COLUMNS``."""
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    missing = [c for c in COLUMN_NAMES if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks column(s) {', '.join(missing)}: it was written by another version; "
            "delete it or run `ganstudy aggregate` again"
        )
    df = df[list(COLUMN_NAMES)].astype(object).where(df.notna(), None)
    return _typed(df)


def newest_input_mtime(results: Path) -> float:
    """The latest modification time of design.csv and the run files the summary is built from."""
    newest = 0.0
    candidates = [results / layout.DESIGN]
    runs = results / layout.RUNS
    if runs.is_dir():
        for name in RUN_FILES:
            candidates.extend(runs.glob(f"*/*/*/*/*/{name}"))
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
    summary = Path(summary) if summary is not None else results / layout.SUMMARY
    if not results.is_dir():
        raise ConfigError(f"results directory {results} does not exist")
    if is_stale(results, summary):
        df = collect(results)
        write_summary(df, summary)
        return df
    return read_summary(summary)


# ---------------------------------------------------------------------------------------------
# command line

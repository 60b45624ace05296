"""The columns of summary.csv: one :class:`Column` per column, with its type, where its value
comes from in a run's files (design row, config.yaml, metrics.json, eval.json) and what it means.

A run is in one of ``STATES``: ``completed`` (evaluated, training finished), ``diverged``
(training stopped on a non-finite loss, evaluated or not), ``not evaluated`` (training finished
but there is no eval.json yet), ``missing`` (no run directory, no metrics.json, or training has
not finished and its process cannot be checked), ``interrupted`` (stopped by a signal with a
checkpoint, or left "running" by a process on this host that no longer exists: rerun its
training job to resume) or ``running`` (its process is alive on this host).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganstudy import store
from ganstudy.losses import LOSSES
from ganstudy.metrics import registry as metric_registry
from ganstudy.metrics.mode_kinds import MODE_KINDS
from ganstudy.metrics.registry import Metric, in_block

STATES = store.STATES


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


def _loss_name(rec: RunRecord) -> str:
    """The loss of the run's config; without one, the arm (a plain loss names itself)."""
    return _get(rec.config, "loss", "name") or rec.design["loss"]


def _loss_label(rec: RunRecord) -> str:
    """The arm; for a plain loss (the arm is the loss name), with its (a, b, c) coding appended
    where it is not the named preset."""
    name = rec.design["loss"]
    if name != _loss_name(rec):
        return name
    coding = tuple(_get(rec.config, "loss", k) for k in ("a", "b", "c"))
    preset = LOSSES[name].coding if name in LOSSES else None
    if preset is None or None in coding or tuple(map(float, coding)) == preset:
        return name
    return f"{name}({coding[0]:g},{coding[1]:g},{coding[2]:g})"


def _numerics_label(record: dict | None) -> str | None:
    """e.g. "deterministic, TF32 off, compile none, fused optimizer" (None for runs that predate
    the record; the optimizer's implementation is left out for runs that predate its record)."""
    if not record:
        return None
    parts = [
        "deterministic" if record.get("deterministic") else "nondeterministic",
        f"TF32 {'on' if record.get('tf32') else 'off'}",
        f"compile {record.get('compile', 'none')}",
    ]
    if record.get("optimizer_implementation"):
        parts.append(f"{record['optimizer_implementation']} optimizer")
    return ", ".join(parts)


def _fid_settings_json(rec: RunRecord) -> str | None:
    settings = _get(rec.evaluation, "fid", "settings")
    return None if settings is None else json.dumps(settings, sort_keys=True)


def _diverged_step(rec: RunRecord) -> Any:
    step = _get(rec.evaluation, "stability", "diverged_step")
    return step if step is not None else _get(rec.metrics, "diverged_step")


def _state_and_note(rec: RunRecord) -> tuple[str, str]:
    if rec.metrics is None:
        if rec.config is None:
            return store.MISSING, "no run directory (or no config.yaml / metrics.json in it)"
        return store.MISSING, "training has not written metrics.json"
    status = rec.metrics.get("status")
    if rec.evaluation is not None:
        state = rec.evaluation.get("status") or status
        notes = {
            store.Status.COMPLETED: "",
            store.Status.DIVERGED: f"diverged at step {_diverged_step(rec)}",
        }
        return state, notes.get(state, f"evaluation status {state!r}")
    if status == store.Status.DIVERGED:
        return store.Status.DIVERGED.value, f"diverged at step {_diverged_step(rec)}; not evaluated"
    if status == store.Status.COMPLETED:
        return store.NOT_EVALUATED, "training completed; no eval.json"
    done, planned = rec.metrics.get("steps"), rec.metrics.get("steps_planned")
    if status == store.Status.INTERRUPTED:
        signal = rec.metrics.get("signal") or "a signal"
        return store.Status.INTERRUPTED.value, (
            f"stopped by {signal} at step {done} of {planned} with a checkpoint; rerun its "
            "training job to resume"
        )
    if status == store.Status.RUNNING:
        alive = process_alive(rec.metrics.get("host"), rec.metrics.get("pid"))
        if alive is False:
            return store.Status.INTERRUPTED.value, (
                f"left 'running' at step {done} of {planned} by a process that no longer exists "
                f"(pid {rec.metrics.get('pid')} on {rec.metrics.get('host')}); rerun its "
                "training job to resume from its last checkpoint"
            )
        if alive:
            return (
                store.Status.RUNNING.value,
                f"training (pid {rec.metrics.get('pid')}), {done} of {planned} steps",
            )
    return store.MISSING, f"training not finished (status {status!r}, {done} of {planned} steps)"


def process_alive(host: str | None, pid: int | None) -> bool | None:
    """Whether the process ``pid`` of ``host`` is alive: None where it cannot be told (another
    host, or no pid recorded)."""
    if not host or not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


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


_RUN: tuple[Column, ...] = (
    # factors of the design
    Column("dataset", "str", _design("dataset"), "dataset name"),
    Column("arch", "str", _design("arch"), "architecture name"),
    Column(
        "arm",
        "str",
        _design("loss"),
        "arm: the loss name, or the study's name of a loss "
        "trained with settings of its own (the loss segment of run_dir)",
    ),
    Column("loss", "str", _loss_name, "loss name"),
    Column(
        "loss_label", "str", _loss_label, "the arm; a plain loss with (a,b,c) where not its preset"
    ),
    Column("loss_a", "float", _config_source("loss", "a"), "LSGAN target of D on fakes"),
    Column("loss_b", "float", _config_source("loss", "b"), "LSGAN target of D on reals"),
    Column("loss_c", "float", _config_source("loss", "c"), "LSGAN value G wants D to output"),
    Column("gp_lambda", "float", _config_source("loss", "gp_lambda"), "gradient-penalty weight"),
    Column("alpha_d", "float", _config_source("loss", "alpha_d"), "alpha of D's alpha-loss"),
    Column("alpha_g", "float", _config_source("loss", "alpha_g"), "alpha of G's alpha-loss"),
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
    Column("lr_g", "float", _config_source("train", "lr_g"), "learning rate of G"),
    Column("lr_d", "float", _config_source("train", "lr_d"), "(base) learning rate of D"),
    Column(
        "optimizer",
        "str",
        _first(_config_source("train", "optimizer"), lambda rec: "adam" if rec.config else None),
        "optimizer of G and D",
    ),
    Column("beta1", "float", _config_source("train", "beta1"), "Adam beta1"),
    Column("beta2", "float", _config_source("train", "beta2"), "Adam beta2"),
    *(
        Column(key, "float", _config_source("train", key), f"RMSProp {key.split('_')[1]}")
        for key in ("rmsprop_alpha", "rmsprop_eps", "rmsprop_momentum")
    ),
    Column(
        "d_lr_schedule",
        "str",
        _first(
            _config_source("train", "d_lr_schedule"), lambda rec: "none" if rec.config else None
        ),
        "learning-rate schedule of D",
    ),
    *(
        Column(key, "float", _config_source("train", key), f"gap-aware schedule: {key[4:]}")
        for key in ("gap_ema", "gap_h_min", "gap_f_max", "gap_x_min", "gap_x_max")
    ),
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
    Column(
        "numerics",
        "str",
        lambda rec: _numerics_label((rec.metrics or {}).get("numerics")),
        "deterministic algorithms, TF32 and compile mode of training",
    ),
)
# FID settings (the value itself is a metric of the registry)
_FID_SETTINGS: tuple[Column, ...] = (
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
)
_MODES_KIND: tuple[Column, ...] = (
    Column(
        "modes_kind",
        "str",
        _eval("modes", "kind"),
        f"the mode metric: {', '.join(list(MODE_KINDS)[:-1])} or {list(MODE_KINDS)[-1]}",
    ),
    Column("modes_n_samples", "int", _eval("modes", "n_samples"), "samples classified"),
)
_MODES_SETTINGS: tuple[Column, ...] = (
    Column("modes_rule", "str", _eval("modes", "rule"), "definition of the mode metrics"),
    Column(
        "classifier_test_accuracy",
        "float",
        _eval("modes", "classifier", "test_accuracy"),
        "accuracy of the mode classifier",
    ),
    Column(
        "classifier_below_target",
        "bool",
        _eval("modes", "classifier", "below_target"),
        "the mode classifier missed its target accuracy: its metrics are flagged",
    ),
)
_STABILITY: tuple[Column, ...] = (
    Column(
        "diverged_step",
        "int",
        _diverged_step,
        "step of divergence",
    ),
    Column(
        "not_converged",
        "bool",
        _eval("stability", "not_converged"),
        "too few high-quality samples (2D mixtures)",
    ),
    Column("collapse_rule", "str", _eval("stability", "collapse_rule"), "definition of collapse"),
    Column("best_fid_step", "int", _eval("stability", "best_fid_step"), "step of the best FID"),
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


def _metric_column(metric: Metric) -> Column:
    value = _eval(*metric.path)
    if metric.from_training is not None:
        read = metric.from_training
        value = _first(value, lambda rec: None if rec.metrics is None else read(rec.metrics))
    return Column(metric.name, metric.dtype, value, metric.description)


def columns() -> tuple[Column, ...]:
    """Every column of summary.csv: the run's factors and files, then each eval.json block's
    metrics (from :data:`ganstudy.metrics.registry.METRICS`, read now, so an added entry is a
    column) beside that block's settings."""
    blocks = {"fid", "modes", "stability"}
    metric_columns = {b: tuple(_metric_column(m) for m in in_block(b)) for b in blocks}
    others = tuple(_metric_column(m) for m in metric_registry.metrics() if m.path[0] not in blocks)
    return (
        *_RUN,
        *metric_columns["fid"],
        *_FID_SETTINGS,
        *_MODES_KIND,
        *metric_columns["modes"],
        *_MODES_SETTINGS,
        *metric_columns["stability"],
        *_STABILITY,
        *others,
    )


def column_names() -> tuple[str, ...]:
    return tuple(c.name for c in columns())

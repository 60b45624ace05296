"""The files of a run directory that training writes, beside its checkpoints.

``config.yaml`` (the resolved run config; a different config in an existing run directory is an
error), ``log.csv`` (one row every ``train.log_every`` steps, cut back to the resumed step on a
restart), ``metrics.json`` (status and summary; see :func:`summary_of_log`), ``fid_curve.csv``
(training-time FID) and the start of the run's MLflow tracking (its tags and records:
:mod:`ganstudy.tracking.records`). File names come from :mod:`ganstudy.store`.
"""

from __future__ import annotations

import csv
import math
import os
import socket
import time
from pathlib import Path
from typing import IO

import numpy as np

from ganstudy import atomic, provenance, store, yamlfile
from ganstudy.errors import ConfigError
from ganstudy.store import LOG_FIELDS, LOGGED_METRICS
from ganstudy.tracking import backend, records, runs

# The values the trainer reports for a logged step (lr_d: D's effective learning rate, the
# schedule's factor included).
STEP_STATS = LOG_FIELDS[1:8]
FID_CURVE_FIELDS = ["step", "fid", "n_samples", "dims"]


def config_diff(stored: dict, wanted: dict) -> list[str]:
    """Keys whose values differ between two configs (tracking settings and what a run keeps
    on disk, ``config.STORAGE_KEYS``, may change). A key the stored config lacks is no
    difference where the wanted value is its default: the run was started by a version without
    that key, whose behaviour the default keeps."""
    from ganstudy.config import RunConfig, without_storage_keys

    a = records.flatten({k: v for k, v in without_storage_keys(stored).items() if k != "tracking"})
    b = records.flatten({k: v for k, v in without_storage_keys(wanted).items() if k != "tracking"})
    defaults = records.flatten(RunConfig().to_dict())
    return sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k) and not (k not in a and k in defaults and b[k] == defaults[k])
    )


def check_same_run(run_dir: Path, config: dict) -> None:
    """A run directory may only be continued with the config it was started with."""
    stored = run_dir / store.CONFIG
    if stored.is_file():
        diff = config_diff(yamlfile.load_mapping(stored, "run config"), config)
        if diff:
            raise ConfigError(
                f"{run_dir} already holds a run with a different config (keys: "
                f"{', '.join(diff)}); use another output directory"
            )


def _keep_rows_until(path: Path, fields: list[str], resumed_step: int) -> None:
    """Rewrite a run CSV (atomically) with its header and only the rows up to
    ``resumed_step``: the steps after the last checkpoint are trained again."""
    rows = []
    if path.is_file():
        with path.open() as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resumed_step]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# The run files that grow during training. A checkpoint carries their text up to its step, so
# that a resumed run keeps its history even where the files were removed (the workflow declares
# them as the training job's outputs, which Snakemake removes when the job fails).
GROWING_FILES = (store.LOG, store.FID_CURVE)


def read_growing_files(run_dir: Path) -> dict[str, str]:
    """The text of each growing run file that exists, by name (for a checkpoint)."""
    return {
        name: (run_dir / name).read_text() for name in GROWING_FILES if (run_dir / name).is_file()
    }


def restore_growing_files(run_dir: Path, saved: dict[str, str]) -> None:
    """Write back the growing run files a checkpoint carried, where they are missing."""
    for name, text in saved.items():
        if name in GROWING_FILES and not (run_dir / name).exists():
            atomic.write_text(run_dir / name, text)


def open_log(run_dir: Path, resumed_step: int) -> tuple[IO[str], csv.DictWriter]:
    """``log.csv`` opened for appending, holding only the rows up to ``resumed_step``."""
    path = run_dir / store.LOG
    _keep_rows_until(path, LOG_FIELDS, resumed_step)
    handle = path.open("a", newline="")
    return handle, csv.DictWriter(handle, LOG_FIELDS)


def start_fid_curve(run_dir: Path, resumed_step: int) -> None:
    """``fid_curve.csv`` with its header from the start (the workflow declares it whether or
    not a point was taken), holding only the rows up to ``resumed_step``."""
    _keep_rows_until(run_dir / store.FID_CURVE, FID_CURVE_FIELDS, resumed_step)


def write_log_row(writer, handle, tracker, step: int, stats: list[float], rate: float, wall):
    """One row of log.csv (``stats``: the values of STEP_STATS; ``time`` the unix time of the
    row), flushed, and its finite values as MLflow metrics stamped with that same time, so that
    ``ganstudy track sync`` rebuilds the same history from the file."""
    row = dict(zip(STEP_STATS, stats))
    now = round(time.time(), 3)
    row.update(step=step, member_images_per_s=round(rate, 2), wall_s=wall, time=now)
    writer.writerow(row)
    handle.flush()
    if tracker is not None:
        metrics = {key: row[key] for key in LOGGED_METRICS}
        tracker.log_metrics(
            step, {m: v for m, v in metrics.items() if math.isfinite(v)}, timestamp=now
        )


def summary_of_log(path: Path) -> dict:
    """Gradient-norm summary of G and the last logged values, from a run's log.csv."""
    if not path.is_file():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    norms = np.array([float(r["grad_norm_g"]) for r in rows])
    finite = norms[np.isfinite(norms)]
    summary = None
    if len(finite):
        summary = {
            "mean": float(finite.mean()),
            "median": float(np.median(finite)),
            "max": float(finite.max()),
            "final": float(norms[-1]),
        }
    last = {k: float(rows[-1][k]) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
    return {"grad_norm_g": summary, "last": last}


def append_fid(run_dir: Path, step: int, value: float, n_samples: int, dims: int) -> None:
    """One row of ``fid_curve.csv`` (created with its header)."""
    path = run_dir / store.FID_CURVE
    if not path.exists():
        start_fid_curve(run_dir, step)
    with path.open("a") as handle:
        handle.write(f"{step},{value},{n_samples},{dims}\n")


def metrics_record(
    run_dir: Path,
    *,
    status: str,
    steps: int,
    steps_planned: int,
    diverged_step: int | None,
    wall_time_s: float,
    seed: int,
    member_index: int,
    ensemble_seeds: list[int],
    device,
    mlflow_run_id: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    experiment_id: str | None,
    versions: dict,
    tracking_failure: str | None = None,
    **extra,
) -> dict:
    """The content of a member's ``metrics.json``, with the summary of its log.csv. ``host`` and
    ``pid`` name the training process, so that a run left "running" by a process that died can
    be told from one still training (see :mod:`ganstudy.aggregate.columns`)."""
    data = {
        "status": status,
        "steps": steps,
        "steps_planned": steps_planned,
        "diverged_step": diverged_step,
        "wall_time_s": wall_time_s,
        "seed": seed,
        "member_index": member_index,
        "ensemble_size": len(ensemble_seeds),
        "ensemble_seeds": ensemble_seeds,
        "device": str(device),
        "device_name": provenance.device_name(device),
        "mlflow_run_id": mlflow_run_id,
        "mlflow_tracking_uri": tracking_uri,
        "mlflow_experiment": experiment,
        "mlflow_experiment_id": experiment_id,
        "versions": versions,
        # Whether MLflow mirrors this run: "ok", "off", or "failed" with the reason.
        "tracking": {
            "status": "failed" if tracking_failure else ("ok" if tracking_uri else "off"),
            "error": tracking_failure,
        },
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **extra,
    }
    data.update(summary_of_log(run_dir / store.LOG))
    return data


def _previous_mlflow_run(run_dir: Path, resumed: dict) -> dict:
    """The MLflow identity a run had: from its metrics.json, else from the resumed checkpoint."""
    data = store.read_record(run_dir / store.METRICS, missing_ok=True)
    if data is not None:
        return {
            "run_id": data.get("mlflow_run_id"),
            "tracking_uri": data.get("mlflow_tracking_uri"),
        }
    return resumed


def open_tracking(cfg, flush_seconds: float) -> runs.TrackingJob | None:
    """The tracking job of a run config, its store opening in the background from now on (None
    when tracking is off): called before the networks and data are built, so that MLflow's
    import and the store's start overlap them and each MLflow run opens as training starts."""
    if not cfg.tracking.enabled:
        return None
    backend.bound_http_waits()
    uri = backend.resolve_uri(cfg.tracking.uri)
    label = store.RunKey.of_config(cfg).name
    return runs.TrackingJob(uri, cfg.tracking.experiment, label, flush_seconds)


def start_tracking(
    job: runs.TrackingJob | None, member_cfgs, run_dirs, resumed, device, versions
) -> runs.TrackingJob | None:
    """Queue the start (or continuation) of one MLflow run per member in ``job`` (from
    :func:`open_tracking`). A member continues its earlier MLflow run where that run lives in the
    same store."""
    if job is None:
        return None
    seeds = ",".join(str(c.seed) for c in member_cfgs)
    for member_cfg, run_dir, resumed_ids in zip(member_cfgs, run_dirs, resumed):
        stored = _previous_mlflow_run(run_dir, resumed_ids)
        previous = stored.get("run_id") if stored.get("tracking_uri") == job.uri else None
        name = member_cfg.tracking.run_name or store.RunKey.of_config(member_cfg).name
        tags = records.run_tags(member_cfg, run_dir, len(member_cfgs), device, versions)
        tags["ensemble_job"] = store.job_label(
            store.RunKey.of_config(member_cfg).variant.path, seeds
        )
        job.member(name).start(
            previous,
            name,
            member_cfg.to_dict(),
            tags,
            dataset=records.dataset_record(member_cfg),
            system_metrics=member_cfg.tracking.system_metrics,
        )
    return job

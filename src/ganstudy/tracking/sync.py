"""``ganstudy track sync``: MLflow filled in from the run directories, which are the record.

For every run directory of a results directory (or the ones given), the MLflow run that mirrors
it is found by its ``run_dir`` tag (the directory's absolute path), or created, and completed
from the files: the params (the resolved config.yaml), the tags (factors, status, versions), the
full metric history of log.csv with its original steps and times (and fid_curve.csv's training
FIDs), eval.json's numbers, the status, and the run's files as artifacts. Only what the store
lacks is added, so a second sync adds nothing; a run logged live is only topped up. It serves a
run whose tracking failed (an unreachable server), one trained with tracking off, and a study
moved to another store.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ganstudy import config as config_mod
from ganstudy import store
from ganstudy.errors import ConfigError
from ganstudy.store import LOGGED_METRICS
from ganstudy.tracking import backend
from ganstudy.tracking.records import (
    ARTIFACT_DIGESTS_TAG,
    artifact_digests,
    eval_metrics,
    flatten,
    run_tags,
    upload_artifacts,
)

TERMINAL = {
    store.Status.COMPLETED: "FINISHED",
    store.Status.DIVERGED: "FINISHED",
    store.Status.INTERRUPTED: "KILLED",
}


@dataclass
class Synced:
    run_dir: Path
    run_id: str
    created: bool
    params: int
    metric_points: int
    artifacts: list[str]  # the artifacts uploaded (new or changed)


def run_dirs(results: Path) -> list[Path]:
    """The run directories under ``results/runs`` (those holding a config.yaml)."""
    return find(results)[0]


def find(results: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(run directories, skipped): the run directories under ``results/runs`` holding a
    config.yaml, and every other directory there with the reason it is not synced."""
    runs = results / store.RUNS
    if not runs.is_dir():
        raise ConfigError(f"--results {results}: no {store.RUNS}/ directory of run directories")
    found, strays = store.ResultsDir(results).find_runs()
    paths = [run.path for _, run in found if run.config.is_file()]
    skipped = [(run.path, f"no {store.CONFIG}") for _, run in found if not run.config.is_file()]
    skipped += [(path, f"not of the form {store.RUN_DIR_FORM}") for path in strays]
    return paths, sorted(skipped)


def _history(run_dir: Path) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) of every finite logged value, from log.csv and
    fid_curve.csv. Rows without a time (older runs) are dated back from the file's mtime by
    their wall-clock offset."""
    points = []
    log = run_dir / store.LOG
    if log.is_file():
        with log.open() as handle:
            rows = list(csv.DictReader(handle))
        end_time = log.stat().st_mtime
        end_wall = float(rows[-1]["wall_s"]) if rows else 0.0
        for row in rows:
            when = row.get("time") or ""
            stamp = float(when) if when else end_time - (end_wall - float(row["wall_s"]))
            for key in LOGGED_METRICS:
                # A column a run of an older version did not log is skipped.
                value = float(row.get(key) or "nan")
                if math.isfinite(value):
                    points.append((key, value, int(stamp * 1000), int(row["step"])))
    curve = run_dir / store.FID_CURVE
    if curve.is_file():
        stamp = int(curve.stat().st_mtime * 1000)
        with curve.open() as handle:
            for row in csv.DictReader(handle):
                value = float(row["fid"])
                if math.isfinite(value):
                    points.append(("fid_train", value, stamp, int(row["step"])))
    return points


def _find_run(client, experiment_id: str, run_dir: Path):
    path = str(run_dir.resolve()).replace("'", "\\'")
    found = client.search_runs([experiment_id], filter_string=f"tags.run_dir = '{path}'")
    return found[0] if found else None


def sync_run(client, run_dir: Path, experiment: str | None = None) -> Synced:
    """Make the store of ``client`` mirror ``run_dir``; returns what was added."""
    from mlflow.entities import Metric, Param

    config = yaml.safe_load((run_dir / store.CONFIG).read_text())
    metrics = store.read_record(run_dir / store.METRICS, missing_ok=True) or {}
    evaluation = store.read_record(run_dir / store.EVAL, missing_ok=True)
    cfg = config_mod.from_dict(config)
    name = experiment or cfg.tracking.experiment
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)

    run = _find_run(client, experiment_id, run_dir)
    tags = run_tags(
        cfg,
        run_dir,
        metrics.get("ensemble_size", 1),
        metrics.get("device", ""),
        metrics.get("versions") or {},
    )
    tags["status"] = metrics.get("status", "unknown")
    tags["synced_from_files"] = "true"
    created = run is None
    if created:
        run = client.create_run(experiment_id, run_name=store.RunKey.of_config(cfg).name, tags=tags)
    run_id = run.info.run_id
    stored = client.get_run(run_id)

    params = [
        Param(k, str(v)[:6000]) for k, v in flatten(config).items() if k not in stored.data.params
    ]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    changed = [_tag(k, v) for k, v in tags.items() if stored.data.tags.get(k) != str(v)]
    if changed:
        client.log_batch(run_id, tags=changed)

    points = _history(run_dir)
    new = []
    for key in sorted({p[0] for p in points}):
        have = {m.step for m in client.get_metric_history(run_id, key)}
        new += [Metric(k, v, t, s) for k, v, t, s in points if k == key and s not in have]
    if evaluation is not None:
        # A run evaluated again gains the new numbers as the metrics' latest values.
        stamp = int((run_dir / store.EVAL).stat().st_mtime * 1000)
        new += [
            Metric(k, v, stamp, 0)
            for k, v in eval_metrics(evaluation).items()
            if stored.data.metrics.get(k) != v
        ]
    for start in range(0, len(new), 1000):
        client.log_batch(run_id, metrics=new[start : start + 1000])

    # Each artifact whose content differs from what the store was last given (by its digest):
    # a run synced while training, then finished, evaluated or resumed, is brought level.
    digests = artifact_digests(run_dir)
    uploaded = json.loads(stored.data.tags.get(ARTIFACT_DIGESTS_TAG) or "{}")
    outdated = [n for n, digest in digests.items() if uploaded.get(n) != digest]
    if outdated:
        upload_artifacts(client, run_id, run_dir, outdated)
    status = TERMINAL.get(metrics.get("status"))
    if status and stored.info.status != status:
        client.set_terminated(run_id, status=status)
    return Synced(run_dir, run_id, created, len(params), len(new), outdated)


def _tag(key: str, value):
    from mlflow.entities import RunTag

    return RunTag(key, str(value))


def sync(paths: list[Path], uri: str | None = None, experiment: str | None = None) -> list[Synced]:
    """Sync every run directory of ``paths`` into the store at ``uri`` (default: as training).
    A server that refuses or never answers fails within training's bounds (about 20 s)."""
    backend.bound_http_waits()
    client = backend.client(backend.resolve_uri(uri))
    return [sync_run(client, path, experiment) for path in paths]

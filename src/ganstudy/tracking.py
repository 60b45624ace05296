"""MLflow tracking: one MLflow run per training run, mirroring the files of its run directory.

The store is ``tracking.uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else an SQLite
file ``mlflow.db`` in the working directory (MLflow's own default). A fresh SQLite store is
created under an exclusive file lock, so that many training processes started at once do not
race in MLflow's schema migration; writes that meet a locked database are retried.

Metrics are buffered and sent with ``log_batch`` at most every ``flush_seconds``, so tracking
costs a bounded share of training time whatever the step rate.

Tracking is best effort: the run directory is the record and MLflow mirrors it. A store that
cannot be reached (at the start or later) never stops or stalls training: the
:class:`RunTracker` prints one warning, records why, and ignores MLflow for the rest of the run;
HTTP requests to a server give up after a bounded wait (:data:`HTTP_LIMITS`, unless the user set
MLflow's variables). ``ganstudy track sync`` copies the run directories into a store afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's defaults retry an unreachable server 7 times with exponential backoff and wait up to
# 120 s per request (minutes in all); training waits about 10 s at most before going on alone.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def bound_http_waits() -> None:
    """Apply :data:`HTTP_LIMITS` where the user has not set MLflow's own variables."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def describe_error(err: BaseException) -> str:
    """One line for an MLflow error (its first line, without MLflow's long retry trail)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def resolve_uri(configured: str | None = None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock next to an SQLite store (a no-op for servers and databases)."""
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _retry(call, *args, attempts: int = 30, transient=("locked",), **kwargs):
    """Call an MLflow client method, retrying while another process holds the SQLite lock (or
    another ``transient`` error, lower-case fragments of its message)."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - MLflow wraps SQLAlchemy errors in its own
            message = str(err).lower()
            if not any(t in message for t in transient) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# MLflow's UI opens an experiment with this tag on its runs table (model training), not on its
# GenAI views (traces, sessions).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def init_store(uri: str, experiment: str) -> str:
    """Create the store (if new) and the experiment (if missing), marked as a model-development
    experiment; return the experiment id."""
    from mlflow import MlflowClient

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return client.create_experiment(experiment, tags=dict([EXPERIMENT_KIND]))
        if found.tags.get(EXPERIMENT_KIND[0]) is None:
            client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        return found.experiment_id


def client(uri: str):
    from mlflow import MlflowClient

    with store_lock(uri):
        return MlflowClient(tracking_uri=uri)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def warn_failure(label: str, uri: str, failure: str) -> None:
    """The one warning a run prints when its tracking fails."""
    print(
        f"[{label}] warning: MLflow tracking at {uri} failed ({failure}); training goes on "
        "without it and its files are complete; `ganstudy track sync` copies them into MLflow "
        "later",
        file=sys.stderr,
        flush=True,
    )


class RunTracker:
    """The MLflow run of one training run (one ensemble member), best effort.

    The first failing call (an unreachable server, a locked or broken store) sets
    :attr:`failure`, prints one warning naming the run and the error, and turns every later
    call into a no-op: training goes on, its files are written as always.
    """

    def __init__(
        self, uri: str, experiment_id: str, flush_seconds: float = 30.0, label: str = "run"
    ):
        self.uri, self.experiment_id, self.label = uri, experiment_id, label
        self.flush_seconds = flush_seconds
        self.run_id: str | None = None
        self.failure: str | None = None
        self._buffer: list = []
        self._last_flush = time.monotonic()
        self._monitor = None
        self.client = self._guard("connecting", lambda: client(uri))

    def _guard(self, what: str, call):
        if self.failure is not None:
            return None
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - any MLflow failure means the same: go on alone
            self.failure = f"{what}: {describe_error(err)}"
            warn_failure(self.label, self.uri, self.failure)
            return None

    def start(
        self,
        run_id: str | None,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        dataset: dict[str, Any] | None = None,
        system_metrics: bool = False,
    ) -> str:
        """Open a new run (with its training ``dataset`` as an MLflow dataset input: name,
        digest, source_type, source, profile), or reopen ``run_id`` when a run is resumed; with
        ``system_metrics``, MLflow samples CPU, memory (and GPU) use every 10 s until
        :meth:`finish`. Returns the run id, None if MLflow failed."""
        started = self._guard(
            "starting the run", lambda: self._start(run_id, run_name, params, tags, dataset)
        )
        if started and system_metrics:
            self._guard("starting system metrics", self._start_monitor)
        return started

    def _start(self, run_id, run_name, params, tags, dataset) -> str:
        from mlflow.entities import Dataset, DatasetInput, InputTag, Param

        if run_id is not None:
            _retry(self.client.update_run, run_id, status="RUNNING")
            self.run_id = run_id
            self.set_tags(tags)
            return run_id
        run = _retry(self.client.create_run, self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            _retry(self.client.log_batch, self.run_id, params=items[start : start + 100])
        if dataset is not None:
            record = Dataset(
                name=dataset["name"],
                digest=dataset["digest"],
                source_type=dataset["source_type"],
                source=dataset["source"],
                profile=json.dumps(dataset.get("profile") or {}),
            )
            context = InputTag("mlflow.data.context", "training")
            # Runs started at once race to insert the experiment's dataset row: the loser sees
            # a unique-constraint error and finds the row there when it tries again.
            _retry(
                self.client.log_inputs,
                self.run_id,
                [DatasetInput(record, [context])],
                transient=("locked", "unique constraint failed: datasets"),
            )
        return self.run_id

    def _start_monitor(self) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # MLflow's own variable sets the interval (10 s by default).
        interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or 10)
        self._monitor = SystemMetricsMonitor(
            self.run_id, sampling_interval=interval, tracking_uri=self.uri
        )
        self._monitor.start()

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if self.failure is not None:
            return
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._guard("setting tags", lambda: _retry(self.client.log_batch, self.run_id, tags=items))

    def log_metrics(
        self,
        step: int,
        metrics: dict[str, float],
        force_flush: bool = False,
        timestamp: float | None = None,
    ) -> None:
        """Buffer metrics of ``step`` (``timestamp``: unix seconds, default now)."""
        from mlflow.entities import Metric

        if self.failure is not None:
            return
        ms = int((time.time() if timestamp is None else timestamp) * 1000)
        self._buffer.extend(
            Metric(k, float(v), ms, step) for k, v in metrics.items() if v is not None
        )
        if force_flush or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        def send():
            while self._buffer:
                chunk = self._buffer[:1000]
                _retry(self.client.log_batch, self.run_id, metrics=chunk)
                del self._buffer[: len(chunk)]

        self._guard("logging metrics", send)
        self._last_flush = time.monotonic()

    def log_artifacts(self, paths: list[Path]) -> None:
        def send():
            for path in paths:
                if path.is_dir():
                    _retry(self.client.log_artifacts, self.run_id, str(path), path.name)
                elif path.is_file():
                    _retry(self.client.log_artifact, self.run_id, str(path))

        self._guard("logging artifacts", send)

    def finish(self, status: str) -> None:
        """Flush and close the run. ``status``: FINISHED, FAILED or KILLED."""
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            self._guard("stopping system metrics", monitor.finish)
        self.flush()
        self._guard(
            "closing the run",
            lambda: _retry(self.client.set_terminated, self.run_id, status=status),
        )


def eval_metrics(result: dict) -> dict[str, float]:
    """The numbers of eval.json as flat MLflow metric names (``eval.<block>.<key>``)."""
    out: dict[str, float] = {}
    blocks = {
        "fid": {"value": (result["fid"] or {}).get("value")},
        "modes": {
            k: (result["modes"] or {}).get(k)
            for k in ("modes_covered", "modes_total", "kl_to_uniform", "high_quality_fraction")
        },
        "stability": {
            "diverged": result["stability"]["diverged"],
            "collapsed": result["stability"]["collapsed"],
            "best_fid": result["stability"]["best_fid"],
            "final_fid": result["stability"]["final_fid"],
        },
    }
    for block, values in blocks.items():
        for key, value in values.items():
            if value is not None and math.isfinite(float(value)):
                out[f"eval.{block}.{key}"] = float(value)
    return out


def log_metrics_to_run(uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Add metrics (e.g. from evaluation) to an existing run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
    c = client(uri)
    for start in range(0, len(items), 1000):
        _retry(c.log_batch, run_id, metrics=items[start : start + 1000])

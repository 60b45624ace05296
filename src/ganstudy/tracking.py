"""MLflow tracking: one MLflow run per training run, mirroring the files of its run directory.

The store is ``tracking.uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else an SQLite
file ``mlflow.db`` in the working directory (MLflow's own default). A fresh SQLite store is
created under an exclusive file lock, so that many training processes started at once do not
race in MLflow's schema migration; writes that meet a locked database are retried.

Every MLflow call of a training job is made by one background thread (:class:`Worker`), in
order: the loop only queues them, so opening the store, starting the runs and sending metrics
overlap with training. Metrics are buffered and sent with ``log_batch`` at most every
``flush_seconds``; the end of a run waits (bounded) for what is still queued.

Tracking is best effort: the run directory is the record and MLflow mirrors it. A store that
cannot be reached (at the start or later) never stops or stalls training: the
:class:`TrackingJob` prints one warning, records why, and ignores MLflow for the rest of the job;
HTTP requests to a server give up after a bounded wait (:data:`HTTP_LIMITS`, unless the user set
MLflow's variables). ``ganstudy track sync`` copies the run directories into a store afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import queue
import re
import sys
import threading
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
    """One line for an MLflow error (its first line, without MLflow's long retry trail; a failed
    HTTP request as its address and the cause: ConnectionRefusedError, ReadTimeoutError...)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    request = re.search(r"API request to (\S+) failed.*Caused by (\w+)", text)
    if request:
        cause = request[2]
        if cause == "NewConnectionError":
            cause = "connection refused or no route" if "refused" in text.lower() else cause
        text = f"API request to {request[1]} failed: {cause}"
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


# MLflow 3's UI keeps one global switch between its GenAI views and its model-training views (the
# runs table), read from the page address or else remembered by the browser, GenAI by default;
# from 3.1x on it ignores the experiment kind tag. Links carry the switch.
UI_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"


def ui_url(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The address of an experiment's runs table (or one run's page) in the MLflow UI: the
    server itself for an HTTP store, else where ``mlflow ui`` serves by default."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    page = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base}/{page}?{UI_VIEW}"


def ui_hint(uri: str, experiment_id: str) -> str:
    """How to look at an experiment: its runs table's address, and for a store that is not a
    server the command that serves the UI there."""
    link = ui_url(uri, experiment_id)
    if uri.startswith(("http://", "https://")):
        return f"MLflow UI: {link}"
    return f"MLflow UI: run `mlflow ui --backend-store-uri {uri} --port 5000`, then open {link}"


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


# How long the end of a run waits for MLflow calls still queued (an unreachable server gives up
# on each request within about 20 s under HTTP_LIMITS, after which the rest are skipped).
CLOSE_LIMIT_S = 120.0


class Worker:
    """One background thread making a training job's MLflow calls in the order they were
    submitted, so that the training loop never waits on the store: starting a run, sending the
    buffered metrics and closing it overlap with training, and an unreachable server costs the
    loop nothing."""

    def __init__(self, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, call) -> None:
        self._queue.put(call)

    def _serve(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                call()
            except Exception as err:  # noqa: BLE001 - calls are guarded; never let the thread die
                print(f"warning: MLflow worker: {describe_error(err)}", file=sys.stderr)

    def wait(self, timeout: float) -> bool:
        """Wait until everything submitted so far is done; False after ``timeout`` seconds."""
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        finished = self.wait(timeout)
        self._queue.put(None)
        return finished


class TrackingJob:
    """The MLflow side of one training job: the store and experiment, and one
    :class:`RunTracker` per member, served by one :class:`Worker` (or called in place with
    ``asynchronous=False``).

    Best effort: the first failing call (an unreachable server, a locked or broken store) sets
    :attr:`failure`, prints one warning naming the job and the error, and turns every later
    call of every member into a no-op; training goes on and its files are written as always.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        label: str = "run",
        flush_seconds: float = 30.0,
        asynchronous: bool = True,
    ):
        self.uri, self.label, self.flush_seconds = uri, label, flush_seconds
        self.experiment_id: str | None = None
        self.failure: str | None = None
        self.failed_at: float | None = None  # unix time of the failure
        self.client = None
        self.trackers: list[RunTracker] = []
        self._worker = Worker(f"mlflow-{label}") if asynchronous else None
        self.submit("opening the store", lambda: self._open(experiment))

    def _open(self, experiment: str) -> None:
        self.experiment_id = init_store(self.uri, experiment)
        self.client = client(self.uri)

    def submit(self, what: str, call, after_failure: bool = False) -> None:
        """Run ``call`` (in the worker) unless tracking has failed (or anyway, with
        ``after_failure``: stopping a monitor thread); the first failure is recorded."""

        def guarded():
            if self.failure is not None and not after_failure:
                return
            try:
                call()
            except Exception as err:  # noqa: BLE001 - any MLflow failure means the same: go on
                if self.failure is None:
                    self.failure = f"{what}: {describe_error(err)}"
                    self.failed_at = time.time()
                    warn_failure(self.label, self.uri, self.failure)

        if self._worker is None:
            guarded()
        else:
            self._worker.submit(guarded)

    def member(self, label: str | None = None) -> RunTracker:
        tracker = RunTracker(self, label or self.label)
        self.trackers.append(tracker)
        return tracker

    def wait(self, timeout: float = CLOSE_LIMIT_S) -> bool:
        """Wait for the calls submitted so far (bounded); True when they are all done."""
        return True if self._worker is None else self._worker.wait(timeout)

    def close(self, timeout: float = CLOSE_LIMIT_S) -> bool:
        """Wait for the last calls (bounded) and stop the worker. Past ``timeout`` the calls
        still queued are dropped, recorded as the failure (with a warning)."""
        if self._worker is None:
            return True
        worker, self._worker = self._worker, None
        finished = worker.close(timeout)
        if not finished and self.failure is None:
            self.failure = f"MLflow calls still unfinished after {timeout:.0f} s; dropped"
            warn_failure(self.label, self.uri, self.failure)
        return finished


class RunTracker:
    """The MLflow run of one training run (one ensemble member) within its :class:`TrackingJob`.

    Every method only queues its MLflow calls; :attr:`run_id` is known once the queued start
    has run (at once for a resumed run, which reopens its earlier MLflow run)."""

    def __init__(self, job: TrackingJob, label: str):
        self.job, self.label = job, label
        self.run_id: str | None = None
        self._buffer: list = []
        self._last_flush = time.monotonic()
        self._monitor = None

    @property
    def failure(self) -> str | None:
        return self.job.failure

    def start(
        self,
        run_id: str | None,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        dataset: dict[str, Any] | None = None,
        system_metrics: bool = False,
    ) -> None:
        """Open a new run (with its training ``dataset`` as an MLflow dataset input: name,
        digest, source_type, source, profile), or reopen ``run_id`` when a run is resumed; with
        ``system_metrics``, MLflow samples CPU, memory (and GPU) use every 10 s until
        :meth:`finish`."""
        if run_id is not None:
            self.run_id = run_id
        self.job.submit(
            "starting the run", lambda: self._start(run_id, run_name, params, tags, dataset)
        )
        if system_metrics:
            self.job.submit("starting system metrics", self._start_monitor)

    def _start(self, run_id, run_name, params, tags, dataset) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag, Param, RunTag

        client = self.job.client
        if run_id is not None:
            _retry(client.update_run, run_id, status="RUNNING")
            items = [RunTag(k, str(v)) for k, v in tags.items()]
            _retry(client.log_batch, run_id, tags=items)
            return
        run = _retry(client.create_run, self.job.experiment_id, run_name=run_name, tags=tags)
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            _retry(client.log_batch, run.info.run_id, params=items[start : start + 100])
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
                client.log_inputs,
                run.info.run_id,
                [DatasetInput(record, [context])],
                transient=("locked", "unique constraint failed: datasets"),
            )
        self.run_id = run.info.run_id

    def _start_monitor(self) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # MLflow's own variable sets the interval (10 s by default).
        interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or 10)
        self._monitor = SystemMetricsMonitor(
            self.run_id, sampling_interval=interval, tracking_uri=self.job.uri
        )
        self._monitor.start()

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.job.submit(
            "setting tags", lambda: _retry(self.job.client.log_batch, self.run_id, tags=items)
        )

    def log_metrics(
        self,
        step: int,
        metrics: dict[str, float],
        force_flush: bool = False,
        timestamp: float | None = None,
    ) -> None:
        """Buffer metrics of ``step`` (``timestamp``: unix seconds, default now); the buffer is
        sent every ``flush_seconds`` of the job."""
        from mlflow.entities import Metric

        if self.failure is not None:
            return
        ms = int((time.time() if timestamp is None else timestamp) * 1000)
        self._buffer.extend(
            Metric(k, float(v), ms, step) for k, v in metrics.items() if v is not None
        )
        if force_flush or time.monotonic() - self._last_flush >= self.job.flush_seconds:
            self.flush()

    def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if not batch:
            return

        def send():
            for start in range(0, len(batch), 1000):
                _retry(self.job.client.log_batch, self.run_id, metrics=batch[start : start + 1000])

        self.job.submit("logging metrics", send)

    def log_artifacts(self, paths: list[Path]) -> None:
        def send():
            for path in paths:
                if path.is_dir():
                    _retry(self.job.client.log_artifacts, self.run_id, str(path), path.name)
                elif path.is_file():
                    _retry(self.job.client.log_artifact, self.run_id, str(path))

        self.job.submit("logging artifacts", send)

    def finish(self, status: str) -> None:
        """Flush and close the run. ``status``: FINISHED, FAILED or KILLED."""

        def stop_monitor():
            if self._monitor is not None:
                monitor, self._monitor = self._monitor, None
                monitor.finish()

        self.job.submit("stopping system metrics", stop_monitor, after_failure=True)
        self.flush()
        self.job.submit(
            "closing the run",
            lambda: _retry(self.job.client.set_terminated, self.run_id, status=status),
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

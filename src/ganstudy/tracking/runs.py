"""The live MLflow runs of a training job: one :class:`TrackingJob` per job, one
:class:`RunTracker` per member, every call made in order by one background :class:`Worker`."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ganstudy.tracking.backend import client, describe_error, init_store, retry, warn_failure
from ganstudy.tracking.records import ARTIFACTS, flatten, upload_artifacts

SYSTEM_PREFIX = "system/"
CPU_METRIC = SYSTEM_PREFIX + "cpu_utilization_percentage"
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

    def stop(self) -> None:
        """End the thread once its current call returns; what is queued is dropped."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)


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

    def abandon(self) -> None:
        """Stop the worker after the call it is making, dropping the rest (nothing to record:
        a job that found its runs already finished)."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.stop()

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
            retry(client.update_run, run_id, status="RUNNING")
            items = [RunTag(k, str(v)) for k, v in tags.items()]
            retry(client.log_batch, run_id, tags=items)
            return
        run = retry(client.create_run, self.job.experiment_id, run_name=run_name, tags=tags)
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            retry(client.log_batch, run.info.run_id, params=items[start : start + 100])
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
            retry(
                client.log_inputs,
                run.info.run_id,
                [DatasetInput(record, [context])],
                transient=("locked", "unique constraint failed: datasets"),
            )
        self.run_id = run.info.run_id

    def _start_monitor(self) -> None:
        # MLflow's own variable sets the interval (10 s by default).
        interval = float(os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL") or 10)
        self._monitor = SystemSampler(self, interval)
        self._monitor.start()

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.job.submit(
            "setting tags", lambda: retry(self.job.client.log_batch, self.run_id, tags=items)
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
                retry(self.job.client.log_batch, self.run_id, metrics=batch[start : start + 1000])

        self.job.submit("logging metrics", send)

    def log_run_files(self, run_dir: Path) -> None:
        """Upload the run directory's artifacts with their digests, as ``track sync`` does:
        a later sync uploads only what changed since."""
        self.job.submit(
            "logging artifacts",
            lambda: upload_artifacts(
                self.job.client, self.run_id, run_dir, list(ARTIFACTS), call=retry
            ),
        )

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
            lambda: retry(self.job.client.set_terminated, self.run_id, status=status),
        )


class SystemSampler:
    """The host's CPU, memory, disk and network use (and the GPU's, where NVML or ROCm answers),
    sampled every ``interval`` seconds by MLflow's own monitors into ``system/...`` metrics and
    sent through the job's worker like any other metric. Unlike MLflow's monitor thread, which
    stops at its first failed call (a briefly locked SQLite store when several runs start at
    once), a failed send is retried and sampling goes on; and a last sample is taken as the run
    ends, so that a run shorter than the interval still has one. A resumed run's samples go on
    from its last step."""

    def __init__(self, tracker: RunTracker, interval: float):
        self.tracker, self.interval = tracker, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step: int | None = None
        self._source = None

    def start(self) -> None:
        """Called in the job's worker, once the run is open."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        job = self.tracker.job
        # Its choice of monitors (and its node id); its own thread is never started.
        self._source = SystemMetricsMonitor(self.tracker.run_id, tracking_uri=job.uri)
        history = retry(job.client.get_metric_history, self.tracker.run_id, CPU_METRIC)
        self._step = max((m.step for m in history), default=-1) + 1
        self._source.collect_metrics()  # the CPU's first reading opens its interval
        self._thread = threading.Thread(target=self._serve, name="system-metrics", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.wait(self.interval):
            _, metrics = self._sample()
            self.tracker.job.submit("logging system metrics", lambda m=metrics: self._send(m))

    def _sample(self) -> tuple[int, list]:
        from mlflow.entities import Metric

        source = self._source
        source.collect_metrics()
        values = source.aggregate_metrics()
        for monitor in source.monitors:
            monitor.clear_metrics()
        prefix = SYSTEM_PREFIX + (f"{source.node_id}/" if source.node_id else "")
        step, self._step = self._step, self._step + 1
        now = int(time.time() * 1000)
        return step, [Metric(prefix + k, float(v), now, step) for k, v in values.items()]

    def _send(self, metrics: list) -> None:
        retry(self.tracker.job.client.log_batch, self.tracker.run_id, metrics=metrics)

    def finish(self) -> None:
        """Stop sampling and send a last sample (called in the job's worker, after the
        samples already queued)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.tracker.job.failure is None:
                self._send(self._sample()[1])  # a failure here is the job's, as any call's


def log_metrics_to_run(uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Add metrics (e.g. from evaluation) to an existing run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
    c = client(uri)
    for start in range(0, len(items), 1000):
        retry(c.log_batch, run_id, metrics=items[start : start + 1000])

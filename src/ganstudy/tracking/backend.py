"""The MLflow store: its URI, the lock that guards a fresh SQLite store, retries of writes that
meet a locked database, bounded HTTP waits, the experiment, and the one warning a failed
tracking prints."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


def _initialised(path: Path) -> bool:
    """Whether the SQLite store at ``path`` has its tables (MLflow records its schema version
    in ``alembic_version`` once they are created)."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.Error:
        return False


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock next to an SQLite store while it is new (a no-op for servers, databases
    and an SQLite store whose tables exist): two processes creating the tables at once fail,
    while opening a made store only reads it, and queueing every job's open behind one lock
    delayed the MLflow runs of jobs started together by tens of seconds."""
    path = _sqlite_path(uri)
    if path is None or _initialised(path):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if _initialised(path):  # made by the process this one waited for
            fcntl.flock(handle, fcntl.LOCK_UN)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry(call, *args, attempts: int = 30, transient=("locked",), **kwargs):
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


def warn_failure(label: str, uri: str, failure: str) -> None:
    """The one warning a run prints when its tracking fails."""
    print(
        f"[{label}] warning: MLflow tracking at {uri} failed ({failure}); training goes on "
        "without it and its files are complete; `ganstudy track sync` copies them into MLflow "
        "later",
        file=sys.stderr,
        flush=True,
    )

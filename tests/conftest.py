from __future__ import annotations

import os
from pathlib import Path

import pytest

# Small models on a shared 2-core machine: one thread per process is faster and deterministic.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from ganstudy.allocator import keep_freed_memory  # noqa: E402

# The tests train in this process too: the same heap settings as a `ganstudy` process.
keep_freed_memory()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"no shared data mirror at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Keep every test's MLflow store and outputs inside its own temporary directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield


def env_without_tracking_uri() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core this process may use (measured on 2 cores: a third
    worker filled the long tests' waits but cost as much again in contention)."""
    return len(os.sched_getaffinity(0))


SLOW_DEFAULT_S = 30  # a slow test whose marker gives no duration


def expected_seconds(item: pytest.Item) -> float:
    """The duration a ``slow(seconds=N)`` marker states (2 cores, no other load); 0 if unmarked."""
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", SLOW_DEFAULT_S)) if marker else 0.0


def pytest_collection_modifyitems(config, items):
    """The longest tests first, so that pytest-xdist's workers, which take the next test as
    they finish one, end together instead of one worker starting a four-minute test last (a
    stable sort: the other tests keep their order). Tests marked ``gpu`` are skipped, saying
    why, where no CUDA device is visible."""
    items.sort(key=expected_seconds, reverse=True)
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu_tests:
        item.add_marker(skip)

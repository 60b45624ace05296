"""Tracking is best effort: an unreachable store never costs a run, and `ganstudy track sync`
rebuilds MLflow from the run directories, idempotently."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import env_without_tracking_uri
from helpers import free_port, ring_config, train_command
from mlflow import MlflowClient

from ganstudy import checkpoint as ckpt
from ganstudy import cli, config, store
from ganstudy.store import LOGGED_METRICS
from ganstudy.tracking import sync as track_sync
from ganstudy.train.trainer import train


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float, int]]]:
    return {
        key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))
        for key in LOGGED_METRICS
    }


def test_sync_rebuilds_a_live_logged_run_exactly_and_a_second_sync_adds_nothing(tmp_path, capsys):
    live_uri, synced_uri = f"sqlite:///{tmp_path}/live.db", f"sqlite:///{tmp_path}/synced.db"
    data = ring_config(steps=100, log_every=25, checkpoint_every=50).to_dict()
    data["tracking"] = {**data["tracking"], "enabled": True, "uri": live_uri, "experiment": "x"}
    run = tmp_path / "run"
    (metrics,) = train(config.from_dict(data), [0], [run], progress=False)
    assert metrics["tracking"] == {"status": "ok", "error": None}
    live, synced = MlflowClient(live_uri), MlflowClient(synced_uri)
    live_run = live.get_run(metrics["mlflow_run_id"])

    assert cli.main(["track", "sync", "--run", str(run), "--uri", synced_uri]) == 0
    assert "1 created" in capsys.readouterr().out
    (copy,) = synced.search_runs([synced.get_experiment_by_name("x").experiment_id])
    assert copy.data.params == live_run.data.params
    for tag in ("dataset", "arch", "loss", "bn", "seed", "status", "run_dir", "version.torch"):
        assert copy.data.tags[tag] == live_run.data.tags[tag], tag
    assert copy.info.status == "FINISHED"
    history = _history(synced, copy.info.run_id)
    assert history == _history(live, live_run.info.run_id)
    assert [step for step, _, _ in history["loss_d"]] == [25, 50, 75, 100]
    assert {a.path for a in synced.list_artifacts(copy.info.run_id)} >= {"config.yaml", "log.csv"}

    for uri in (synced_uri, live_uri):  # again, and into the store that logged it live
        assert cli.main(["track", "sync", "--run", str(run), "--uri", uri]) == 0
        out = capsys.readouterr().out
        assert "0 created" in out and "0 metric points, 0 params and 0 artifacts added" in out
    assert len(synced.search_runs([synced.get_experiment_by_name("x").experiment_id])) == 1
    assert _history(synced, copy.info.run_id) == history


def test_an_unreachable_server_costs_no_run_and_sync_backfills_it(tmp_path):
    config_path = tmp_path / "run.yaml"
    cfg = ring_config(steps=100, log_every=25, checkpoint_every=50).to_dict()
    cfg["tracking"] = {**cfg["tracking"], "enabled": True, "uri": "http://127.0.0.1:9"}
    config_path.write_text(json.dumps(cfg))
    results = tmp_path / "results"
    run = results / store.RunKey("ring8", "mlp2d", "lsgan", True, True, 0).run_dir
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy", "train", "--config", str(config_path),
         "--out", str(run), "--quiet"],
        capture_output=True, text=True, timeout=300,
        env=env_without_tracking_uri() | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: MLflow tracking at http://127.0.0.1:9 failed" in result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((run / store.METRICS).read_text())
    assert metrics["status"] == "completed" and metrics["tracking"]["status"] == "failed"
    assert "127.0.0.1" in metrics["tracking"]["error"]
    assert (run / store.FINAL).is_file() and (run / store.LOG).is_file()

    uri = f"sqlite:///{tmp_path}/backfill.db"
    (synced,) = track_sync.sync(track_sync.run_dirs(results), uri)
    assert synced.created and synced.metric_points == 4 * len(LOGGED_METRICS)
    client = MlflowClient(uri)
    assert client.get_run(synced.run_id).data.tags["loss"] == "lsgan"
    (again,) = track_sync.sync(track_sync.run_dirs(results), uri)
    assert not again.created and again.metric_points == 0 and again.run_id == synced.run_id


def _artifact(client: MlflowClient, run_id: str, name: str, tmp_path) -> str:
    folder = tmp_path / f"download-{len(list(tmp_path.glob('download-*')))}"
    folder.mkdir()
    return Path(client.download_artifacts(run_id, name, str(folder))).read_text()


@pytest.mark.slow(seconds=25)
def test_sync_follows_a_run_through_a_crash_its_resumption_and_evaluation(tmp_path):
    """Synced while training, killed, resumed to the end, evaluated: each sync brings the
    store level with the files, and a sync of unchanged files uploads nothing."""
    uri = f"sqlite:///{tmp_path}/store.db"
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(ring_config(steps=200, log_every=25, checkpoint_every=50).to_yaml())
    run = tmp_path / "run"
    env = env_without_tracking_uri() | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(train_command(cfg_path, run), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ckpt.available_steps(run):
        time.sleep(0.01)
    proc.send_signal(signal.SIGSTOP)
    (first,) = track_sync.sync([run], uri)
    client = MlflowClient(uri)
    assert json.loads(_artifact(client, first.run_id, store.METRICS, tmp_path))["status"] == (
        "running"
    )
    partial_rows = len(_artifact(client, first.run_id, store.LOG, tmp_path).splitlines())
    proc.kill()  # a crash: the run resumes from its last checkpoint
    proc.wait()

    assert cli.main(["train", "--config", str(cfg_path), "--out", str(run), "--quiet"]) == 0
    (resumed,) = track_sync.sync([run], uri)
    assert resumed.run_id == first.run_id and not resumed.created
    assert {store.METRICS, store.LOG} <= set(resumed.artifacts)
    assert json.loads(_artifact(client, first.run_id, store.METRICS, tmp_path))["status"] == (
        "completed"
    )
    log = _artifact(client, first.run_id, store.LOG, tmp_path)
    assert log == (run / store.LOG).read_text() and len(log.splitlines()) > partial_rows
    assert client.get_run(first.run_id).info.status == "FINISHED"

    assert cli.main(["evaluate", "--run", str(run), "--no-mlflow"]) == 0
    (evaluated,) = track_sync.sync([run], uri)
    assert store.EVAL in evaluated.artifacts and store.LOG not in evaluated.artifacts
    eval_json = json.loads((run / store.EVAL).read_text())
    assert json.loads(_artifact(client, first.run_id, store.EVAL, tmp_path)) == eval_json
    got = client.get_run(first.run_id).data.metrics
    assert got["eval.modes.modes_covered"] == eval_json["modes"]["modes_covered"]

    (unchanged,) = track_sync.sync([run], uri)
    assert unchanged.artifacts == [] and unchanged.metric_points == 0 and unchanged.params == 0


def _synced_to(uri: str, run: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy", "track", "sync", "--run", str(run), "--uri", uri],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    return result, time.monotonic() - started


@pytest.mark.slow(seconds=15)
def test_sync_to_a_store_that_never_answers_gives_up_in_bounded_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / store.CONFIG).write_text(ring_config().to_yaml())
    with socket.socket() as silent:  # accepts connections (the backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # MLflow's own variables still set the bounds: 2 s per request (its default retries
        # would wait minutes more).
        env = env_without_tracking_uri() | {"MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
        result, seconds = _synced_to(uri, run, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and "Traceback" not in result.stderr
    assert seconds < 60
    result, seconds = _synced_to(f"http://127.0.0.1:{free_port()}", run, env)
    assert result.returncode == 2 and "cannot be reached" in result.stderr
    assert seconds < 30


def test_sync_names_the_directories_it_skips(tmp_path, capsys):
    results = tmp_path / "results"
    run = results / store.RunKey("ring8", "mlp2d", "lsgan", True, True, 0).run_dir
    run.mkdir(parents=True)
    (run / store.CONFIG).write_text(ring_config().to_yaml())
    (results / store.RUNS / "myrun").mkdir()
    uri = f"sqlite:///{tmp_path}/store.db"
    assert cli.main(["track", "sync", "--results", str(results), "--uri", uri]) == 1
    captured = capsys.readouterr()
    assert "1 runs synced" in captured.out
    assert f"skipped {results / store.RUNS / 'myrun'}: not of the form" in captured.err
    assert cli.main(["track", "sync", "--results", str(results), "--uri", uri,
                     "--allow-strays"]) == 0  # fmt: skip
    assert "myrun" in capsys.readouterr().err

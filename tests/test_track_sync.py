"""Tracking is best effort: an unreachable store never costs a run, and `ganstudy track sync`
rebuilds MLflow from the run directories, idempotently."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import env_without_tracking_uri
from helpers import ring_config
from mlflow import MlflowClient

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
        assert "0 created" in out and "0 metric points and 0 params added" in out
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

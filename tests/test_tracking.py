"""MLflow tracking: complete runs, resumed runs, and eight processes on one fresh SQLite store."""

import csv
import json
import socket
import subprocess

import pytest
from helpers import ring_config, train_command
from mlflow import MlflowClient

from ganstudy import config, store
from ganstudy.tracking.ui import ui_hint, ui_url
from ganstudy.train.trainer import Trainer, train


def tracked_config(tmp_path, steps=40, experiment="study-x"):
    data = ring_config(steps=steps, log_every=10).to_dict()
    data["tracking"] = {
        "enabled": True,
        "uri": f"sqlite:///{tmp_path}/mlflow.db",
        "experiment": experiment,
    }
    return config.from_dict(data)


def test_run_is_recorded_with_params_tags_metrics_and_artifacts(tmp_path):
    cfg = tracked_config(tmp_path)
    (metrics,) = train(cfg, [3], [tmp_path / "run"], progress=False)
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name("study-x").experiment_id
    assert run.data.params["loss.name"] == "lsgan" and run.data.params["train.steps"] == "40"
    tags = run.data.tags
    assert (tags["dataset"], tags["arch"], tags["loss"], tags["seed"], tags["status"]) == (
        "ring8",
        "mlp2d",
        "lsgan",
        "3",
        "completed",
    )
    assert tags["bn"] == "g1-d1" and tags["version.torch"]
    history = client.get_metric_history(run.info.run_id, "loss_d")
    assert [m.step for m in history] == [10, 20, 30, 40]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "log.csv", "samples"} <= names


def test_resumed_run_continues_the_same_mlflow_run(tmp_path):
    short = tracked_config(tmp_path, steps=40)
    (first,) = train(short, [0], [tmp_path / "run"], progress=False)
    # Same run, longer: drop final.pt so the directory is resumed rather than reported done.
    (tmp_path / "run" / "final.pt").unlink()
    # ...and metrics.json too, as a workflow rerun does: the checkpoint carries the MLflow run id.
    (tmp_path / "run" / "metrics.json").unlink()
    (second,) = train(short, [0], [tmp_path / "run"], progress=False)
    assert second["mlflow_run_id"] == first["mlflow_run_id"]


@pytest.mark.slow(seconds=42)
def test_eight_processes_on_a_fresh_sqlite_store_all_record_complete_runs(tmp_path):
    cfg = tracked_config(tmp_path, steps=30, experiment="concurrent")
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(cfg.to_yaml())
    assert not (tmp_path / "mlflow.db").exists()
    procs = [
        subprocess.Popen(
            train_command(cfg_path, tmp_path / f"seed{s}", "--set", f"seed={s}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for s in range(8)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 8
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(8))
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["status"] == "completed"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_g")] == [
            10,
            20,
            30,
        ]
        seed = run.data.tags["seed"]
        saved = json.loads((tmp_path / f"seed{seed}" / "metrics.json").read_text())
        assert saved["mlflow_run_id"] == run.info.run_id
        # Every run has system metrics, though it trains for less than the 10 s interval: a
        # last sample is taken as it ends.
        samples = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        assert len(samples) >= 1, seed


def test_the_ui_sees_a_model_experiment_with_dataset_system_metrics_and_groups(
    tmp_path, monkeypatch
):
    import hashlib

    from mlflow import MlflowClient

    from ganstudy.data.registry import DATASETS

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path}/ui.db"
    data = ring_config(steps=300, log_every=50).to_dict()
    data["tracking"] = {**data["tracking"], "enabled": True, "uri": uri, "experiment": "ui"}
    cfg = config.from_dict(data)
    members = train(cfg, [0, 1], [tmp_path / "s0", tmp_path / "s1"], progress=False)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui")
    # the model-development kind (MLflow 3.17's UI also needs the view in the link: ui_url)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for metrics in members:
        run = client.get_run(metrics["mlflow_run_id"])
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        ring = DATASETS["ring8"].mixture
        identity = json.dumps({"means": ring.means, "sigma": ring.sigma})
        assert dataset.name == "ring8"
        assert dataset.digest == hashlib.sha256(identity.encode()).hexdigest()[:16]
        assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
        assert "system/cpu_utilization_percentage" in run.data.metrics
        tags = run.data.tags
        assert tags["variant"] == "ring8/mlp2d/lsgan/bn-g1-d1"
        assert tags["ensemble_job"] == "ring8/mlp2d/lsgan/bn-g1-d1/seeds-0,1"


def test_a_server_that_never_answers_does_not_hold_up_the_training_loop(tmp_path, monkeypatch):
    # Requests time out after 3 s, three tries: MLflow gives up long after 200 steps are done.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        data = ring_config(steps=200, log_every=50).to_dict()
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        data["tracking"] = {**data["tracking"], "enabled": True, "uri": uri}
        trainer = Trainer(config.from_dict(data), [0], [tmp_path / "run"], progress=False)
        (metrics,) = trainer.run()
    assert metrics["status"] == "completed" and metrics["steps"] == 200
    assert metrics["tracking"]["status"] == "failed"
    assert "ReadTimeoutError" in metrics["tracking"]["error"]
    saved = json.loads((tmp_path / "run" / store.METRICS).read_text())
    assert saved["tracking"] == metrics["tracking"]
    with (tmp_path / "run" / store.LOG).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [50, 100, 150, 200]
    # every step was trained (and logged) while MLflow was still waiting for the server
    assert float(rows[-1]["time"]) < trainer.tracking.failed_at


def test_ui_links_open_the_runs_table():
    server = "http://mlflow.example:5000"
    assert ui_url(server + "/", "7") == (
        "http://mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert ui_url(server, "7", "abc") == (
        "http://mlflow.example:5000/#/experiments/7/runs/abc?workflowType=machine_learning"
    )
    local = ui_hint("sqlite:///mlflow.db", "1")
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000" in local
    assert "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning" in local

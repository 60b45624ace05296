"""A real `mlflow server`: stopped in the middle of a training run and started again, the run
still completes and `ganstudy track sync` gives the server its full history; the server's UI
then shows the study's runs table (headless Chromium, screenshot in test-artifacts/). The server
lets in only the credentials its script wrote to the private mlflow.env."""

from __future__ import annotations

import base64
import csv
import json
import shlex
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from browser import DevTools, evaluate, find_browser, screenshot
from conftest import env_without_tracking_uri
from helpers import free_port, ring_config, train_command

from ganstudy import cli, store
from ganstudy.store import LOGGED_METRICS
from ganstudy.tracking.ui import ui_url

SERVER_SCRIPT = (
    Path(__file__).resolve().parents[1] / "scripts" / "slurm-localhost" / "mlflow-server.sh"
)


def _server(action: str, state: Path, port: int | None = None) -> None:
    command = [str(SERVER_SCRIPT), action, str(state)]
    if action == "start":
        command += ["--port", str(port), "--workers", "1"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=env_without_tracking_uri()
    )
    assert result.returncode == 0, result.stderr


def _env_file(state: Path) -> dict[str, str]:
    """The variables mlflow.env exports (what snakemake and every job get by sourcing it)."""
    env = {}
    for line in (state / "mlflow.env").read_text().splitlines():
        name, value = line.removeprefix("export ").split("=", 1)
        (env[name],) = shlex.split(value)
    return env


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def _basic_auth(credentials: dict[str, str]) -> str:
    """The Authorization header for mlflow.env's user and password."""
    user, password = (credentials[f"MLFLOW_TRACKING_{k}"] for k in ("USERNAME", "PASSWORD"))
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _search_status(uri: str, credentials: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1")
    if credentials:
        request.add_header("Authorization", _basic_auth(credentials))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _wait(predicate, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _log_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    with (run_dir / store.LOG).open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: [(int(r["step"]), float(r[key])) for r in rows] for key in LOGGED_METRICS}


@pytest.mark.slow(seconds=50)
def test_server_stopped_mid_run_then_sync_gives_the_full_history_and_the_ui_shows_it(
    tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    state, port = tmp_path / "server", free_port()
    uri = f"http://127.0.0.1:{port}"
    steps = 2000
    data = ring_config(steps=steps, log_every=50, checkpoint_every=500).to_dict()
    data["tracking"] = {
        "enabled": True,
        "uri": uri,
        "experiment": "outage",
        "system_metrics": False,
    }
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    run_dir = results / store.RunKey("ring8", "mlp2d", "lsgan", True, True, 0).run_dir
    _server("start", state, port)
    try:
        # Only the study gets in: its credentials are in files nobody else can read.
        assert _search_status(uri) == 401
        credentials = _env_file(state)
        assert credentials["MLFLOW_TRACKING_URI"] == uri
        assert _private(state / "mlflow.env") and _private(state / "auth.ini")
        assert _private(state / "auth.db")
        assert _search_status(uri, credentials) == 200
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, credentials[name])
        proc = subprocess.Popen(
            train_command(config_path, run_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_without_tracking_uri() | credentials | {"OMP_NUM_THREADS": "1"},
        )
        client = MlflowClient(uri)

        def live_run():
            experiment = client.get_experiment_by_name("outage")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            return runs[0] if runs else None

        live = _wait(live_run, "the run to appear on the server")
        _server("stop", state)
        assert proc.poll() is None, "the run ended before the server was stopped"
        out, err = proc.communicate(timeout=600)
        _server("start", state, port)  # the same store, back after the run ended
        assert _env_file(state) == credentials  # not locked out by a new password

        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert err.count(f"warning: MLflow tracking at {uri} failed") == 1, err
        metrics = json.loads((run_dir / store.METRICS).read_text())
        assert metrics["status"] == "completed" and metrics["steps"] == steps
        assert metrics["tracking"]["status"] == "failed"
        assert metrics["mlflow_run_id"] == live.info.run_id
        # What reached the server before the outage: the run, not its end.
        assert client.get_run(live.info.run_id).info.status == "RUNNING"

        assert cli.main(["track", "sync", "--results", str(results), "--uri", uri]) == 0
        experiment = client.get_experiment_by_name("outage")
        (synced,) = client.search_runs([experiment.experiment_id])
        assert synced.info.run_id == live.info.run_id  # topped up, not duplicated
        assert synced.info.status == "FINISHED"
        assert synced.data.tags["status"] == "completed"
        expected = _log_history(run_dir)
        assert [s for s, _ in expected["loss_d"]] == list(range(50, steps + 1, 50))
        for key in LOGGED_METRICS:
            history = sorted(
                (m.step, m.value) for m in client.get_metric_history(synced.info.run_id, key)
            )
            assert history == [(s, v) for s, v in expected[key] if v == v], key

        _ui_shows_the_runs_table(
            tmp_path, ui_url(uri, experiment.experiment_id), synced.info.run_name, credentials
        )
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.kill()
        subprocess.run([str(SERVER_SCRIPT), "stop", str(state)], capture_output=True, timeout=60)


def _open_logged_in(browser: DevTools, url: str, credentials: dict[str, str]) -> str:
    """:func:`browser.open_page` with the server's credentials on every request of the tab, as
    a browser sends them once its user typed them into the login prompt."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Network"):
        browser.send(f"{domain}.enable", session)
    headers = {"Authorization": _basic_auth(credentials)}
    browser.send("Network.setExtraHTTPHeaders", session, headers=headers)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=1280,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.send("Page.navigate", session, url=url)
    browser.wait_for("Page.loadEventFired")
    return session


def _ui_shows_the_runs_table(
    tmp_path: Path, url: str, run_name: str, credentials: dict[str, str]
) -> None:
    browser = DevTools(find_browser(), tmp_path / "profile")
    try:
        session = _open_logged_in(browser, url, credentials)
        text = _wait(
            lambda: (
                (t := evaluate(browser, session, "document.body.innerText")) and run_name in t and t
            ),
            "the runs table to list the run",
            timeout=60,
        )
        assert "1 matching run" in text
        # the model-training view, not the GenAI overview (traces, token usage)
        assert "Token Usage" not in text and "Run Name" in text
        shot = screenshot(browser, session, "mlflow-experiment.png")
    finally:
        browser.close()
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "users", "message"),
    [
        (["--port"], False, "error: --port needs a value"),
        (["--", "--app-name", "x"], False, "add --no-auth to serve an app of your own"),
        # A new password would not match the one the users' database keeps.
        ([], True, "auth.ini with their password is gone"),
    ],
)
def test_start_refuses_what_would_open_the_server_or_lock_the_study_out(
    tmp_path, args, users, message
):
    state = tmp_path / "server"
    state.mkdir()
    if users:
        (state / "auth.db").write_bytes(b"SQLite format 3\0")
    result = subprocess.run(
        [str(SERVER_SCRIPT), "start", str(state), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_tracking_uri(),
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (state / "mlflow-server.pid").exists() and not (state / "auth.ini").exists()

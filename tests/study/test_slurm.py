"""The study on SLURM: the slurm profile against the workflow's rules, the MLflow server script,
and a slice of the quick study on a real single-node SLURM cluster on 127.0.0.1, every run
logging to one MLflow server over HTTP.

The cluster test needs Debian's ``slurmctld slurmd slurm-client munge``, root (the daemons run
as SlurmUser=root) and snakemake-executor-plugin-slurm; it skips, naming what is missing,
elsewhere. Run by hand as ``python -m pytest tests/test_slurm.py``.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "slurm-localhost"
SNAKEFILE = REPO / "workflow" / "Snakefile"
PROFILE_DIR = REPO / "workflow" / "profiles" / "slurm"
PROFILE = PROFILE_DIR / "config.yaml"
CLUSTER_COMMANDS = (
    "munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo",
    "scancel",
)  # fmt: skip

# Submitted rules that need a GPU on a real cluster; training and evaluation rules are named per
# job (train__..., evaluate__...).
GPU_RULES = {"classifier", "fid_reference"}
PER_JOB_RULES = ("train__", "evaluate__")
CPU_RULES = {"fetch", "prepare"}
# Each cluster test brings up its own slurmctld and slurmd on this machine's cores: under
# pytest-xdist they run one after the other on one worker, never two clusters at once.
CLUSTER_GROUP = "localhost-slurm-cluster"
LOCAL_RULES = {"design", "aggregate", "report", "all"}  # run where snakemake runs
GPU_KEYS = ("gpu", "gpus", "gres", "gpu_model")
# The default study's blocks whose baselines are the mixtures', Stacked MNIST's and the cats'.
STABILISER_BLOCKS = (
    "stabilisers_ring", "stabilisers_stacked_mnist", "lsgan_stability_adam",
    "lsgan_stability_rmsprop",
)  # fmt: skip

# The slice of the quick study run on the cluster: 2 training jobs (2 seeds each, one batched
# ensemble per job) and their 2 evaluation jobs on SLURM, then the summary and the report.
SLICE = {
    "study": "slurm-slice",
    "results": "results-slurm",
    "report": "reports/report-slurm.html",
    "logs": "logs-slurm",
    # One wave: the quick study's looks run on the submitting host (a local rule), which the
    # quick study's own test covers; here every job is a cluster job.
    "analysis": {"sequential": {"waves": 1}},
    "experiments": {
        "mixtures": {
            "datasets": ["ring8"],
            "losses": ["gan", "lsgan"],
            "bn": ["both"],
            "seeds": 2,
            "seeds_per_job": 2,
            "train": {"steps": 100, "log_every": 25, "checkpoint_every": 50, "sample_every": 100},
        },
        "fashion_mnist": {"enabled": False},
        "stacked_mnist": {"enabled": False},
        "cats": {"enabled": False},
        **{block: {"enabled": False} for block in STABILISER_BLOCKS},
    },
}
CLUSTER_LIMIT_S = 420  # the whole cluster run: daemons, server, workflow, queries, shutdown


def job_env(**extra: str) -> dict[str, str]:
    """This process's environment without the settings a study run must not inherit."""
    drop = ("MLFLOW_TRACKING_URI", "GANSTUDY_GPUS", "CUDA_VISIBLE_DEVICES", "SLURM_CONF")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited daemon waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1].split()[0] != "Z"


def processes_mentioning(path: Path) -> list[str]:
    """Processes (other than this one) whose command line or working directory is under ``path``:
    every daemon, server and job a test starts names its temporary directory one way or the other.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if str(path) in cmdline or cwd.startswith(str(path)):
            found.append(f"{proc.name}: {cmdline.strip()[:200]}")
    return found


def run_bounded(command: list[str], timeout_s: float, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; past ``timeout_s`` send it SIGTERM (so its cleanup traps run) and wait."""
    with subprocess.Popen(command, text=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=90)
            raise
        return subprocess.CompletedProcess(command, proc.returncode, out, err)


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


# ---------------------------------------------------------------------------------------------
# the profile


def test_profile_selects_the_slurm_executor_and_resumable_retries():
    p = profile()
    assert p["executor"] == "slurm"
    assert p["retries"] >= 1 and p["rerun-incomplete"] is True
    assert p["jobs"] >= 1 and p["latency-wait"] >= 10


def dry_run_resources(tmp_path: Path) -> dict[str, dict[str, str]]:
    """rule -> resources of its jobs in a dry run of the default study with the slurm profile."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(SNAKEFILE)]
        + ["--workflow-profile", str(PROFILE_DIR)],
        cwd=tmp_path,
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    rules: dict[str, dict[str, str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            current = line[len("rule ") : -1]
        elif current and line.strip().startswith("resources:"):
            items = line.split("resources:", 1)[1].split(", ")
            rules[current] = dict(item.strip().split("=", 1) for item in items)
            current = None
    return rules


def test_profile_gives_every_submitted_rule_time_memory_and_the_right_gpus(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    rules = dry_run_resources(tmp_path)
    train = {name for name in rules if name.startswith(PER_JOB_RULES)}
    assert {name.split("__")[0] for name in train} == {"train", "evaluate"}, sorted(rules)
    assert set(rules) >= GPU_RULES | CPU_RULES, sorted(rules)
    # A new rule must be sorted into one of these on purpose (and given resources if submitted).
    assert set(rules) - train <= GPU_RULES | CPU_RULES | LOCAL_RULES, sorted(rules)
    for name in train | GPU_RULES | CPU_RULES:
        res = rules[name]
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, (name, res)
        wants_gpu = name in train or name in GPU_RULES
        assert int(res.get("gpu", 0)) == int(wants_gpu), (name, res)
    for name in profile()["set-resources"]:
        assert name in GPU_RULES | CPU_RULES, f"the profile sets resources of {name!r}"


# ---------------------------------------------------------------------------------------------
# script arguments


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mlflow-server.sh", "restart", "STATE"], "unknown action 'restart'"),
        (["mlflow-server.sh", "start", "STATE", "--port", "99999"], "--port must be 1-65535"),
        (["mlflow-server.sh", "start", "STATE", "--workers", "0"], "--workers must be a positive"),
        (["mlflow-server.sh", "start", "STATE", "--bogus"], "unknown option '--bogus'"),
        (["mlflow-server.sh", "stop", "STATE", "--port", "1"], "stop takes no options"),
        (["slurm-up.sh", "STATE", "--cpus", "two"], "--cpus must be a positive integer"),
        (["slurm-up.sh", "STATE", "--memory-mb", "-5"], "--memory-mb must be a positive"),
        (["slurm-up.sh", "STATE", "--partition", "a b"], "--partition may hold"),
        (["slurm-up.sh", "STATE", "--gpus", "1"], "unknown option '--gpus'"),
        (["with-cluster.sh", "STATE", "--", ], "no command given"),
    ],
)  # fmt: skip
def test_scripts_reject_bad_options_before_starting_anything(tmp_path, args, message):
    state = tmp_path / "state"
    command = [str(SCRIPTS / args[0]), *[str(state) if a == "STATE" else a for a in args[1:]]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=job_env())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (state / "mlflow-server.pid").exists() and not (state / "pids").exists()


# ---------------------------------------------------------------------------------------------
# the MLflow server


@pytest.mark.slow(seconds=10)
def test_mlflow_server_script_serves_runs_over_http_and_stops(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from ganstudy.tracking.backend import resolve_uri
    from ganstudy.tracking.runs import TrackingJob

    state = tmp_path / "server"
    script = str(SCRIPTS / "mlflow-server.sh")
    from helpers import free_port  # here: the cluster also runs this file as a script

    port = free_port()
    start = [script, "start", str(state), "--port", str(port), "--workers", "1"]
    pid = None
    try:
        result = run_bounded(
            start, 180, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=job_env()
        )
        assert result.returncode == 0, result.stderr
        # mlflow.env: export lines of the URI and the credentials every job sources.
        exported = {}
        for line in (state / "mlflow.env").read_text().splitlines():
            key, value = line.removeprefix("export ").split("=", 1)
            exported[key] = shlex.split(value)[0]
        uri = exported["MLFLOW_TRACKING_URI"]
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, exported[key])
        assert uri.startswith("http://127.0.0.1:")
        pid = int((state / "mlflow-server.pid").read_text())
        assert alive(pid)

        # The package resolves the server from the environment, as every job does.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert resolve_uri(None) == uri
        job = TrackingJob(uri, "server-probe")
        run = job.member("probe")
        run.start(None, "probe", {"train": {"steps": 3}}, {"seed": "7"})
        run.log_metrics(3, {"loss_d": 0.25}, force_flush=True)
        (tmp_path / "metrics.json").write_text('{"status": "completed"}')
        run.log_run_files(tmp_path)
        run.finish("FINISHED")
        assert job.close() and job.failure is None

        got = MlflowClient(uri).get_run(run.run_id)
        assert got.info.status == "FINISHED"
        assert got.data.metrics == {"loss_d": 0.25}
        assert got.data.params["train.steps"] == "3" and got.data.tags["seed"] == "7"
        # Artifacts travel through the server into its artifact store, not via a shared path.
        stored = list((state / "artifacts").rglob("metrics.json"))
        assert len(stored) == 1 and stored[0].read_text() == '{"status": "completed"}'
        assert (state / "mlflow.db").is_file()
    finally:
        stopped = subprocess.run(
            [script, "stop", str(state)], capture_output=True, text=True, timeout=60
        )
    assert stopped.returncode == 0, stopped.stderr
    assert pid is not None and not alive(pid) and not (state / "mlflow-server.pid").exists()
    assert not processes_mentioning(tmp_path)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 2):
        pass


# ---------------------------------------------------------------------------------------------
# the study on a localhost SLURM cluster


def cluster_missing() -> str | None:
    missing = [c for c in CLUSTER_COMMANDS if shutil.which(c) is None]
    if missing:
        return (
            f"no SLURM/munge binaries ({', '.join(missing)}); "
            "apt-get install -y slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the localhost SLURM cluster runs its daemons as root"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    return None


def without_gpus(resources: dict) -> list[str]:
    return [f"{k}={v}" for k, v in resources.items() if k not in GPU_KEYS]


def cpu_overrides(p: dict) -> list[str]:
    """The profile's own resources with the GPU requests taken out (the test node has none)."""
    args = ["--default-resources", *without_gpus(p["default-resources"]), "--set-resources"]
    for rule, resources in p["set-resources"].items():
        args += [f"{rule}:{item}" for item in without_gpus(resources)]
    return args


def profile_max_mem_mb(p: dict) -> int:
    values = [p["default-resources"].get("mem_mb", 0)]
    values += [r.get("mem_mb", 0) for r in p["set-resources"].values()]
    return max(int(v) for v in values)


def collect(experiment: str, out: str) -> None:
    """Inside the cluster: what the MLflow server and SLURM hold after the run, as JSON."""
    from mlflow import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = []
    for run in client.search_runs([found.experiment_id]) if found else []:
        runs.append(
            {
                "run_id": run.info.run_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "tags": run.data.tags,
                "metrics": sorted(run.data.metrics),
                "artifacts": [a.path for a in client.list_artifacts(run.info.run_id)],
            }
        )
    squeue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%k"], capture_output=True, text=True, check=True
    ).stdout
    jobs = [dict(zip(("id", "state", "comment"), line.split("|"))) for line in squeue.splitlines()]
    Path(out).write_text(json.dumps({"uri": uri, "runs": runs, "slurm_jobs": jobs}, indent=1))


def cluster_workdir(tmp_path: Path, name: str, study: dict) -> tuple[dict, Path]:
    """(the SLURM profile, a working directory with the study configs), or a skip naming what
    the cluster test lacks here."""
    reason = cluster_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / name).write_text(yaml.safe_dump(study, sort_keys=False))
    return profile(), work


@pytest.mark.slow(seconds=100)
@pytest.mark.xdist_group(CLUSTER_GROUP)
@pytest.mark.timeout(CLUSTER_LIMIT_S + 120)
def test_quick_study_slice_runs_on_a_localhost_slurm_cluster_logging_to_one_server(tmp_path):
    p, work = cluster_workdir(tmp_path, "slice.yaml", SLICE)
    state, collected = tmp_path / "cluster", tmp_path / "collected.json"

    snakemake = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
        "--workflow-profile", str(PROFILE_DIR),
        "--configfile", "config/quick.yaml", "slice.yaml",
        *cpu_overrides(p),
        # No accounting database here: job states come from squeue (MinJobAge=300 keeps
        # finished jobs there), checked soon after submission.
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "3",
    ]  # fmt: skip
    collect_cmd = [sys.executable, __file__, "collect", SLICE["study"], str(collected)]
    inner = (
        f"{shlex.join(snakemake)}; status=$?; {shlex.join(collect_cmd)} || status=3; exit $status"
    )
    command = [
        "timeout", "-k", "30", str(CLUSTER_LIMIT_S),
        str(SCRIPTS / "with-cluster.sh"), str(state),
        # The node declares room for 4 jobs with the profile's memory requests, more than this
        # machine has (nothing is enforced here): the 4 evaluations then run in one round.
        "--cpus", "4", "--memory-mb", str(4 * profile_max_mem_mb(p)),
        "--", "bash", "-c", inner,
    ]  # fmt: skip
    started = time.monotonic()
    result = run_bounded(
        command, CLUSTER_LIMIT_S + 60, cwd=work, env=job_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wall = time.monotonic() - started
    print(f"cluster run: {wall:.0f} s")
    log = result.stdout

    # Every daemon, the server and every job are gone, whatever happened.
    assert not processes_mentioning(tmp_path), processes_mentioning(tmp_path)
    assert result.returncode == 0, log[-6000:]

    data = json.loads(collected.read_text())
    assert data["uri"].startswith("http://127.0.0.1:")
    results = work / SLICE["results"]
    with open(results / "design.csv") as handle:
        design = list(csv.DictReader(handle))
    assert len(design) == 4

    # Each run is one MLflow run on the server, finished, with training and evaluation metrics
    # and its files as artifacts; its metrics.json names that same run.
    runs = {r["name"]: r for r in data["runs"]}
    assert set(runs) == {row["run_dir"].removeprefix("runs/") for row in design}
    for row in design:
        run = runs[row["run_dir"].removeprefix("runs/")]
        assert run["status"] == "FINISHED"
        assert {"loss_d", "loss_g"} <= set(run["metrics"])
        assert any(m.startswith("eval.modes.") for m in run["metrics"]), run["metrics"]
        assert "metrics.json" in run["artifacts"] and "config.yaml" in run["artifacts"]
        tags = run["tags"]
        assert (tags["study"], tags["status"]) == (SLICE["study"], "completed")
        assert (tags["loss"], tags["seed"]) == (row["loss"], row["seed"])
        metrics = json.loads((results / row["run_dir"] / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert metrics["mlflow_run_id"] == run["run_id"]
        assert metrics["mlflow_tracking_uri"] == data["uri"]
    # Nothing went to the config's default SQLite store.
    assert not (work / "mlflow.db").exists()

    # Training and evaluation ran as SLURM jobs, every one completed.
    jobs = data["slurm_jobs"]
    train = [j for j in jobs if j["comment"].startswith("rule_train__")]
    evaluate = [j for j in jobs if j["comment"].startswith("rule_evaluate__")]
    assert len(train) == 2 and len(evaluate) == 2, jobs
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs

    report = work / SLICE["report"]
    assert report.is_file() and report.stat().st_size > 10_000
    assert "slurm-slice" in report.read_text()


# A training job that SLURM stops (scancel --signal=TERM, as at a time limit or on preemption):
# it checkpoints the step it reached and fails with code 75; Snakemake's retry resumes it there.
PREEMPT = {
    "study": "slurm-preempt",
    "results": "results-preempt",
    "report": "reports/report-preempt.html",
    "logs": "logs-preempt",
    "experiments": {
        "mixtures": {
            "datasets": ["ring8"],
            "losses": ["lsgan"],
            "bn": ["both"],
            "seeds": 1,
            "train": {
                "steps": 2000, "log_every": 50, "checkpoint_every": 1000, "sample_every": 2000,
            },
        },
        "fashion_mnist": {"enabled": False},
        "stacked_mnist": {"enabled": False},
        "cats": {"enabled": False},
        **{block: {"enabled": False} for block in STABILISER_BLOCKS},
    },
}  # fmt: skip
PREEMPT_LIMIT_S = 300


@pytest.mark.slow(seconds=105)
@pytest.mark.xdist_group(CLUSTER_GROUP)
@pytest.mark.timeout(PREEMPT_LIMIT_S + 120)
def test_a_training_job_stopped_by_slurm_resumes_from_the_step_it_reached(tmp_path):
    p, work = cluster_workdir(tmp_path, "preempt.yaml", PREEMPT)
    key = "ring8/mlp2d/lsgan/bn-g1-d1"
    run = work / PREEMPT["results"] / "runs" / key / "seed0"
    snakemake = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
        "--workflow-profile", str(PROFILE_DIR),
        "--configfile", "config/quick.yaml", "preempt.yaml",
        *cpu_overrides(p),
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "3",
    ]  # fmt: skip
    # Once the job has logged a few rows (long before its first checkpoint at step 1000), SLURM
    # sends it SIGTERM, as it does at a time limit or when it preempts a job.
    inner = f"""
{shlex.join(snakemake)} > snakemake.log 2>&1 &
workflow=$!
log={shlex.quote(str(run / "log.csv"))}
for _ in $(seq 1500); do
    if [ -f "$log" ] && [ "$(wc -l < "$log")" -ge 5 ]; then break; fi
    sleep 0.2
done
job=$(squeue -h -o "%i %k" | awk '$2 ~ /^rule_train__/ {{print $1; exit}}')
scancel --signal=TERM "$job"
wait $workflow; status=$?
squeue -h -t all -o "%i|%T|%k" > jobs.txt
exit $status
"""
    command = [
        "timeout", "-k", "30", str(PREEMPT_LIMIT_S),
        str(SCRIPTS / "with-cluster.sh"), str(tmp_path / "cluster"),
        "--cpus", "4", "--memory-mb", str(4 * profile_max_mem_mb(p)),
        "--", "bash", "-c", inner,
    ]  # fmt: skip
    result = run_bounded(
        command, PREEMPT_LIMIT_S + 60, cwd=work, env=job_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert not processes_mentioning(tmp_path), processes_mentioning(tmp_path)
    workflow_log = (work / "snakemake.log").read_text() if (work / "snakemake.log").exists() else ""
    assert result.returncode == 0, result.stdout[-3000:] + workflow_log[-6000:]

    jobs = [line.split("|") for line in (work / "jobs.txt").read_text().splitlines()]
    train = sorted(
        (int(i), state) for i, state, comment in jobs if comment.startswith("rule_train")
    )
    assert [state for _, state in train] == ["FAILED", "COMPLETED"], jobs
    # The retry resumed from the checkpoint the stopped job wrote at the step it had reached.
    train_log = (work / PREEMPT["logs"] / "train" / key / "seeds-0.log").read_text()
    resumed = [line for line in train_log.splitlines() if "resuming from step" in line]
    assert len(resumed) == 1, train_log
    step = int(resumed[0].rsplit(" ", 1)[1])
    assert 0 < step < 1000, resumed
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["status"], metrics["steps"]) == ("completed", 2000)


if __name__ == "__main__":
    # `python tests/test_slurm.py collect EXPERIMENT OUT`: run by the cluster test inside the
    # cluster, while its MLflow server is still up.
    if sys.argv[1:2] != ["collect"] or len(sys.argv) != 4:
        sys.exit("usage: test_slurm.py collect EXPERIMENT OUT")
    collect(sys.argv[2], sys.argv[3])

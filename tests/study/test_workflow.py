"""The Snakemake workflow run as a user runs it: dry runs, config errors, lint, the quick study
end to end on the CPU, and a killed training job resumed from its checkpoint."""

from __future__ import annotations

import csv
import fcntl
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from ganstudy import checkpoint as ckpt
from ganstudy import store
from ganstudy.study import gpu_slots

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SHARED = REPO.parent / "shared"
MIRROR = SHARED / "datasets"
FID_WEIGHTS = SHARED / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth"


def workdir(tmp_path: Path) -> Path:
    """A fresh working directory holding the repository's study configs."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    for name in (
        "GANSTUDY_GPUS",
        "GANSTUDY_GPU_MEMORY_MIB",
        "CUDA_VISIBLE_DEVICES",
        "SLURM_JOB_ID",
    ):
        env.pop(name, None)
    env.update(extra)
    return env


def snakemake(cwd: Path, *args: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args]
    return subprocess.run(
        command, cwd=cwd, env=env or job_env(), capture_output=True, text=True, timeout=timeout
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# dry runs and config errors


def test_dry_run_of_the_reproductions_resolves(tmp_path):
    cwd = workdir(tmp_path)
    result = snakemake(cwd, "-n", "-p", "--configfile", "config/reproduce.yaml")
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    train = {k: v for k, v in counts.items() if k.startswith("train__")}
    # ring: 2 losses x 200 seeds in jobs of 50; Stacked MNIST 2 x 100 in 25s; PacGAN 10 in one;
    # Fashion-MNIST 2 x 50 in 25s.
    assert len(train) == 8 + 8 + 1 + 4
    # One evaluation job per training job, evaluating all its members in one process.
    evaluations = {k for k in counts if k.startswith("evaluate__")}
    assert evaluations == {"evaluate__" + k.removeprefix("train__") for k in train}
    commands = [line for line in result.stdout.splitlines() if "ganstudy evaluate" in line]
    assert len(commands) == len(train)
    runs = [run for c in commands for run in evaluated_runs(c)]
    assert len(runs) == len(set(runs)) == 400 + 200 + 10 + 100
    # Each block evaluates with its protocol's sample count and the one-sample rule.
    ring = [c for c in commands if "ring8/mlp2d_lrelu/" in c]
    pacgan = [c for c in commands if "ring8/mlp2d_maxout/" in c]
    assert sum(len(evaluated_runs(c)) for c in ring) == 400
    assert [len(evaluated_runs(c)) for c in pacgan] == [10]
    assert all("--mode-samples 25000 --mode-min-count 1" in c for c in ring)
    assert all("--mode-samples 2500 --mode-min-count 1" in c for c in pacgan)


def evaluated_runs(command: str) -> list[str]:
    """The run directories an evaluation job's shell command names after --run."""
    words = command.split("ganstudy evaluate --run ", 1)[1].split()
    return list(itertools.takewhile(lambda w: not w.startswith("-"), words))


def test_dry_run_shows_the_whole_default_study(tmp_path):
    cwd = workdir(tmp_path)
    result = snakemake(cwd, "-n", env=job_env(GANSTUDY_GPUS="2"))
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    train = {k: v for k, v in counts.items() if k.startswith("train__")}
    # A sequential study shows its first wave and the look after it: a third of each primary
    # block's jobs (mixtures 12 variants x 1 job of 16 seeds, Fashion-MNIST 12 x 1 of 8, Stacked
    # MNIST 4 x 2 of 10, cats 4 x 2 of 7, lsgan_stability_adam 2 x 2 of 7) and every job of the
    # secondary blocks (6 + 3 + 2).
    assert len(train) == 12 + 12 + 8 + 8 + 4 + 6 + 3 + 2 and set(train.values()) == {1}
    assert not any(k.endswith(("seeds_16_16", "seeds_20_10", "seeds_14_7")) for k in train)
    assert sum(v for k, v in counts.items() if k.startswith("evaluate__")) == len(train)
    assert counts["fetch"] == 3 and counts["prepare"] == 4
    assert counts["classifier"] == 2 and counts["fid_reference"] == 3
    for rule in ("design", "look", "aggregate", "report", "all"):
        assert counts[rule] == 1
    assert "checkpoint" in result.stdout
    # with (simulated) GPUs, training and evaluation take a GPU slot each
    block = result.stdout.split("rule evaluate__", 1)[1].split("\n\n", 1)[0]
    assert "gpu_slot=1" in block
    assert sorted(p.name for p in cwd.iterdir()) == [".snakemake", "config"]


GPU_RULES = ("classifier", "fid_reference")  # and every training and evaluation job's rule
PER_JOB_RULES = ("train__", "evaluate__")
CPU_RULES = ("fetch", "prepare", "design", "look", "aggregate", "report", "all")


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs of a dry run (``-n -p``): each job's rule, resources and shell command."""
    jobs = []
    for block in re.split(r"\n\[[^\]\n]+\]\n", output)[1:]:
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\S+):", block)
        if head is None:
            continue
        resources = re.search(r"^ +resources: (.*)$", block, re.MULTILINE)
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append({
            "rule": head.group(1),
            "resources": resources.group(1) if resources else "",
            "shell": shell.group(1) if shell else None,
        })  # fmt: skip
    return jobs


def test_on_one_gpu_only_gpu_rules_take_a_slot_and_go_through_the_launcher(tmp_path):
    """A simulated machine with one GPU and one job per GPU: training, evaluation, classifier
    and FID-reference jobs take the GPU slot and start through `ganstudy gpu-run`; fetching,
    preparing, the design, the summary and the report take no slot and start directly, so they
    never wait for the GPU."""
    cwd = workdir(tmp_path)
    one = write_config(cwd / "one-gpu.yaml", {"gpus": {"jobs_per_gpu": 1}})
    result = snakemake(cwd, "-n", "-p", "--configfile", "config/quick.yaml", str(one),
                       env=job_env(GANSTUDY_GPUS="1"))  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = dry_run_jobs(result.stdout)
    assert len(jobs) == job_counts(result.stdout)["total"]
    assert {j["rule"] for j in jobs} >= {*GPU_RULES, *CPU_RULES}
    gpu_jobs = [j for j in jobs if j["rule"] in GPU_RULES or j["rule"].startswith(PER_JOB_RULES)]
    cpu_jobs = [j for j in jobs if j not in gpu_jobs]
    assert {j["rule"] for j in cpu_jobs} == set(CPU_RULES)
    # classifiers, FID references, training jobs and their evaluation jobs
    assert len(gpu_jobs) == 2 + 3 + 13 + 13
    for job in gpu_jobs:
        assert "gpu_slot=1" in job["resources"], job
        assert job["shell"].startswith("ganstudy gpu-run -- ganstudy "), job
    for job in cpu_jobs:
        assert "gpu_slot" not in job["resources"], job
        assert job["shell"] is None or "gpu-run" not in job["shell"], job


def test_a_training_job_too_large_for_the_gpu_fails_before_any_job(tmp_path):
    cwd = workdir(tmp_path)
    big = write_config(
        cwd / "big.yaml",
        {"experiments": {"fashion_mnist": {"seeds_per_job": "all", "sequential": False}}},
    )
    env = job_env(GANSTUDY_GPUS="1", GANSTUDY_GPU_MEMORY_MIB="8192")
    result = snakemake(cwd, "-n", "--configfile", str(big), env=env)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "ConfigError" in output and "Job stats" not in output
    assert (
        "key 'experiments.fashion_mnist.seeds_per_job': 24 seeds of fashion_mnist/dcgan28/"
        in output
    )
    assert "the GPU has 8.00 GiB free" in output and "allowed: at most " in output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"experiments": {"mixtures": {"trian": {"steps": 5}}}},
            "unknown key 'experiments.mixtures.trian'; allowed keys in experiments.mixtures:",
        ),
        (
            {"gpus": {"jobs_per_gpu": "many"}},
            "key 'gpus.jobs_per_gpu': 'many' is not allowed; allowed: an integer >= 1 | 'auto'",
        ),
        (
            {"experiments": {"fashion_mnist": {"archs": ["dcgan64"]}}},
            "key 'arch.name': 'dcgan64' is not allowed; allowed: an architecture for "
            "fashion_mnist (28x28x1 images): dcgan28, dcgan28_small",
        ),
    ],
)
def test_bad_configs_fail_before_any_job(tmp_path, extra, message):
    cwd = workdir(tmp_path)
    bad = write_config(cwd / "bad.yaml", extra)
    result = snakemake(cwd, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert message in output
    assert "ConfigError" in output and "Job stats" not in output


def test_lint_is_clean(tmp_path):
    result = snakemake(workdir(tmp_path), "--lint")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output
    assert "Congratulations, your workflow is in a good condition" in output


@pytest.mark.slow(seconds=16)
def test_cpu_jobs_run_while_every_gpu_slot_is_held(tmp_path):
    """One simulated GPU of 80 GiB with `jobs_per_gpu: auto` on 2 cores: two slots. With both
    slot locks held by another process, the design (a CPU job) runs to its end while the
    training job that needs it waits in the launcher; freeing one slot lets it start there."""
    cwd = workdir(tmp_path)
    study = {
        "study": "slots-full",
        "tracking": {"enabled": False},
        "gpus": {"jobs_per_gpu": "auto", "lock_dir": "locks"},
        "experiments": {
            name: {"enabled": False}
            for name in (
                "fashion_mnist", "stacked_mnist", "cats", "stabilisers_ring",
                "stabilisers_stacked_mnist", "lsgan_stability_adam", "lsgan_stability_rmsprop",
            )
        }
        | {
            "mixtures": {
                "datasets": ["ring8"], "losses": ["gan"], "bn": ["both"], "seeds": 1,
                "seeds_per_job": 1,
                "train": {"steps": 5, "epochs": None, "log_every": 5, "checkpoint_every": 5,
                          "sample_every": 5},
            },
        },
    }  # fmt: skip
    write_config(cwd / "slots.yaml", study)
    run = cwd / "results/runs/ring8/mlp2d/gan/bn-g1-d1/seed0"
    train_log = cwd / "logs/train/ring8/mlp2d/gan/bn-g1-d1/seeds-0.log"
    locks = cwd / "locks" / gpu_slots.lock_scope({})
    locks.mkdir(parents=True)
    held = {}
    for index in (0, 1):
        fd = os.open(locks / f"gpu0-slot{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held[index] = fd
    env = job_env(GANSTUDY_GPUS="1", GANSTUDY_GPU_MEMORY_MIB=str(80 * 1024))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
               str(run.relative_to(cwd) / "final.pt"), "--cores", "2", "--configfile", "slots.yaml"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not train_log.exists():  # the training job starts once the design is written
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the training job did not start within 120 s"
            time.sleep(0.1)
        assert (cwd / "results" / store.DESIGN).is_file()
        time.sleep(3)  # longer than the launcher's 2 s between tries
        assert proc.poll() is None
        assert "gpu-run: GPU" not in train_log.read_text()
        assert not (run / store.METRICS).exists()
        os.close(held.pop(1))
        output = proc.communicate(timeout=240)[0]
    finally:
        for fd in held.values():
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    assert "GPUs: 1, 2 job(s) per GPU (auto: 80.00 GiB free per GPU" in output
    assert "gpu-run: GPU 0 (slot 1 of 2)" in train_log.read_text()
    assert (run / store.FINAL).is_file()


# ---------------------------------------------------------------------------------------------
# the quick study, end to end on the CPU


@pytest.fixture
def shared_files() -> None:
    for path in (MIRROR, FID_WEIGHTS):
        if not path.exists():
            pytest.skip(
                f"{path} is absent: the offline data mirror and FID weights live in ../shared"
            )


def read_design(results: Path) -> list[dict]:
    with (results / "design.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow(seconds=42)
def test_a_study_too_long_for_this_machine_stops_before_any_job(tmp_path):
    cwd = workdir(tmp_path)
    result = snakemake(cwd, "--cores", "2", env=job_env(GANSTUDY_GPUS="0"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = result.stderr[result.stderr.index("Not starting") :]
    assert "1540 runs" in message and "more than max_training_hours (4)" in message
    assert "snakemake --cores all --configfile config/quick.yaml" in message
    assert "--config confirm_long_run=True" in message
    assert not (cwd / "results").exists()  # no job ran, not even the design

    # Confirmed, the same study starts (here only its design, the first job).
    design = str(Path("results") / store.DESIGN)
    confirmed = snakemake(cwd, "--cores", "1", design, "--config", "confirm_long_run=True",
                          env=job_env(GANSTUDY_GPUS="0"))  # fmt: skip
    assert confirmed.returncode == 0, confirmed.stderr[-3000:]
    assert "Not starting" not in confirmed.stderr
    assert (cwd / design).is_file()
    # A higher bound does the same; a smaller study below the bound starts without confirming.
    raised = snakemake(cwd, "--cores", "1", design, "--config", "max_training_hours=100000",
                       env=job_env(GANSTUDY_GPUS="0"))  # fmt: skip
    assert raised.returncode == 0 and "Not starting" not in raised.stderr, raised.stderr[-3000:]


@pytest.mark.slow(seconds=250)
@pytest.mark.timeout(1500)
def test_quick_study_end_to_end_on_the_cpu(tmp_path, shared_files):
    cwd = workdir(tmp_path)
    env = job_env(GANSTUDY_MIRROR=str(MIRROR), GANSTUDY_FID_WEIGHTS=str(FID_WEIGHTS))
    start = time.monotonic()
    result = snakemake(cwd, "--cores", "2", "--configfile", "config/quick.yaml", env=env,
                       timeout=1400)  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"quick study: {elapsed:.0f} s")
    assert "No GPU: every training and evaluation job runs on the CPU" in result.stderr

    results = cwd / "results-quick"
    design = read_design(results)
    assert {row["dataset"] for row in design} == {
        "ring8", "grid25", "fashion_mnist", "stacked_mnist", "cat_faces64"
    }  # fmt: skip
    for row in design:
        run = results / row["run_dir"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] in ("completed", "diverged"), row
        assert metrics["mlflow_experiment"] == "lsgan-vs-gan-quick"
        evaluation = json.loads((run / "eval.json").read_text())
        assert evaluation["stability"] is not None
        if row["dataset"] in ("fashion_mnist", "stacked_mnist", "cat_faces64"):
            assert evaluation["fid"]["settings"]["protocol"] == "custom-64d-128"
            assert evaluation["fid"]["settings"]["dims"] == 64
        if row["dataset"] != "cat_faces64":
            assert evaluation["modes"]["modes_total"] > 0
        if row["dataset"] in ("fashion_mnist", "stacked_mnist"):
            assert evaluation["modes"]["classifier"]["test_accuracy"] > 0.5
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["tracking"]["tags"]["study"] == "lsgan-vs-gan-quick"
    # a training-time FID curve feeds the FID stability statistics
    fashion = [r for r in design if r["dataset"] == "fashion_mnist"]
    assert all((results / r["run_dir"] / "fid_curve.csv").is_file() for r in fashion)

    # Two waves on the mixtures: look 1 could decide nothing on two seeds an arm and let the
    # mixtures continue; their second wave (seeds 2 and 3) trained; look 2 decided the rest.
    first = json.loads((results / "looks" / "look-1.json").read_text())
    last = json.loads((results / "looks" / "look-2.json").read_text())
    assert first["continuing_blocks"] == ["mixtures"] and last["continuing_blocks"] == []
    mixtures = [h for h in first["hypotheses"] if "ring8+grid25" in h["name"]]
    assert [h["status"] for h in mixtures] == ["continue", "continue"]
    assert all(h["runs_candidate"] == 4 for h in mixtures)
    assert {h["status"] for h in last["hypotheses"]} <= {"not rejected", "rejected"}
    assert (results / "runs/ring8/mlp2d/lsgan/bn-g1-d1/seed3/eval.json").is_file()
    assert (results / "looks" / ".decided" / "look-1.json").is_file()

    with (results / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == len(design)
    report = cwd / "reports" / "report-quick.html"
    assert report.stat().st_size > 10_000
    # one run of each stabiliser, each compared with the baseline its block names
    page = report.read_text()
    for shown in ("gan vs alpha_d05_g12", "gan vs gan_gap_aware"):
        assert f"<td>{shown}</td>" in page
    assert "ring8: learning rate of D under its schedule" in page
    # The report opens with the answer: the primary family (derived: lsgan vs gan per dataset
    # family, the cat faces here), one line each, a forest plot, then the exploratory cells.
    assert page.index('<h2 id="answer">The answer</h2>') < page.index('<h2 id="question">')
    answer = page[page.index('<h2 id="answer">') : page.index('<h2 id="question">')]
    lines = answer[answer.index('<ol class="answer">') : answer.index("</ol>")]
    assert lines.count("<li>") == 8 and "on cat_faces64" in lines and "Forest plots" in answer
    assert "The study ran its 2 look(s) of 2" in answer and "The looks: -log10 p" in answer
    assert "sequential Holm-adjusted" in answer
    assert "Secondary comparisons (exploratory)" in page
    assert "gan_rmsprop" in page
    rmsprop = [r for r in design if r["loss"] == "gan_rmsprop"]
    assert len(rmsprop) == 1
    config = yaml.safe_load((results / rmsprop[0]["run_dir"] / "config.yaml").read_text())
    assert config["train"]["optimizer"] == "rmsprop" and config["loss"]["name"] == "gan"
    assert (results / "comparisons.csv").is_file()
    # every run config can be reproduced by hand with `ganstudy train --config`
    assert len(list((results / "configs").rglob("*.yaml"))) == len({
        (r["dataset"], r["arch"], r["loss"], r["bn_g"], r["bn_d"]) for r in design
    })  # fmt: skip

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lsgan-vs-gan-quick")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == len(design)
    assert {r.data.tags["study"] for r in runs} == {"lsgan-vs-gan-quick"}
    assert {r.data.tags["dataset"] for r in runs} == {row["dataset"] for row in design}

    # nothing is left to do: re-running is incremental
    again = snakemake(cwd, "-n", "--configfile", "config/quick.yaml", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout

    # The report's figures and every run's samples as files beside it, and the archive of
    # `snakemake --report`: our report, summary.csv, the forest plots and the samples, captioned.
    figures = cwd / "reports" / "report-quick-figures"
    samples = cwd / "reports" / "report-quick-samples"
    assert [p.name for p in figures.glob("*.png")] == ["forest.png"]
    with_samples = [r for r in design if (results / r["run_dir"] / "samples.png").is_file()
                    or (results / r["run_dir"] / "samples2d.csv").is_file()]  # fmt: skip
    drawn = sorted(str(p.relative_to(samples)) for p in samples.rglob("*.png"))
    assert drawn == sorted(r["run_dir"].removeprefix("runs/") + ".png" for r in with_samples)
    assert any(r["dataset"] == "ring8" for r in with_samples)
    archive = tmp_path / "report.zip"
    packed = snakemake(cwd, "--report", str(archive), "--configfile", "config/quick.yaml", env=env)
    assert packed.returncode == 0, packed.stderr[-3000:]
    check_report_archive(archive, drawn)


def check_report_archive(archive: Path, samples: list[str]) -> None:
    """The archive holds our HTML report, summary.csv, forest.png and every sample file, and its
    page shows the workflow's description and each file's caption."""
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        page = zf.read("report/report.html").decode()
    results = [n for n in names if n.startswith("report/data/")]
    for name in ("report-quick.html", "summary.csv", "forest.png"):
        assert sum(n.endswith(f"/{name}") for n in results) == 1, (name, names)
    for name in samples:
        assert any(n.endswith(f"/{name}") for n in results), (name, names)
    assert len(results) == 3 + len(samples)
    for caption in (
        "The lsgan-vs-gan-quick study",  # the workflow's description, its config filled in
        "The tidy summary of the study",
        "Forest plots of the primary hypotheses",
        "the run ring8 /",  # a sample's caption, its wildcards filled in
        "rendered by",
    ):
        assert caption in page, caption


# ---------------------------------------------------------------------------------------------
# a killed training job resumes from its checkpoint; a diverged run goes on to evaluation


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), so that only the workflow's own job is killed."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children + [d for c in children for d in descendants(c)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_log(run: Path) -> list[dict]:
    with (run / "log.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow(seconds=50)
@pytest.mark.timeout(600)
def test_a_killed_training_job_resumes_and_a_diverged_run_is_evaluated(tmp_path):
    cwd = workdir(tmp_path)
    steps, every = 1500, 100
    study = {
        "study": "resume-check",
        "tracking": {"enabled": False},
        "experiments": {
            name: {"enabled": False}
            for name in (
                "fashion_mnist", "stacked_mnist", "cats", "stabilisers_ring",
                "stabilisers_stacked_mnist", "lsgan_stability_adam", "lsgan_stability_rmsprop",
            )
        }
        | {
            "mixtures": {
                "datasets": ["ring8"], "losses": ["gan"], "bn": ["both"], "seeds": 2,
                "seeds_per_job": 2,
                "train": {"steps": steps, "epochs": None, "batch_size": 32, "log_every": 50,
                          "checkpoint_every": every, "sample_every": steps},
            },
            # D's target for real samples is 1e20: its squared error overflows at the first step
            "diverging": {
                "datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["lsgan"], "bn": ["none"],
                "loss": {"b": 1e20}, "train": {"steps": 200, "log_every": 50},
            },
        },
    }  # fmt: skip
    write_config(cwd / "resume.yaml", study)
    runs = [cwd / f"results/runs/ring8/mlp2d/gan/bn-g1-d1/seed{s}" for s in (0, 1)]
    targets = [str(run.relative_to(cwd) / "final.pt") for run in runs]
    args = [*targets, "--cores", "1", "--configfile", "resume.yaml"]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args]
    first = subprocess.Popen(command, cwd=cwd, env=job_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    checkpoints = runs[0] / "checkpoints"
    deadline = time.monotonic() + 300
    # Both members' checkpoints of a step (the ensemble resumes from a step every member has;
    # a kill between the two files would send it back to the previous one).
    while not all(list((run / "checkpoints").glob("step_*.pt")) for run in runs):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    # the training process itself: the job's shell line also names the launcher
    trainers = [
        p
        for p in descendants(first.pid)
        if "ganstudy train" in cmdline(p) and "gpu-run" not in cmdline(p)
    ]
    assert len(trainers) == 1, [cmdline(p) for p in descendants(first.pid)]
    os.kill(trainers[0], signal.SIGKILL)
    output = first.communicate(timeout=120)[0]
    assert first.returncode != 0
    assert "Error in rule train__ring8__mlp2d__gan__bn_g1_d1__seeds_0_2" in output

    saved = {int(p.stem.split("_")[1]) for p in checkpoints.glob("step_*.pt")}
    resume_step = max(saved)
    assert 0 < resume_step < steps
    assert not (runs[0] / "final.pt").exists()
    # Snakemake removed the failed job's declared outputs, log.csv among them; the checkpoint
    # carries the rows up to its step, and the resumed run writes them back.
    assert not (runs[0] / "log.csv").exists()
    carried = ckpt.load(ckpt.checkpoint_path(runs[0], resume_step))["run_files"]["log.csv"]
    before = list(csv.DictReader(io.StringIO(carried)))
    assert before and int(before[-1]["step"]) <= resume_step

    # the rerun also trains and evaluates a run that diverges: an outcome, not a failure
    diverging = cwd / "results/runs/ring8/mlp2d/lsgan/bn-g0-d0/seed0"
    second = snakemake(cwd, str(diverging.relative_to(cwd) / "eval.json"), *args, timeout=500)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert json.loads((diverging / "metrics.json").read_text())["status"] == "diverged"
    assert json.loads((diverging / "eval.json").read_text())["stability"]["diverged"] is True
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["steps"] == steps
    rows = read_log(runs[0])
    # the rows up to the checkpoint are the ones written before the kill (same wall clock):
    # training went on from the checkpoint instead of starting over
    assert rows[: len(before)] == before
    assert [int(r["step"]) for r in rows] == list(range(50, steps + 1, 50))
    log = (cwd / "logs/train/ring8/mlp2d/gan/bn-g1-d1/seeds-0-1.log").read_text()
    first_step = int(re.search(rf"step (\d+)/{steps}", log).group(1))
    assert first_step > resume_step, log[:2000]

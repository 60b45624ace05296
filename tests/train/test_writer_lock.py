"""One writer per run directory: a second training or evaluation of a directory in use is
refused at once, names the holder, and leaves the directory as the first writer makes it."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ring_config, train_command

from ganstudy import cli, dirlock, store
from ganstudy.errors import ConfigError


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _holder(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / store.WRITER_LOCK).read_text())
    except (OSError, ValueError):
        return None


def _start_and_pause(command: list[str], run_dir: Path) -> subprocess.Popen:
    """Start ``command`` and stop it (SIGSTOP) once it holds ``run_dir``'s lock and has written
    its log: the writer is then certainly in the middle of its run."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        held = _holder(run_dir)
        if held and held["pid"] == proc.pid and (run_dir / store.LOG).is_file():
            proc.send_signal(signal.SIGSTOP)
            return proc
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the first writer never took the lock")


def _resume(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


def _solo(command: list[str]) -> None:
    """``command`` (a `ganstudy train` line) in this process: the solo run to compare with."""
    assert cli.main(command[3:]) == 0


def _listing(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))


def _same_run(a: Path, b: Path) -> None:
    """``a`` holds what a solo run ``b`` of the same config holds: files, config, the log's
    numbers and the final weights."""
    assert _listing(a) == _listing(b)
    assert (a / store.CONFIG).read_text() == (b / store.CONFIG).read_text()
    first, second = torch.load(a / store.FINAL), torch.load(b / store.FINAL)
    assert first["config"] == second["config"]
    for key, value in first["generator"].items():
        assert torch.equal(value, second["generator"][key]), key
    numbers = [line.rsplit(",", 3)[0] for line in (a / store.LOG).read_text().splitlines()]
    solo = [line.rsplit(",", 3)[0] for line in (b / store.LOG).read_text().splitlines()]
    assert numbers == solo


def _refused(argv: list[str], run_dir: Path, holder_pid: int, capsys) -> None:
    """`ganstudy <argv>` in this process (a second process beside the holder) is refused."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "run directory in use" in lines[0], lines
    assert str(run_dir) in lines[0] and f"PID {holder_pid}" in lines[0]
    assert socket.gethostname() in lines[0]


@pytest.mark.slow(seconds=30)
def test_a_second_training_of_a_directory_in_use_is_refused(tmp_path, capsys):
    cfg_a = tmp_path / "a.yaml"
    cfg_a.write_text(ring_config(steps=100).to_yaml())
    run_dir = tmp_path / "run"
    first = _start_and_pause(train_command(cfg_a, run_dir), run_dir)
    try:
        before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
        other = train_command(cfg_a, run_dir, "--set", "train.lr_d=0.001")
        _refused(other[3:], run_dir, first.pid, capsys)
        assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
    finally:
        _resume(first)
    _solo(train_command(cfg_a, tmp_path / "solo"))
    _same_run(run_dir, tmp_path / "solo")


@pytest.mark.slow(seconds=30)
def test_evaluation_of_a_run_being_trained_is_refused(tmp_path, capsys):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(ring_config(steps=100).to_yaml())
    run_dir = tmp_path / "run"
    first = _start_and_pause(train_command(cfg, run_dir), run_dir)
    try:
        _refused(["evaluate", "--run", str(run_dir), "--no-mlflow"], run_dir, first.pid, capsys)
        assert not (run_dir / store.EVAL).exists()
    finally:
        _resume(first)


@pytest.mark.slow(seconds=30)
def test_an_ensemble_overlapping_a_solo_run_in_use_is_refused_and_creates_nothing(tmp_path, capsys):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(ring_config(steps=100).to_yaml())
    pattern = str(tmp_path / "runs" / "seed{seed}")
    solo_dir = tmp_path / "runs" / "seed1"
    first = _start_and_pause(train_command(cfg, solo_dir, "--set", "seed=1"), solo_dir)
    try:
        ensemble = train_command(cfg, Path(pattern), "--seeds", "0-2")
        _refused(ensemble[3:], solo_dir, first.pid, capsys)
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed1"]
    finally:
        _resume(first)
    _solo(train_command(cfg, tmp_path / "solo", "--set", "seed=1"))
    _same_run(solo_dir, tmp_path / "solo")


@pytest.mark.slow(seconds=30)
def test_two_trainings_started_together_one_trains_the_other_is_refused(tmp_path):
    """No pause: whichever takes the lock first trains; the other is refused while it runs, or
    (had it come after the end) by the finished run's different config."""
    cfg = tmp_path / "a.yaml"
    cfg.write_text(ring_config(steps=100).to_yaml())
    run_dir = tmp_path / "run"
    commands = [
        train_command(cfg, run_dir),
        train_command(cfg, run_dir, "--set", "train.lr_d=0.001"),
    ]
    procs = [subprocess.Popen(c, stderr=subprocess.PIPE, text=True, env=_env()) for c in commands]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], errors
    winner = codes.index(0)
    assert errors[1 - winner].strip().count("\n") == 0, errors[1 - winner]
    lr_d = 0.001 if winner == 1 else ring_config().train.lr_d
    assert torch.load(run_dir / store.FINAL)["config"]["train"]["lr_d"] == lr_d
    extra = ["--set", "train.lr_d=0.001"] if winner == 1 else []
    _solo(train_command(cfg, tmp_path / "solo", *extra))
    _same_run(run_dir, tmp_path / "solo")


# -- the lock itself, in one process ----------------------------------------------------------


def test_a_held_directory_is_refused_with_its_holder_and_released_after(tmp_path):
    run_dir = tmp_path / "run"
    refused = pytest.raises(store.RunDirBusy, match=f"training by PID {os.getpid()}")
    with store.writing([run_dir], "training"), refused, store.writing([run_dir], "evaluation"):
        pass
    with store.writing([run_dir], "evaluation"):
        assert _holder(run_dir)["purpose"] == "evaluation"


def test_a_refused_ensemble_removes_the_directories_it_created(tmp_path):
    busy = tmp_path / "runs" / "seed1"
    with store.writing([busy], "training"):
        with (
            pytest.raises(store.RunDirBusy),
            store.writing([tmp_path / "runs" / f"seed{s}" for s in range(3)], "training"),
        ):
            pass
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed1"]


def test_evaluation_does_not_create_a_missing_directory(tmp_path):
    with store.writing([tmp_path / "absent"], "evaluation", create=False):
        pass
    assert not (tmp_path / "absent").exists()


def test_the_exclusive_file_lock_where_flock_is_not_supported(tmp_path, monkeypatch):
    def no_flock(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(dirlock.fcntl, "flock", no_flock)
    run_dir = tmp_path / "run"
    with store.writing([run_dir], "training"):
        assert _holder(run_dir)["pid"] == os.getpid()
        with (
            pytest.raises(store.RunDirBusy, match="training by PID"),
            store.writing([run_dir], "evaluation"),
        ):
            pass
    assert not (run_dir / store.WRITER_LOCK).exists()  # removed on release


def test_an_exclusive_file_lock_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSTUDY_RUN_LOCK", "file")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "purpose": "training",
              "since": "then"}  # fmt: skip
    (run_dir / store.WRITER_LOCK).write_text(json.dumps(record))
    with store.writing([run_dir], "training"):
        assert _holder(run_dir)["pid"] == os.getpid()
    # Another host's lock cannot be checked from here: refused, for a person to remove.
    (run_dir / store.WRITER_LOCK).write_text(json.dumps({**record, "host": "elsewhere"}))
    with (
        pytest.raises(store.RunDirBusy, match="on elsewhere"),
        store.writing([run_dir], "training"),
    ):
        pass


def test_an_unknown_lock_kind_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSTUDY_RUN_LOCK", "nfs")
    with (
        pytest.raises(ConfigError, match="GANSTUDY_RUN_LOCK='nfs'.*allowed: flock, file"),
        store.writing([tmp_path / "run"], "training"),
    ):
        pass
    assert not (tmp_path / "run").exists()

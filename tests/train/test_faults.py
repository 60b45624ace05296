"""Faults a long study meets: a stop signal checkpoints at once, a corrupt checkpoint falls back,
a full disk is named, a killed run is shown as interrupted."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import env_without_tracking_uri
from helpers import ring_config

from ganstudy import atomic, cli, store
from ganstudy import checkpoint as ckpt
from ganstudy.aggregate import summary as aggregate
from ganstudy.errors import StorageError
from ganstudy.train.signals import EXIT_INTERRUPTED
from ganstudy.train.trainer import train

STEPS = 400


def _config(tmp_path: Path, steps: int = STEPS, **train_settings) -> Path:
    cfg = ring_config(steps=steps, **{"checkpoint_every": 500, "log_every": 50, **train_settings})
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    return path


def _train(config: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ganstudy", "train", "--config", str(config), "--out", out]
    return subprocess.run(
        [*command, "--quiet", *extra],
        capture_output=True,
        text=True,
        env=env_without_tracking_uri() | {"OMP_NUM_THREADS": "1"},
        timeout=600,
    )


def _stop_midway(config: Path, out: str, first_dir: Path, *extra: str, sig=signal.SIGTERM):
    """Start training, send ``sig`` once it is past its first log row and before its first
    checkpoint (step 500), and return (exit code, stderr)."""
    command = [sys.executable, "-m", "ganstudy", "train", "--config", str(config), "--out", out]
    proc = subprocess.Popen(
        [*command, "--quiet", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env=env_without_tracking_uri() | {"OMP_NUM_THREADS": "1"},
    )
    log = first_dir / store.LOG
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:  # header + 2 rows
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _final_states(run_dir: Path) -> dict:
    state = ckpt.load(run_dir / store.FINAL)
    return {"generator": state["generator"], "discriminator": state["discriminator"]}


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    sa, sb = _final_states(a), _final_states(b)
    for net in sa:
        for name in sa[net]:
            assert torch.equal(sa[net][name], sb[net][name]), (net, name)


@pytest.mark.parametrize("seeds", [None, "0-1"], ids=["solo", "ensemble"])
@pytest.mark.slow(seconds=28)
def test_sigterm_checkpoints_the_current_step_and_the_rerun_is_bitwise_equal(tmp_path, seeds):
    config = _config(tmp_path)
    extra = ("--seeds", seeds) if seeds else ()
    pattern = "{seed}" if seeds else "0"
    members = [0, 1] if seeds else [0]

    code, err = _stop_midway(
        config, str(tmp_path / f"stopped{pattern}"), tmp_path / "stopped0", *extra
    )
    assert code == EXIT_INTERRUPTED, err
    assert "SIGTERM received" in err and "Traceback" not in err
    for seed in members:
        run = tmp_path / f"stopped{seed}"
        metrics = json.loads((run / store.METRICS).read_text())
        assert metrics["status"] == "interrupted" and metrics["signal"] == "SIGTERM"
        step = metrics["interrupted_step"]
        assert 0 < step < 500 and metrics["steps"] == step
        assert ckpt.available_steps(run) == [step]  # the checkpoint of the very step it stopped at
        assert ckpt.load(ckpt.checkpoint_path(run, step))["step"] == step
        assert not (run / store.FINAL).exists()

    assert _train(config, str(tmp_path / f"stopped{pattern}"), *extra).returncode == 0
    assert _train(config, str(tmp_path / f"straight{pattern}"), *extra).returncode == 0
    for seed in members:
        resumed = json.loads((tmp_path / f"stopped{seed}" / store.METRICS).read_text())
        assert resumed["status"] == "completed" and resumed["steps"] == STEPS
        _assert_bitwise_equal(tmp_path / f"stopped{seed}", tmp_path / f"straight{seed}")


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    cfg = ring_config(steps=300, checkpoint_every=100, log_every=50)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(cfg, [0], [straight], progress=False)
    short = ring_config(steps=250, checkpoint_every=100, log_every=50, keep_checkpoints=True)
    train(short, [0], [broken], progress=False)  # leaves checkpoints at 200 and 250
    (broken / store.FINAL).unlink()
    (broken / store.CONFIG).write_text(cfg.to_yaml())
    newest = ckpt.checkpoint_path(broken, 250)
    newest.write_bytes(newest.read_bytes()[:1000])  # as an interrupted copy leaves it

    (metrics,) = train(cfg, [0], [broken], progress=False)
    assert metrics["status"] == "completed"
    assert (broken / store.CHECKPOINTS / "step_00000250.pt.corrupt").is_file()
    _assert_bitwise_equal(straight, broken)


def _unfinished_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run trained to the end, then made to look unfinished (no final.pt, no metrics.json):
    the next `ganstudy train` resumes from its periodic checkpoints (steps 200 and 300)."""
    config = _config(tmp_path, steps=300, checkpoint_every=100, keep_checkpoints=True)
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 0
    (run / store.FINAL).unlink()
    (run / store.METRICS).unlink()
    return config, run


def test_when_no_checkpoint_loads_the_error_names_every_file(tmp_path, capsys):
    config, run = _unfinished_run(tmp_path)
    steps = ckpt.available_steps(run)
    assert len(steps) == 2
    ckpt.checkpoint_path(run, steps[0]).write_bytes(b"not a checkpoint")
    ckpt.checksum_path(ckpt.checkpoint_path(run, steps[0])).unlink()  # as an older run has none
    damaged = bytearray(ckpt.checkpoint_path(run, steps[1]).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte: only the recorded checksum sees it
    ckpt.checkpoint_path(run, steps[1]).write_bytes(bytes(damaged))
    capsys.readouterr()

    assert cli.main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint error: no checkpoint of this run can be used" in err
    assert f"step_{steps[0]:08d}.pt is not a readable checkpoint" in err
    assert f"step_{steps[1]:08d}.pt is corrupt: its sha256" in err
    assert "Traceback" not in err
    kept = sorted(p.name for p in (run / store.CHECKPOINTS).iterdir())
    assert f"step_{steps[0]:08d}.pt.corrupt" in kept and f"step_{steps[1]:08d}.pt.corrupt" in kept


def test_a_full_disk_is_named_and_the_earlier_checkpoint_survives(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, steps=300, checkpoint_every=100)
    run = tmp_path / "run"
    real_write_bytes = Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(".step_00000200.pt.tmp"):
            real_write_bytes(self, data[: len(data) // 3])  # part of it fits, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert cli.main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "storage error: cannot write" in err and "step_00000200.pt" in err
    assert "No space left on device" in err and "the write needs" in err and "free on" in err
    folder = run / store.CHECKPOINTS
    assert sorted(p.name for p in folder.iterdir()) == [
        "step_00000100.pt",
        "step_00000100.pt.sha256",
    ]
    assert ckpt.load(folder / "step_00000100.pt")["step"] == 100
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_save_torch_names_a_full_disk_that_torch_reports_as_a_runtime_error(tmp_path, monkeypatch):
    def torch_full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", torch_full_disk)
    monkeypatch.setattr(atomic, "torch_bytes", lambda obj: b"x" * 5000)
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 100)
    with pytest.raises(StorageError, match="No space left.*the write needs 5,000 bytes.*100 bytes"):
        atomic.save_torch({"x": 1}, tmp_path / "prepared.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_run_is_shown_as_interrupted(tmp_path):
    config = _config(tmp_path)
    results = tmp_path / "results"
    key = store.RunKey("ring8", "mlp2d", "lsgan", True, True, 0)
    run = results / key.run_dir
    code, _ = _stop_midway(config, str(run), run, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL
    metrics = json.loads((run / store.METRICS).read_text())
    assert metrics["status"] == "running"  # what a killed process leaves behind
    (row,) = aggregate.collect(results).to_dict("records")
    assert row["state"] == "interrupted"
    assert "no longer exists" in row["note"]


def test_an_interrupted_run_is_counted_as_interrupted(tmp_path):
    config = _config(tmp_path)
    results = tmp_path / "results"
    key = store.RunKey("ring8", "mlp2d", "lsgan", True, True, 0)
    run = results / key.run_dir
    code, _ = _stop_midway(config, str(run), run, sig=signal.SIGUSR1)
    assert code == EXIT_INTERRUPTED
    (row,) = aggregate.collect(results).to_dict("records")
    assert row["state"] == "interrupted" and "SIGUSR1" in row["note"]
    assert yaml.safe_load((run / store.CONFIG).read_text())["train"]["steps"] == STEPS


def test_a_checkpoint_of_another_random_number_scheme_is_refused_not_moved(tmp_path, capsys):
    # e.g. one written before the numbers were drawn ahead in chunks: resuming it could not
    # continue its trajectory, so the run says so and leaves the file where it is.
    config, run = _unfinished_run(tmp_path)
    for step in ckpt.available_steps(run):
        path = ckpt.checkpoint_path(run, step)
        state = ckpt.load(path)
        del state["rng"]["scheme"]
        ckpt.atomic_save(state, path)
    capsys.readouterr()
    assert cli.main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "drew its random numbers another way (scheme 'per step', this one: 'chunks-64')" in err
    assert "Traceback" not in err
    assert not list((run / store.CHECKPOINTS).glob("*.corrupt"))

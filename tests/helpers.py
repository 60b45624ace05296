"""Small builders shared by the tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch

from ganstudy import config, store


def write_fake_prepared(
    data_root: Path, name: str, n: int, shape: tuple[int, ...], seed: int = 0
) -> None:
    """A prepared split of random uint8 images, for tests that need image data but not real data."""
    path = store.DataRoot(data_root).prepared_split(name, "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    torch.save({"images": images, "labels": labels}, path)


def ring_config(steps: int = 200, **train) -> config.RunConfig:
    data = {
        "dataset": {"name": "ring8"},
        "arch": {"name": "mlp2d", "z_dim": 64},
        "loss": {"name": "lsgan"},
        "train": {
            "steps": steps,
            "batch_size": 64,
            "log_every": 25,
            "checkpoint_every": 50,
            "sample_every": 1000,
            **train,
        },
        "tracking": {"enabled": False},
    }
    return config.from_dict(data)


def train_command(cfg_path: Path, out: Path, *extra: str) -> list[str]:
    """The `ganstudy train` command line of a run, for tests that start training processes."""
    return [sys.executable, "-m", "ganstudy.cli", "train", "--config", str(cfg_path),
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_and_finish(cfg: config.RunConfig, tmp_path: Path, env: dict, rows: int = 3) -> tuple:
    """Train ``cfg`` in a process stopped by SIGTERM once its log has ``rows`` lines, resume it,
    and train it again straight through; returns (stopped, straight) run directories and the
    interrupted step. The stopped process must exit with the interrupted code."""
    import json
    import signal
    import subprocess
    import time

    from ganstudy import store
    from ganstudy.train.signals import EXIT_INTERRUPTED

    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    proc = subprocess.Popen(
        train_command(path, stopped), stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 300
    log = stopped / store.LOG
    while time.monotonic() < deadline and not (
        log.is_file() and len(log.read_text().splitlines()) >= rows
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, err
    step = json.loads((stopped / store.METRICS).read_text())["interrupted_step"]
    for out in (stopped, straight):
        done = subprocess.run(
            train_command(path, out), capture_output=True, text=True, env=env, timeout=600
        )
        assert done.returncode == 0, done.stderr
    return stopped, straight, step

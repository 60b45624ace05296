"""Small builders shared by the tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch

from ganstudy import config


def write_fake_prepared(
    data_root: Path, name: str, n: int, shape: tuple[int, ...], seed: int = 0
) -> None:
    """A prepared split of random uint8 images, for tests that need image data but not real data."""
    folder = Path(data_root) / "prepared" / name
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    torch.save({"images": images, "labels": labels}, folder / "train.pt")


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

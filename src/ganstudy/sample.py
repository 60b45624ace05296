"""Draw samples from a trained run: ``ganstudy sample``.

Generators are sampled as they were trained, with batch statistics in batch norm (batches of the
run's training batch size), and their running statistics are left untouched.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ganstudy import checkpoint as ckpt
from ganstudy import config as config_mod
from ganstudy.data import DATASETS
from ganstudy.nets import build_pair
from ganstudy.train import draw_noise, sampling, save_samples


def checkpoint_file(path: str | Path) -> Path:
    """A run directory's final checkpoint (else its newest periodic one), or the file itself."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "final.pt").is_file():
        return path / "final.pt"
    steps = ckpt.available_steps(path)
    if steps:
        return ckpt.checkpoint_path(path, steps[-1])
    raise FileNotFoundError(f"{path} holds no checkpoint (final.pt or checkpoints/step_*.pt)")


def load_generator(path: str | Path, device="cpu"):
    """(generator, config) of a run directory or checkpoint file."""
    state = ckpt.load(checkpoint_file(path))
    cfg = config_mod.from_dict(state["config"])
    generator, _ = build_pair(cfg, 1, DATASETS[cfg.dataset.name].shape)
    generator.load_state_dict(state["generator"])
    return generator.to(device).train(), cfg


def generate(
    generator, cfg, n: int, seed: int = 0, device="cpu", batch_size: int | None = None
) -> Tensor:
    """n samples in [-1, 1] on the CPU: (n, C, H, W) images or (n, 2) points."""
    batch = batch_size or cfg.train.batch_size
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    with sampling(generator):
        for start in range(0, n, batch):
            z = torch.empty(1, batch, cfg.arch.z_dim, device=device)
            draw_noise(z, [gen], cfg.arch.z_dist)
            out.append(generator(z)[0, : n - start].float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def _cli(args) -> int:
    device = args.device
    generator, cfg = load_generator(args.run, device)
    samples = generate(generator, cfg, args.n, seed=args.seed, device=device)
    out = Path(args.out)
    if out.suffix == ".pt":
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples, out)
    else:
        save_samples(samples, DATASETS[cfg.dataset.name], out)
    print(f"{args.n} samples of {args.run} -> {out}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("--run", required=True, help="run directory or checkpoint file")
    p.add_argument("--out", required=True, help="PNG (grid or 2D scatter) or .pt (raw tensor)")
    p.add_argument("-n", "--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=_cli)

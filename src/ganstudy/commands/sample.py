"""``ganstudy sample``: draw samples from a trained run into a PNG or a tensor file."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cli(args) -> int:
    import torch

    from ganstudy.data import registry
    from ganstudy.sample import generate, load_generator, save_samples

    device = args.device
    generator, cfg = load_generator(args.run, device)
    samples = generate(generator, cfg, args.n, seed=args.seed, device=device)
    out = Path(args.out)
    if out.suffix == ".pt":
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples, out)
    else:
        save_samples(samples, registry.dataset(cfg.dataset.name), out)
    print(f"{args.n} samples of {args.run} -> {out}")
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory or checkpoint file")
    p.add_argument("--out", required=True, help="PNG (grid or 2D scatter) or .pt (raw tensor)")
    p.add_argument("-n", "--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=_cli)

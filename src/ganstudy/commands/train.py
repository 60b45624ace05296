"""``ganstudy train``: one run, or the seeds of one variant as one batched ensemble."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ganstudy import config as config_mod
from ganstudy.errors import ConfigError
from ganstudy.train.signals import EXIT_INTERRUPTED


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def _cli(args) -> int:
    from ganstudy.train.trainer import train

    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config} does not exist")
    data = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    cfg = config_mod.from_dict(config_mod.override(data or {}, args.set or []))
    seeds = _parse_seeds(args.seeds) if args.seeds else [cfg.seed]
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise ConfigError(
            f"--out {args.out!r}: with several seeds, --out must contain '{{seed}}' "
            "(one run directory per seed)"
        )
    run_dirs = [Path(args.out.format(seed=s)) for s in seeds]
    results = train(cfg, seeds, run_dirs, device=args.device, progress=not args.quiet)
    for seed, res, run_dir in zip(seeds, results, run_dirs):
        print(f"seed {seed}: {res['status']} after {res['steps']} steps -> {run_dir}")
    if any(res["status"] == "interrupted" for res in results):
        return EXIT_INTERRUPTED
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train a GAN run described by a YAML config; resumes from DIR's last checkpoint."
    )
    p.add_argument("--config", help="run config (YAML); every key has a default")
    p.add_argument(
        "--out", required=True, help="run directory; with several seeds a pattern with {seed}"
    )
    p.add_argument(
        "--seeds",
        help="train these seeds as one ensemble, e.g. '0-15' or '0,3,7' (default: the config's seed)",
    )
    p.add_argument(
        "--set", nargs="*", metavar="KEY=VALUE", help="override config keys, e.g. train.steps=500"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="override train.device")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cli)

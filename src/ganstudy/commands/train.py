"""``ganstudy train``: one run, or the seeds of one variant as one batched ensemble."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganstudy import config as config_mod
from ganstudy import store
from ganstudy.errors import ConfigError
from ganstudy.train.signals import EXIT_INTERRUPTED

SEEDS_ALLOWED = (
    "seeds >= 0 as N, LO-HI (LO <= HI) or a comma-separated list of them, e.g. 0-15 or 0,3,7"
)


def _parse_seeds(text: str) -> list[int]:
    """``--seeds``: '0-15', '0,3,7' or a mix; each seed once."""
    seeds: list[int] = []
    seen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(
                f"--seeds {text!r}: {part!r} is not a seed or a range; allowed: {SEEDS_ALLOWED}"
            ) from None
        if first < 0:
            raise ConfigError(f"--seeds {text!r}: {part!r} is negative; allowed: {SEEDS_ALLOWED}")
        if last < first:
            raise ConfigError(
                f"--seeds {text!r}: the range {part!r} runs backwards; allowed: {SEEDS_ALLOWED}"
            )
        chunk = range(first, last + 1)
        if not seen.isdisjoint(chunk):
            repeated = min(seen.intersection(chunk))
            raise ConfigError(f"--seeds {text!r}: seed {repeated} is given twice; allowed: "
                              "each seed once")  # fmt: skip
        seen.update(chunk)
        seeds.extend(chunk)
    return seeds


def _check_memory(cfg, members: int, device: str | None) -> None:
    """Refuse, before any work, a job whose members cannot fit in the memory of the device
    they would train on: host memory on the CPU (no CUDA context), a GPU's free memory on
    CUDA, against the estimate of ``ganstudy.study.memory``, naming the most members that fit."""
    import dataclasses

    from ganstudy import numerics
    from ganstudy.study import memory

    where = numerics.resolve_device(device or cfg.train.device, key="--device").type
    if where == "cuda":
        import torch

        free = torch.cuda.mem_get_info()[0]
    else:
        free = memory.host_free_bytes()
    run_cfg = cfg.to_dict()

    def job(k: int) -> memory.JobMemory:
        estimate = memory.training_memory(run_cfg, k)
        return estimate if where == "cuda" else dataclasses.replace(estimate, context=0)

    usable = free * memory.HEADROOM
    needed = job(members)
    if needed.total <= usable:
        return
    low, high = 0, members - 1  # the estimate grows with the members: a binary search
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if job(mid).total <= usable else (low, mid - 1)
    gib = 2**30
    allowed = (
        f"at most {low} seeds in one job (about {job(low).total / gib:,.2f} GiB): train the "
        "others in further jobs"
        if low
        else "not even one seed fits: a smaller batch_size, width or training set"
    )
    option = "--seeds" if members > 1 else "the run"
    raise ConfigError(
        f"{option}: {members} seeds in one job need about {needed.describe()} of "
        f"{'GPU memory' if where == 'cuda' else 'memory'} (estimated, ganstudy.study.memory), "
        f"but {free / gib:,.2f} GiB is free, {int(memory.HEADROOM * 100)}% of it usable "
        f"({usable / gib:,.2f} GiB); allowed: {allowed}"
    )


def _read_config(path: str) -> dict:
    from ganstudy import yamlfile

    return yamlfile.load_mapping(path, "config file")


def _cli(args) -> int:
    from ganstudy.train.trainer import train

    data = _read_config(args.config) if args.config else {}
    seeds = _parse_seeds(args.seeds) if args.seeds else None
    assignments = [item for group in args.set or [] for item in group]
    cfg = config_mod.from_dict(config_mod.override(data, assignments))
    seeds = seeds or [cfg.seed]
    if len(seeds) > 1 and "{seed}" not in args.out:
        raise ConfigError(
            f"--out {args.out!r}: with several seeds, --out must contain '{{seed}}' "
            "(one run directory per seed)"
        )
    run_dirs = [Path(args.out.format(seed=s)) for s in seeds]
    for run_dir in run_dirs:
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir}: a file of that name exists; allowed: a run "
                              "directory (new, or a run's to resume)")  # fmt: skip
    _check_memory(cfg, len(seeds), args.device)
    results = train(cfg, seeds, run_dirs, device=args.device, progress=not args.quiet)
    for seed, res, run_dir in zip(seeds, results, run_dirs):
        print(f"seed {seed}: {res['status']} after {res['steps']} steps -> {run_dir}")
    if any(res["status"] == store.Status.INTERRUPTED for res in results):
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
        "--set",
        nargs="+",
        action="append",
        metavar="KEY=VALUE",
        help="override config keys (values are YAML), e.g. --set train.steps=500 seed=3; may "
        "be repeated; each key once",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="override train.device")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cli)

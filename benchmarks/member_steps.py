"""Member-steps per second against the ensemble's members K, eager against the whole step as one
CUDA graph (``train.compile: cudagraph``), with the GPU's busy fraction (nvidia-smi's
utilization.gpu: the share of time a kernel ran) during the timed steps.

Each setting trains ``--warm-up`` steps first (the graph's warm-up and capture, cuDNN's
autotuning), then times ``--steps`` training steps of the step function itself (no log rows,
checkpoints or samples); member-steps/s = K x steps / seconds. ``speed-up vs K=1`` is that
rate over the same mode's K = 1 rate: how much faster K seeds train as one ensemble than one
seed alone. On the CPU the graph mode is not run (it needs CUDA).

    python benchmarks/member_steps.py --device cuda                     # the GPU measurement
    python benchmarks/member_steps.py --members 1 2 --steps 2 --warm-up 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import resolve_variant, table, variant_config
from ensemble_throughput import GpuBusy

from ganstudy import config
from ganstudy.train.trainer import Trainer

MODES = ("none", "cudagraph")


def timed(cfg, members: int, work: Path, warm_up: int, steps: int):
    dirs = [work / f"s{k}" for k in range(members)]
    trainer = Trainer(cfg, list(range(members)), dirs, progress=False)
    frozen = torch.zeros(members, dtype=torch.bool, device=trainer.device)
    for step in range(warm_up):
        _, _, frozen = trainer.train_step(step, frozen, False)
    cuda = trainer.device.type == "cuda"
    busy = GpuBusy(trainer.device)
    if cuda:
        torch.cuda.synchronize()
    with busy:
        start = time.perf_counter()
        for step in range(warm_up, warm_up + steps):
            _, _, frozen = trainer.train_step(step, frozen, False)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    del trainer
    if cuda:
        torch.cuda.empty_cache()
    busy_mean = sum(busy.samples) / len(busy.samples) if busy.samples else None
    return members * steps / seconds, busy_mean


def rows(variants, members, device, batch_size, steps, warm_up, modes=MODES) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="ganstudy-member-steps-"))
    out = []
    try:
        for variant in [resolve_variant(v) for v in variants]:
            for mode in modes:
                if mode == "cudagraph" and device != "cuda":
                    continue
                base = None
                for K in members:
                    cfg = variant_config(
                        variant, work / "data", warm_up + steps + 1, batch_size, device
                    )
                    data = cfg.to_dict()
                    data["train"]["compile"] = mode
                    cfg = config.from_dict(data)
                    run_dir = work / f"{variant.replace('/', '-')}-{mode}-{K}"
                    try:
                        rate, busy = timed(cfg, K, run_dir, warm_up, steps)
                    except torch.OutOfMemoryError:
                        out.append({"variant": variant, "mode": mode, "K": K,
                                    "member_steps_per_s": None, "note": "out of memory"})  # fmt: skip
                        torch.cuda.empty_cache()
                        continue
                    base = base or rate
                    out.append({
                        "variant": variant, "mode": mode, "K": K, "batch": batch_size,
                        "member_steps_per_s": round(rate, 1),
                        "speedup_vs_K1": round(rate / base, 2),
                        "gpu_busy_percent": None if busy is None else round(busy),
                    })  # fmt: skip
                    shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def render(found: list[dict]) -> str:
    keys = ["variant", "mode", "K", "member_steps_per_s", "speedup_vs_K1", "gpu_busy_percent"]
    return table(keys, [[r.get(k, r.get("note")) for k in keys] for r in found])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="*", default=["mlp2d", "dcgan28"])
    parser.add_argument("--members", nargs="*", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warm-up", type=int, default=10)
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    found = rows(
        args.variants, args.members, args.device, args.batch_size, args.steps, args.warm_up,
        args.modes,
    )  # fmt: skip
    print(render(found))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()

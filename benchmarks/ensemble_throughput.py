"""Multi-seed ensembles against solo runs: member-steps per second, side by side in one process.

A solo run and a K-member ensemble of the same variant are trained alternately for the same
number of steps; ``ratio`` is the ensemble's member-steps/s over the solo run's steps/s, i.e.
how much faster K seeds finish as one ensemble than as K runs one after another. On a GPU the
GPU's busy fraction during each run is sampled with nvidia-smi.

    python benchmarks/ensemble_throughput.py                       # CPU: mlp2d/ring8, K = 16
    python benchmarks/ensemble_throughput.py --device cuda --members 32 \
        --variants mlp2d/ring8 dcgan28/fashion_mnist               # the GPU measurement
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from _common import median_time, resolve_variant, table, variant_config

from ganstudy.train.trainer import Trainer


class GpuBusy:
    """Mean utilization.gpu reported by nvidia-smi while the block runs (None without one)."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []

    def __enter__(self):
        if self.enabled:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-i",
                    "0",
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            self._stop.wait(0.2)

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.0f}%" if self.samples else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=["mlp2d/ring8"])
    args = parser.parse_args()
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="ganstudy-ens-"))
    rows = []
    try:
        for variant in [resolve_variant(v) for v in args.variants]:
            cfg = variant_config(variant, work / "data", args.steps, args.batch_size, args.device)
            seeds = list(range(args.members))
            counter = {"n": 0}

            def run(member_seeds):
                counter["n"] += 1
                run_root = work / variant.replace("/", "-") / f"r{counter['n']}"
                dirs = [run_root / f"s{s}" for s in member_seeds]
                Trainer(cfg, member_seeds, dirs, device=device, progress=False).run()

            run([0])  # warm-up
            run(seeds)
            solo_t, ens_t = [], []
            busy_solo, busy_ens = GpuBusy(device), GpuBusy(device)
            for _ in range(args.repeats):
                with busy_solo:
                    solo_t.append(median_time(lambda: run([0]), 1))
                with busy_ens:
                    ens_t.append(median_time(lambda: run(seeds), 1))
            solo_s, ens_s = sorted(solo_t)[len(solo_t) // 2], sorted(ens_t)[len(ens_t) // 2]
            solo_rate = args.steps / solo_s
            ens_rate = args.steps * args.members / ens_s
            rows.append(
                [
                    variant,
                    args.members,
                    str(device),
                    args.batch_size,
                    f"{solo_rate:.1f}",
                    f"{ens_rate:.1f}",
                    f"{ens_rate / solo_rate:.2f}",
                    busy_solo.mean,
                    busy_ens.mean,
                ]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            [
                "variant",
                "K",
                "device",
                "batch",
                "solo steps/s",
                "ensemble member-steps/s",
                "ratio",
                "GPU busy solo",
                "GPU busy ensemble",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()

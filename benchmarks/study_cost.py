"""Training step time of every (arch, dataset, batch size) of study configs, for the cost estimate.

For each distinct (arch, dataset, batch size, width) the study configs train, a solo run (K = 1) of that
variant (with the block's BN setting that has most batch norm) is built with the training engine
and its step is timed after a warm-up, ``--repeats`` times; the median seconds per generator step
is what ``ganstudy.study.cost.STEP_SECONDS`` records for this machine (one thread,
as a workflow job with ``threads.train: 1``). Image datasets use random
uint8 images in the prepared layout (the step time does not depend on the pixels).

Side by side in the same process, the same variant's K-seed ensemble (``--members``) is timed too;
``ensemble ratio`` is the ensemble's member-steps/s over the solo run's steps/s, i.e. how much
faster ``seeds_per_job = K`` trains K seeds than K solo jobs one after another.

    python benchmarks/study_cost.py [config/config.yaml config/quick.yaml] [--members 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import table

from ganstudy import config as run_config
from ganstudy.data.registry import DATASETS
from ganstudy.study import files as study_files
from ganstudy.study import grid as study
from ganstudy.study.schema import default_schema_path
from ganstudy.study.workflow import Study
from ganstudy.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import write_fake_prepared  # noqa: E402


def representatives(
    configs: list[str], blocks: list[str] | None = None
) -> dict[tuple[str, str, int, int], study.Variant]:
    """One variant per (arch, dataset, batch size, width), the one with the most batch norm."""
    reps: dict[tuple[str, str, int, int], study.Variant] = {}
    for path in configs:
        merged = study_files.load_configs([ROOT / "config" / "config.yaml", path])
        s = Study.from_config(merged, default_schema_path())
        for v in s.variants:
            if blocks and v.block not in blocks:
                continue
            key = (
                v.arch,
                v.dataset,
                v.run_config["train"]["batch_size"],
                v.run_config["arch"]["width"],
            )
            if key not in reps or (v.bn_g + v.bn_d) > (reps[key].bn_g + reps[key].bn_d):
                reps[key] = v
    return reps


def step_seconds(cfg, members: int, steps: int, warmup: int, workdir: Path) -> float:
    seeds = list(range(members))
    trainer = Trainer(cfg, seeds, [workdir / f"s{s}" for s in seeds], device="cpu", progress=False)
    frozen = torch.zeros(members, dtype=torch.bool)
    for i in range(warmup):
        _, _, frozen = trainer.train_step(i, frozen, False)
    start = time.perf_counter()
    for i in range(steps):
        _, _, frozen = trainer.train_step(warmup + i, frozen, False)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="*", default=["config/config.yaml", "config/quick.yaml"])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--only-block", nargs="+", metavar="BLOCK", help="time only the variants of these blocks"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, as a job with threads.train: 1"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, record = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for (arch, dataset, batch, width), v in sorted(
            representatives(args.configs, args.only_block).items()
        ):
            spec = DATASETS[dataset]
            if spec.kind == "image":
                write_fake_prepared(root / "data", dataset, max(4 * batch, 512), spec.shape)
            data = {
                **v.run_config,
                "dataset": {**v.run_config["dataset"], "data_root": str(root / "data")},
            }
            data["tracking"] = {"enabled": False}
            data["train"] = {**data["train"], "fid_every": 0}
            cfg = run_config.from_dict(data)
            solo, ensemble = [], []
            for r in range(args.repeats):
                # alternate the two so load changes on a shared machine hit both alike
                solo.append(step_seconds(cfg, 1, args.steps, args.warmup, root / f"a{r}"))
                ensemble.append(
                    step_seconds(cfg, args.members, args.steps, args.warmup, root / f"b{r}")
                )
            s, e = statistics.median(solo), statistics.median(ensemble)
            record[(arch, dataset, batch, width)] = s
            ratio = (args.members / e) / (1 / s)
            rows.append([arch, dataset, batch, width, v.bn_name, f"{s * 1000:.1f}", f"{1 / s:.1f}",
                         f"{ratio:.2f}"])  # fmt: skip
            print("  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}, K = {args.members}"
    )
    print(
        table(
            ["arch", "dataset", "batch", "width", "bn", "ms/step", "steps/s", "ensemble ratio"],
            rows,
        )
    )
    print("\nSTEP_SECONDS = {")
    for key, value in record.items():
        print(f"    {key!r}: {value:.5f},")
    print("}")


if __name__ == "__main__":
    main()

"""Expected training compute of a study, from step times measured on a CPU.

``STEP_SECONDS[(arch, dataset, batch_size, width)]`` is the median time of one generator step of
a solo run (K = 1, one thread, BN on) measured with ``benchmarks/study_cost.py`` on the project's
2-core reference CPU. A run of ``steps`` generator steps then costs ``steps x STEP_SECONDS`` CPU seconds;
an ensemble of K seeds costs about K times that on a CPU (the ratio the benchmark prints). Runs
set in epochs have ``ceil(epochs x floor(N / batch_size) / d_steps)`` steps for N training images.
A combination that was not measured is estimated from the same arch, dataset and width at the
nearest measured batch size, scaled linearly in the batch size; without any measurement it is
counted as unknown.

GPU time is not measured here: estimates for a GPU are this CPU time divided by an assumed
speed-up, and say so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ganstudy.data import registry
from ganstudy.errors import ConfigError

# Measured with benchmarks/study_cost.py on 2 CPU cores shared with other work (load average 0.3 to
# 3.6 during the runs), torch 2.15, one thread: the smaller median of two runs (3 and 2 repeats of
# 10 steps after 2 warm-up steps). Seconds per generator step of a solo run.
STEP_SECONDS: dict[tuple[str, str, int, int], float] = {
    ("dcgan28", "fashion_mnist", 64, 64): 0.2487,
    ("dcgan28", "stacked_mnist", 64, 64): 0.2449,
    ("dcgan28_small", "fashion_mnist", 64, 64): 0.0312,
    ("dcgan28_small", "stacked_mnist", 64, 64): 0.0354,
    ("dcgan64", "cat64", 32, 64): 0.5251,
    ("dcgan64", "cat_faces64", 32, 16): 0.0648,
    ("mlp2d", "grid25", 64, 64): 0.0069,
    ("mlp2d", "grid25", 256, 64): 0.0187,
    ("mlp2d", "ring8", 64, 64): 0.0070,
    ("mlp2d", "ring8", 256, 64): 0.0186,
    # The reproduction blocks' networks, measured the same way beside two training jobs (load
    # average 2.9: slower than on an idle machine).
    ("dcgan28_tiny", "stacked_mnist_100k", 64, 64): 0.0331,
    ("mlp2d_lrelu", "ring8", 128, 64): 0.0253,
    ("mlp2d_maxout", "ring8", 100, 64): 0.0402,
}

ASSUMED_GPU_SPEEDUPS = (10, 50)


def train_size(dataset: str, prepare_params: dict, data_root: str | Path | None = None) -> int:
    """Training images of a dataset: its prepared manifest if present, else the nominal size."""
    if data_root is not None:
        manifest = Path(data_root) / "prepared" / dataset / "manifest.json"
        if manifest.is_file():
            return int(json.loads(manifest.read_text())["splits"]["train"]["count"])
    size = registry.nominal_train_size(dataset, prepare_params)
    if size is None:
        raise ConfigError(f"dataset {dataset!r} has no training-set size: set train.steps")
    return size


def run_steps(run_config: dict, n_train: int | None) -> int:
    """Generator steps of one run: ``train.steps``, or ceil(epochs * floor(N / B) / d_steps)."""
    t = run_config["train"]
    if t["steps"] is not None:
        return int(t["steps"])
    return math.ceil(t["epochs"] * (n_train // t["batch_size"]) / t["d_steps"])


def step_seconds(arch: str, dataset: str, batch_size: int, width: int) -> float | None:
    """Measured seconds per step, or the nearest measured batch size scaled linearly."""
    if (arch, dataset, batch_size, width) in STEP_SECONDS:
        return STEP_SECONDS[(arch, dataset, batch_size, width)]
    same = [
        (b, s) for (a, d, b, w), s in STEP_SECONDS.items() if (a, d, w) == (arch, dataset, width)
    ]
    if not same:
        return None
    b, s = min(same, key=lambda item: abs(math.log(item[0] / batch_size)))
    return s * batch_size / b


@dataclass(frozen=True)
class VariantCost:
    block: str
    key: str
    runs: int
    jobs: int
    steps_per_run: int
    cpu_seconds: float | None  # all runs of the variant, None when not measured


def estimate(study, data_root: str | Path | None = None, skip=frozenset()) -> list[VariantCost]:
    """The cost of every variant of ``study``, leaving out the run dirs in ``skip``."""
    out = []
    for v in study.variants:
        seeds = [s for s in v.seeds if v.run_dir(s) not in skip]
        if not seeds:
            continue
        n_train = v.run_config["dataset"].get("n_train")
        if v.run_config["train"]["steps"] is None and n_train is None:
            n_train = train_size(v.dataset, study.prepare_params(v.dataset), data_root)
        steps = run_steps(v.run_config, n_train)
        per_step = step_seconds(
            v.arch, v.dataset, v.run_config["train"]["batch_size"], v.run_config["arch"]["width"]
        )
        cpu = None if per_step is None else per_step * steps * len(seeds)
        jobs = math.ceil(len(seeds) / v.seeds_per_job)
        out.append(VariantCost(v.block, v.key, len(seeds), jobs, steps, cpu))
    return out


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:,.2f}"


def table(costs: list[VariantCost]) -> str:
    """Per block and in total: runs, jobs, generator steps, CPU-hours and assumed GPU-hours."""
    blocks: dict[str, list[VariantCost]] = {}
    for c in costs:
        blocks.setdefault(c.block, []).append(c)
    header = ["block", "variants", "runs", "jobs", "steps", "CPU-h", "unmeasured variants"]
    rows = []
    for name, items in [*blocks.items(), ("total", costs)]:
        known = [c.cpu_seconds for c in items if c.cpu_seconds is not None]
        rows.append(
            [
                name,
                str(len(items)),
                str(sum(c.runs for c in items)),
                str(sum(c.jobs for c in items)),
                f"{sum(c.runs * c.steps_per_run for c in items):,}",
                _hours(sum(known)),
                str(sum(c.cpu_seconds is None for c in items)),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    total = sum(c.cpu_seconds for c in costs if c.cpu_seconds is not None)
    gpu = ", ".join(f"{_hours(total / s)} at {s}x" for s in ASSUMED_GPU_SPEEDUPS)
    lines.append(
        f"CPU-hours from step times measured on a 2-core CPU (ganstudy.study.cost); "
        f"GPU-hours, not measured, for an assumed GPU speed-up: {gpu}."
    )
    return "\n".join(lines)


def cpu_warning(costs: list[VariantCost], parallel_jobs: int) -> str:
    """The start-of-study warning when no GPU is used."""
    runs = sum(c.runs for c in costs)
    known = sum(c.cpu_seconds for c in costs if c.cpu_seconds is not None)
    unknown = sum(c.cpu_seconds is None for c in costs)
    parallel = max(1, min(parallel_jobs, sum(c.jobs for c in costs)))
    text = (
        f"No GPU: every training and evaluation job runs on the CPU. Training the {runs} runs "
        f"not yet trained takes about {_hours(known)} CPU-hours (from step times measured on a "
        f"2-core CPU), about {_hours(known / parallel)} h with {parallel} jobs at a time."
    )
    if unknown:
        text += f" {unknown} variant(s) have no measured step time and are not counted."
    return text

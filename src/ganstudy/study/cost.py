"""Expected training compute of a study, from step times measured on a CPU.

``STEP_SECONDS[(arch, dataset, batch_size, width)]`` is the median time of one generator step of
a solo run (K = 1, one thread, BN on) measured with ``benchmarks/study_cost.py`` on the project's
2-core reference CPU. A run of ``steps`` generator steps then costs ``steps x STEP_SECONDS`` CPU seconds;
an ensemble of K seeds costs about K times that on a CPU (the ratio the benchmark prints). Runs
set in epochs have ``ceil(epochs x floor(N / batch_size) / d_steps)`` steps for N training images.
A combination that was not measured is estimated from the same arch, dataset and width at the
nearest measured batch size, scaled linearly in the batch size; without any measurement it is
counted as unknown.

GPU time: ``GPU_STEP_SECONDS[(arch, dataset, batch_size, width, members)]`` is the time per
step of one training job of ``members`` seeds on one NVIDIA H200, measured with
``benchmarks/gpu_acceptance.py`` (the job's whole time over its 200 to 4,000 timed steps, so
set-up and its end-of-run writes are in it: an upper bound of the training loop's speed). A
variant's GPU time is that x its planned steps x its jobs; a job size not measured is bounded
from the same setting's measured jobs (:func:`gpu_step_seconds`), a setting not measured at
all is counted as unknown. Where no GPU time is known, an assumed speed-up over the CPU says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ganstudy import store
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

GPU_NAME = "NVIDIA H200"
# Measured with benchmarks/gpu_acceptance.py on one NVIDIA H200 (torch 2.11, CUDA 13.0, 16 CPU
# cores, nothing else running): seconds per step of a whole job of `members` seeds, timed for 1%
# of the block's steps (at least 200) after a one-step warm-up, so each value holds the job's
# start and end-of-run writes too (dcgan28 x8: 46.4 ms over 200 steps, 19.8 ms over 1,000).
GPU_STEP_SECONDS: dict[tuple[str, str, int, int, int], float] = {
    ("mlp2d", "ring8", 256, 64, 24): 0.02256,
    ("mlp2d", "grid25", 256, 64, 24): 0.02645,
    ("dcgan28", "fashion_mnist", 64, 64, 8): 0.04642,
    ("dcgan28_small", "fashion_mnist", 64, 64, 8): 0.01039,
    ("dcgan28", "stacked_mnist", 64, 64, 8): 0.01980,
    ("dcgan64", "cat64", 32, 64, 8): 0.03664,
    ("mlp2d_lrelu", "ring8", 128, 64, 50): 0.01068,
    ("dcgan28_tiny", "stacked_mnist_100k", 64, 64, 25): 0.01370,
    ("mlp2d_maxout", "ring8", 100, 64, 10): 0.00875,
    ("dcgan28", "fashion_mnist", 64, 64, 25): 0.15916,
}


def train_size(dataset: str, prepare_params: dict, data_root: str | Path | None = None) -> int:
    """Training images of a dataset: its prepared manifest's count if it is prepared under
    ``data_root``, else its nominal size."""
    if data_root is not None:
        count = store.DataRoot(data_root).prepared_count(dataset, "train")
        if count is not None:
            return count
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


def planned_steps(study, variant, data_root: str | Path | None = None) -> int:
    """Generator steps of one run of ``variant``: its fixed training set's size (mixtures with
    ``dataset.n_train``) or its dataset's, where the run is set in epochs."""
    n_train = variant.run_config["dataset"].get("n_train")
    if variant.run_config["train"]["steps"] is None and n_train is None:
        n_train = train_size(variant.dataset, study.prepare_params(variant.dataset), data_root)
    return run_steps(variant.run_config, n_train)


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


def gpu_step_seconds(
    arch: str, dataset: str, batch_size: int, width: int, members: int
) -> float | None:
    """Seconds per step of a job of ``members`` seeds on one H200: measured, else bounded from
    a measured job of the same setting: a job of fewer members takes at most the time of the
    nearest larger measured one; a job of more members the largest measured one's time scaled
    linearly in the members (batched members cost less than that)."""
    key = (arch, dataset, batch_size, width)
    if (*key, members) in GPU_STEP_SECONDS:
        return GPU_STEP_SECONDS[(*key, members)]
    measured = sorted((k[4], s) for k, s in GPU_STEP_SECONDS.items() if k[:4] == key)
    if not measured:
        return None
    larger = [s for m, s in measured if m >= members]
    if larger:
        return larger[0]
    m, s = measured[-1]
    return s * members / m


@dataclass(frozen=True)
class VariantCost:
    block: str
    key: str
    runs: int
    jobs: int
    steps_per_run: int
    cpu_seconds: float | None  # all runs of the variant, None when not measured
    gpu_seconds: float | None = None  # all its jobs, one after another on one H200; None: unknown


def estimate(study, data_root: str | Path | None = None, skip=frozenset()) -> list[VariantCost]:
    """The cost of every variant of ``study``, leaving out the run dirs in ``skip``."""
    out = []
    for v in study.variants:
        seeds = [s for s in v.seeds if v.run_dir(s) not in skip]
        if not seeds:
            continue
        steps = planned_steps(study, v, data_root)
        per_step = step_seconds(
            v.arch, v.dataset, v.run_config["train"]["batch_size"], v.run_config["arch"]["width"]
        )
        cpu = None if per_step is None else per_step * steps * len(seeds)
        jobs = math.ceil(len(seeds) / v.seeds_per_job)
        t, width = v.run_config["train"], v.run_config["arch"]["width"]
        gpu_step = gpu_step_seconds(v.arch, v.dataset, t["batch_size"], width, v.seeds_per_job)
        gpu = None if gpu_step is None else gpu_step * steps * jobs
        out.append(VariantCost(v.block, v.key, len(seeds), jobs, steps, cpu, gpu))
    return out


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:,.2f}"


def table(costs: list[VariantCost]) -> str:
    """Per block and in total: runs, jobs, generator steps, CPU-hours and assumed GPU-hours."""
    blocks: dict[str, list[VariantCost]] = {}
    for c in costs:
        blocks.setdefault(c.block, []).append(c)
    header = ["block", "variants", "runs", "jobs", "steps", "CPU-h", "H200-h",
              "unmeasured variants (CPU, GPU)"]  # fmt: skip
    rows = []
    for name, items in [*blocks.items(), ("total", costs)]:
        known = [c.cpu_seconds for c in items if c.cpu_seconds is not None]
        gpu = [c.gpu_seconds for c in items if c.gpu_seconds is not None]
        rows.append(
            [
                name,
                str(len(items)),
                str(sum(c.runs for c in items)),
                str(sum(c.jobs for c in items)),
                f"{sum(c.runs * c.steps_per_run for c in items):,}",
                _hours(sum(known)),
                _hours(sum(gpu)) if gpu else "-",
                f"{sum(c.cpu_seconds is None for c in items)}, "
                f"{sum(c.gpu_seconds is None for c in items)}",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    note = (
        "CPU-hours from step times measured on a 2-core CPU; H200-hours from whole training "
        f"jobs timed on one {GPU_NAME} (an upper bound; ganstudy.study.cost)."
    )
    unmeasured = [c for c in costs if c.gpu_seconds is None]
    if unmeasured:
        cpu = sum(c.cpu_seconds for c in unmeasured if c.cpu_seconds is not None)
        assumed = ", ".join(f"{_hours(cpu / s)} at {s}x" for s in ASSUMED_GPU_SPEEDUPS)
        note += (
            f" {len(unmeasured)} variant(s) have no GPU measurement: their GPU-hours, not "
            f"measured, for an assumed speed-up over the CPU: {assumed}."
        )
    lines.append(note)
    return "\n".join(lines)


def _parallel_jobs(costs: list[VariantCost], parallel_jobs: int) -> int:
    """CPU training jobs at a time: the slots, but no more than there are jobs."""
    return max(1, min(parallel_jobs, sum(c.jobs for c in costs)))


def cpu_warning(costs: list[VariantCost], parallel_jobs: int) -> str:
    """The start-of-study warning when no GPU is used."""
    runs = sum(c.runs for c in costs)
    known = sum(c.cpu_seconds for c in costs if c.cpu_seconds is not None)
    unknown = sum(c.cpu_seconds is None for c in costs)
    parallel = _parallel_jobs(costs, parallel_jobs)
    text = (
        f"No GPU: every training and evaluation job runs on the CPU. Training the {runs} runs "
        f"not yet trained takes about {_hours(known)} CPU-hours (from step times measured on a "
        f"2-core CPU), about {_hours(known / parallel)} h with {parallel} jobs at a time."
    )
    if unknown:
        text += f" {unknown} variant(s) have no measured step time and are not counted."
    return text


def local_hours(costs: list[VariantCost], gpus: int, parallel_jobs: int) -> tuple[float, str]:
    """Estimated wall-clock hours of training here, and what the estimate rests on: GPU jobs
    one at a time per GPU (H200 step times), or CPU jobs ``parallel_jobs`` at a time."""
    if gpus:
        known = [c.gpu_seconds for c in costs if c.gpu_seconds is not None]
        unknown = sum(c.gpu_seconds is None for c in costs)
        basis = f"training jobs timed on one {GPU_NAME}, {gpus} GPU(s) here"
        hours = sum(known) / 3600 / gpus
    else:
        known = [c.cpu_seconds for c in costs if c.cpu_seconds is not None]
        unknown = sum(c.cpu_seconds is None for c in costs)
        parallel = _parallel_jobs(costs, parallel_jobs)
        basis = f"step times measured on a 2-core CPU, {parallel} job(s) at a time"
        hours = sum(known) / 3600 / parallel
    if unknown:
        basis += f"; {unknown} variant(s) without a measured step time are not counted"
    return hours, basis


def long_run_stop(
    costs: list[VariantCost],
    gpus: int,
    parallel_jobs: int,
    max_hours: float,
    quick_command: str = "snakemake --cores all --configfile config/quick.yaml",
) -> str | None:
    """The message that stops a study before its first job when training here is estimated to
    take longer than ``max_hours``; None when it does not."""
    hours, basis = local_hours(costs, gpus, parallel_jobs)
    if hours <= max_hours:
        return None
    runs = sum(c.runs for c in costs)
    return (
        f"Not starting: training the {runs} runs not yet trained would take about "
        f"{_hours(hours * 3600)} h on this machine ({basis}), more than max_training_hours "
        f"({max_hours:g}). Either run the quick study first ({quick_command}: about 15 minutes "
        "on 2 CPU cores), or confirm the long run: add --config confirm_long_run=True (or set "
        "confirm_long_run: true in your config); `ganstudy study cost` shows the estimate per "
        "block."
    )

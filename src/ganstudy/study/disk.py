"""The disk a study will use, estimated before it starts, and a warning when the results
directory's filesystem has less free than it needs at its peak.

Two figures. *Finished*: what the runs hold once trained and evaluated. Per run its final.pt
(with ``train.keep_checkpoints`` also the periodic checkpoint before it; the newest periodic one
is final.pt under a second name, a hard link, see :func:`ganstudy.checkpoint.finish`), its sample
grids and log, its eval.json and evaluation samples; per dataset with FID the cached reference
statistics. *Peak*: that, plus what the training jobs running at once hold beyond it: a member
holds up to three checkpoint files while it trains (the newest two and the one being written;
final.pt is the last of them by a link), and the largest jobs are assumed to run together at the
end. A checkpoint holds G, D and at most two optimizer tensors per parameter in float32;
parameter counts come from the networks themselves, built on PyTorch's ``meta`` device (no
memory, no time).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ganstudy import atomic
from ganstudy import config as run_config
from ganstudy.data import registry
from ganstudy.metrics.mode_kinds import MODE_KINDS
from ganstudy.nets.bodies import build_pair

# While a member trains: the newest two periodic checkpoints and the one being written.
CHECKPOINTS_TRAINING = 3
# PNG of an 8 x 8 sample grid: about half a byte per pixel and channel, measured on the study's
# grids; 2D scatter plots are about 20 kB.
PNG_BYTES_PER_VALUE = 0.5
SCATTER_BYTES = 20_000
LOG_ROW_BYTES = 120
# eval.json: 1.9 kB measured for a ring8 run; a bound for the image datasets' longer records.
EVAL_JSON_BYTES = 4_000
# A row of samples2d.csv, the 2D points of the mode metrics: two floats as Python writes them.
POINT_BYTES = 40


@dataclass(frozen=True)
class DiskEstimate:
    runs: int
    checkpoint_bytes: int
    sample_bytes: int
    eval_bytes: int
    fid_stats_bytes: int
    jobs_at_once: int
    # What the ``jobs_at_once`` largest training jobs hold while they run beyond their finished
    # files.
    training_bytes: int

    @property
    def finished(self) -> int:
        return self.checkpoint_bytes + self.sample_bytes + self.eval_bytes + self.fid_stats_bytes

    @property
    def peak(self) -> int:
        return self.finished + self.training_bytes


def checkpoint_size(run_cfg: dict) -> int:
    """Bytes of one member checkpoint of a run config (weights, buffers, and the optimizer's
    state: at most two tensors per parameter, Adam's moments or RMSProp's square average and
    momentum buffer)."""
    cfg = run_config.from_dict(run_cfg)
    shape = registry.dataset(cfg.dataset.name).shape
    with torch.device("meta"):
        generator, discriminator = build_pair(cfg, 1, shape)
    total = 0
    for net in (generator, discriminator):
        params = sum(p.numel() for p in net.parameters())
        buffers = sum(b.numel() for b in net.buffers())
        total += 4 * (3 * params + buffers)
    return total


def checkpoints_kept(train: dict) -> int:
    """Checkpoint files a finished run holds: final.pt, and with ``train.keep_checkpoints`` the
    periodic one before it."""
    return 2 if train.get("keep_checkpoints") else 1


def jobs_at_once(
    study, gpu_slots: int, local_cores: int | None, cluster_jobs: int | None
) -> tuple[int, str]:
    """(training jobs that may run at once, why). Here: the cores over a training job's
    threads, bounded by the GPU slots where there are GPUs; on a cluster (``local_cores`` None)
    Snakemake's ``--jobs``, ``cluster_jobs`` (every job where that is None or unbounded)."""
    if local_cores is not None:
        threads = study.config["threads"]["train"]
        n = max(1, local_cores // threads)
        basis = f"{local_cores} cores / {threads} thread(s) per training job"
        if gpu_slots:
            n = min(n, gpu_slots)
            basis += f", {gpu_slots} GPU slot(s)"
        return n, basis
    if cluster_jobs is None or cluster_jobs >= sys.maxsize:
        return len(study.jobs), "every job at once: no --jobs bound"
    return cluster_jobs, "Snakemake's --jobs"


def _run_steps(study, v) -> int:
    train = v.run_config["train"]
    if train["steps"]:
        return train["steps"]
    n_train = registry.nominal_train_size(v.dataset, study.prepare_params(v.dataset)) or 0
    return math.ceil(train["epochs"] * (n_train // train["batch_size"]) / train["d_steps"])


def estimate(study, skip=frozenset(), jobs_at_once: int = 1) -> DiskEstimate:
    """The bytes the runs of ``study`` not in ``skip`` (run dirs) and its FID statistics hold
    when finished, and at the peak with ``jobs_at_once`` training jobs running together."""
    ckpt_bytes = sample_bytes = eval_bytes = runs = 0
    training: list[int] = []  # per training job still to run: its bytes beyond the finished
    for v in study.variants:
        seeds = [s for s in v.seeds if v.run_dir(s) not in skip]
        if not seeds:
            continue
        runs += len(seeds)
        train = v.run_config["train"]
        steps = _run_steps(study, v)
        spec = registry.dataset(v.dataset)
        grids = steps // train["sample_every"] + 2
        if spec.kind == "image":
            c, h, w = spec.shape
            per_grid = int(PNG_BYTES_PER_VALUE * c * (8 * h + 18) * (8 * w + 18))
            per_eval = EVAL_JSON_BYTES + per_grid  # samples.png
        else:
            per_grid = SCATTER_BYTES
            kind = MODE_KINDS.get(spec.mode_metric or "")
            points = study.mode_settings(v)["samples"] or (kind.default_samples if kind else 0)
            per_eval = EVAL_JSON_BYTES + POINT_BYTES * points  # samples2d.csv
        per_run_samples = grids * per_grid + (steps // train["log_every"] + 1) * LOG_ROW_BYTES
        size = checkpoint_size(v.run_config)
        kept = checkpoints_kept(train)
        ckpt_bytes += len(seeds) * kept * size
        sample_bytes += len(seeds) * per_run_samples
        eval_bytes += len(seeds) * per_eval
        for job in v.jobs():
            members = sum(1 for s in job.seeds if v.run_dir(s) not in skip)
            if members:
                training.append(members * (CHECKPOINTS_TRAINING - kept) * size)
    fid_bytes = 0
    for dataset in study.datasets:
        protocol = study.fid_protocol(dataset)
        if protocol is not None:
            fid_bytes += 8 * (protocol.dims**2 + protocol.dims)
    at_once = max(1, min(jobs_at_once, len(training)))
    peak = sum(sorted(training, reverse=True)[:at_once])
    return DiskEstimate(runs, ckpt_bytes, sample_bytes, eval_bytes, fid_bytes, at_once, peak)


def _gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB"


def summary(estimate: DiskEstimate, basis: str) -> str:
    """The finished and the peak figure in one line; ``basis``: why that many jobs at once."""
    return (
        f"Disk: the {estimate.runs} runs still to train hold about {_gb(estimate.finished)} "
        f"when trained and evaluated (checkpoints {_gb(estimate.checkpoint_bytes)}: final.pt "
        f"per run, two with train.keep_checkpoints; samples and logs "
        f"{_gb(estimate.sample_bytes)}; evaluation {_gb(estimate.eval_bytes)}; FID statistics "
        f"{_gb(estimate.fid_stats_bytes)}) and up to {_gb(estimate.peak)} while they train: the "
        f"{estimate.jobs_at_once} largest training job(s) at once ({basis}), each member "
        f"holding up to {CHECKPOINTS_TRAINING} checkpoints, {_gb(estimate.training_bytes)} more."
    )


def warning(estimate: DiskEstimate, results: str | Path) -> str | None:
    """A warning when the results directory's filesystem has less free than the peak."""
    free = atomic.free_bytes(results)
    if free is None or free >= estimate.peak:
        return None
    return (
        f"Disk: the {estimate.runs} runs still to train need up to {_gb(estimate.peak)} while "
        f"they train ({estimate.jobs_at_once} training job(s) at once; "
        f"{_gb(estimate.finished)} when finished), but the filesystem of {results} has "
        f"{_gb(free)} free. Free some space, set `results` to a larger filesystem or run fewer "
        "jobs at once; a job that meets a full disk stops with a storage error and keeps its "
        "earlier checkpoints."
    )

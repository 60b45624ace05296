"""The disk a study will use, estimated before it starts, and a warning when the results
directory's filesystem has less free.

Per run: its checkpoints (the last two periodic ones and final.pt, each holding G, D and at most
two optimizer tensors per parameter in float32), its sample grids and its log. Per dataset with
FID: the cached reference statistics (mean and covariance in float64). Parameter counts come from
the networks themselves, built on PyTorch's ``meta`` device (no memory, no time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ganstudy import atomic
from ganstudy import config as run_config
from ganstudy.data import registry
from ganstudy.nets.bodies import build_pair

CHECKPOINTS_KEPT = 3  # two periodic ones and final.pt
# PNG of an 8 x 8 sample grid: about half a byte per pixel and channel, measured on the study's
# grids; 2D scatter plots are about 20 kB.
PNG_BYTES_PER_VALUE = 0.5
SCATTER_BYTES = 20_000
LOG_ROW_BYTES = 120


@dataclass(frozen=True)
class DiskEstimate:
    runs: int
    checkpoint_bytes: int
    sample_bytes: int
    fid_stats_bytes: int

    @property
    def total(self) -> int:
        return self.checkpoint_bytes + self.sample_bytes + self.fid_stats_bytes


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


def estimate(study, skip=frozenset()) -> DiskEstimate:
    """The bytes the runs of ``study`` not in ``skip`` (run dirs) and its FID statistics need."""
    ckpt_bytes = sample_bytes = runs = 0
    for v in study.variants:
        seeds = [s for s in v.seeds if v.run_dir(s) not in skip]
        if not seeds:
            continue
        runs += len(seeds)
        train = v.run_config["train"]
        steps = train["steps"] or 0
        if steps == 0:
            n_train = registry.nominal_train_size(v.dataset, study.prepare_params(v.dataset)) or 0
            steps = math.ceil(train["epochs"] * (n_train // train["batch_size"]) / train["d_steps"])
        spec = registry.dataset(v.dataset)
        grids = steps // train["sample_every"] + 2
        if spec.kind == "image":
            c, h, w = spec.shape
            per_grid = int(PNG_BYTES_PER_VALUE * c * (8 * h + 18) * (8 * w + 18))
        else:
            per_grid = SCATTER_BYTES
        per_run_samples = grids * per_grid + (steps // train["log_every"] + 1) * LOG_ROW_BYTES
        ckpt_bytes += len(seeds) * CHECKPOINTS_KEPT * checkpoint_size(v.run_config)
        sample_bytes += len(seeds) * per_run_samples
    fid_bytes = 0
    for dataset in study.datasets:
        protocol = study.fid_protocol(dataset)
        if protocol is not None:
            fid_bytes += 8 * (protocol.dims**2 + protocol.dims)
    return DiskEstimate(runs, ckpt_bytes, sample_bytes, fid_bytes)


def _gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB"


def warning(estimate: DiskEstimate, results: str | Path) -> str | None:
    """A warning when the results directory's filesystem has less free than the estimate."""
    free = atomic.free_bytes(results)
    if free is None or free >= estimate.total:
        return None
    return (
        f"Disk: the {estimate.runs} runs still to train need about {_gb(estimate.total)} "
        f"(checkpoints {_gb(estimate.checkpoint_bytes)}, samples and logs "
        f"{_gb(estimate.sample_bytes)}, FID statistics {_gb(estimate.fid_stats_bytes)}), but the "
        f"filesystem of {results} has {_gb(free)} free. Free some space or set `results` to a "
        "larger filesystem; a job that meets a full disk stops with a storage error and keeps "
        "its earlier checkpoints."
    )

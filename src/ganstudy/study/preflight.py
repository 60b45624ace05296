"""The workflow's start-up check: what a study will cost and whether it may start.

Run once when Snakemake starts (``onstart``), before any job: the GPU plan, the primary
hypotheses' and the per-cell comparisons' power, the disk the runs will fill and, for local runs,
the training time on this machine. Everything is a message except one outcome: a local study
whose training would take longer than ``max_training_hours`` stops unless ``confirm_long_run``.
Runs whose final.pt exists are left out of the time and disk estimates (they are done). The
disk is quoted when finished and at its peak, with as many training jobs at once as the cores,
GPU slots or a cluster's ``--jobs`` allow; free space is checked against the peak.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ganstudy import store
from ganstudy.study import cost, plan


@dataclass
class Preflight:
    """Messages for the start-up log and, where the study must not start, why."""

    info: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stop: str | None = None


def trained_runs(study) -> set[str]:
    """Run directories (relative to the results) that hold a final.pt."""
    return {run.run_dir for run in study.runs if os.path.isfile(study.run_path(run, store.FINAL))}


def check(
    study, gpus: list[str], gpu_plan, local_cores: int | None, cluster_jobs: int | None = None
) -> Preflight:
    """The start-up check of ``study`` on ``gpus`` with the resolved ``gpu_plan``;
    ``local_cores``: the cores of a local run (None for a cluster executor, which gets no time
    estimate: its jobs do not run here); ``cluster_jobs``: a cluster executor's jobs at once
    (Snakemake's ``--jobs``), for the disk the jobs running together hold."""
    # Imported here: the disk and power estimates load torch and scipy, which parsing the
    # workflow does not need.
    from ganstudy.analysis import planning
    from ganstudy.study import disk

    out = Preflight()
    trained = trained_runs(study)
    at_once, basis = disk.jobs_at_once(
        study, len(gpus) * gpu_plan.jobs_per_gpu, local_cores, cluster_jobs
    )
    disk_needed = disk.estimate(study, skip=trained, jobs_at_once=at_once)
    if gpus:
        out.info.append(f"GPUs: {len(gpus)}, {gpu_plan.note}.")
    if gpu_plan.warning:
        out.warnings.append(gpu_plan.warning)
    out.warnings += [f"Primary family: {note}." for note in study.primary_notes]
    for warning in (
        planning.warning(planning.evaluate(planning.plan(study))),
        plan.warning(plan.plan(study)),
        disk.warning(disk_needed, study.results),
    ):
        if warning:
            out.warnings.append(warning)
    if disk_needed.runs:
        out.info.append(disk.summary(disk_needed, basis))
    if study.waves.sequential:
        from ganstudy.study import expected

        out.info.append(expected.summary_line(study, max(1, len(gpus)), data_root=study.data_root))
    if local_cores is None:
        return out
    costs = cost.estimate(study, data_root=study.data_root, skip=trained)
    parallel = local_cores // study.config["threads"]["train"]
    if costs and not gpus:
        out.warnings.append(cost.cpu_warning(costs, parallel))
    elif costs:
        hours, basis = cost.local_hours(costs, len(gpus), parallel)
        out.info.append(f"Training takes about {hours:,.1f} h on this machine ({basis}).")
    stop = cost.long_run_stop(costs, len(gpus), parallel, study.config["max_training_hours"])
    if stop and study.waves.sequential:
        stop += (" (Every wave trained: the study's maximum; its looks are expected to stop it "
                 "earlier, see the sequential design's line above.)")  # fmt: skip
    if stop and not study.config["confirm_long_run"]:
        out.stop = stop
    return out

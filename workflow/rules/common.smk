# Shared setup: paths of the checked study (STUDY, built in the Snakefile), the GPU slots and the
# environment of every job.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from ganstudy import layout
from ganstudy.study import cost, gpu_slots, memory, plan
from ganstudy.study.schema import default_schema_path

RESULTS = STUDY.results
DATA = STUDY.data_root
LOGS = STUDY.config["logs"].rstrip("/")
THREADS = STUDY.config["threads"]
SCHEMA = str(default_schema_path())
VARIANTS = {v.key: v for v in STUDY.variants}
SOURCES = STUDY.sources
CONDA_ENV = "../envs/ganstudy.yaml"  # relative to the rule files; used with --sdm conda

# GPU jobs (training, evaluation, classifier training, FID reference) take one `gpu_slot` each:
# with N GPUs the scheduler runs at most N x jobs_per_gpu of them at once (unless
# --resources gpu_slot=... says otherwise), and each starts through the launcher GPU_RUN
# (on_gpu_slot), which gives it the GPU of a free slot. Every other rule (fetch, prepare,
# design, aggregate, report) runs on the CPU: it takes no slot and never waits for one. Unless
# the config fixes the count, the launcher counts the GPUs where the job runs (a cluster node
# sees its own).
GPU_RUN = "ganstudy gpu-run -- "
GPUS = gpu_slots.visible_gpus(STUDY.config["gpus"]["count"])
# Where a GPU's free memory is known (nvidia-smi, or $GANSTUDY_GPU_MEMORY_MIB), a training job
# that cannot fit is refused here, before any job; `gpus.jobs_per_gpu: auto` is resolved from the
# largest job's estimate (ganstudy.study.memory).
try:
    CORES = workflow.cores
except WorkflowError:  # a cluster executor leaves the core count unset: os.cpu_count() then
    CORES = None
GPU_PLAN = memory.plan(STUDY, GPUS, CORES)
GPU_SLOTS = len(GPUS) * GPU_PLAN.jobs_per_gpu
if GPU_SLOTS and "gpu_slot" not in workflow.global_resources:
    workflow.register_resource("gpu_slot", GPU_SLOTS)
GPU_RESOURCE = 1 if GPU_SLOTS else 0

# Where things are (data mirror, FID weights, tracking store) and how jobs share the GPUs reach
# the jobs through their environment, where the ganstudy commands look for them; they are not
# rule params, so changing them re-runs nothing.
os.environ.update(STUDY.job_environment(jobs_per_gpu=GPU_PLAN.jobs_per_gpu))
TRACKING_URI = STUDY.tracking_uri()


wildcard_constraints:
    dataset="[a-z0-9_]+",


def on_gpu_slot(command):
    """A GPU job's shell command, started through the slot launcher."""
    return GPU_RUN + command


def prepared(dataset):
    """The prepared files of a dataset (none for the 2D mixtures, which are sampled)."""
    if dataset not in STUDY.prepared_datasets:
        return []
    return [f"{DATA}/prepared/{dataset}/manifest.json"]


def verbatim(text):
    """A params value that Snakemake passes on without expanding braces in it."""
    return lambda wildcards: text


def evaluate_inputs(job):
    """A training job's run files, its dataset's classifier and FID reference statistics (where
    it has them)."""
    dataset = job.variant.dataset
    inputs = {
        "metrics": [STUDY.run_path(run_dir, layout.METRICS) for run_dir in job.run_dirs],
        "final": [STUDY.run_path(run_dir, layout.FINAL) for run_dir in job.run_dirs],
    }
    classifier = STUDY.classifier_dataset(dataset)
    if classifier is not None:
        inputs["classifier"] = f"{DATA}/classifiers/{classifier}.pt"
    receipt = STUDY.fid_receipt(dataset)
    if receipt is not None:
        inputs["fid_reference"] = receipt
    return inputs


def evaluate_minutes(job):
    """A generous bound on an evaluation job's time (minutes): a full-protocol FID of one member
    takes seconds on a GPU and a few minutes on a CPU core; the bound is 30 + 5 per member."""
    return 30 + 5 * len(job.seeds)


def shell_words(paths):
    """Paths as one shell-quoted, space-separated string (a params value)."""
    return " ".join(shlex.quote(path) for path in paths)


onstart:
    trained = {
        run.run_dir for run in STUDY.runs if os.path.isfile(STUDY.run_path(run, layout.FINAL))
    }
    # Imported here, not at the top: it loads torch, which parsing the workflow does not need.
    from ganstudy.study import disk

    from ganstudy.analysis import planning

    if GPUS:
        logger.info(f"GPUs: {len(GPUS)}, {GPU_PLAN.note}.")
    if GPU_PLAN.warning:
        logger.warning(GPU_PLAN.warning)
    for note in STUDY.primary_notes:
        logger.warning(f"Primary family: {note}.")
    primary_warning = planning.warning(planning.evaluate(planning.plan(STUDY)))
    if primary_warning:
        logger.warning(primary_warning)
    power_warning = plan.warning(plan.plan(STUDY))
    if power_warning:
        logger.warning(power_warning)
    disk_warning = disk.warning(disk.estimate(STUDY, skip=trained), RESULTS)
    if disk_warning:
        logger.warning(disk_warning)
    # The time estimate is for local runs; an executor (e.g. SLURM) leaves workflow.cores unset.
    if workflow.local_exec:
        costs = cost.estimate(STUDY, data_root=DATA, skip=trained)
        parallel = workflow.cores // THREADS["train"]
        if costs and not GPUS:
            logger.warning(cost.cpu_warning(costs, parallel))
        elif costs:
            hours, basis = cost.local_hours(costs, len(GPUS), parallel)
            logger.info(f"Training takes about {hours:,.1f} h on this machine ({basis}).")
        stop = cost.long_run_stop(costs, len(GPUS), parallel, STUDY.config["max_training_hours"])
        if stop and not STUDY.config["confirm_long_run"]:
            logger.error(stop)
            sys.exit(1)
    if TRACKING_URI:
        shell(
            f"ganstudy study init-tracking --uri {TRACKING_URI!r} --experiment {STUDY.name!r}"
        )

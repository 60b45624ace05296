# Shared setup: paths of the checked study (STUDY, built in the Snakefile), the GPU slots and the
# environment of every job.

import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from ganstudy import store
from ganstudy.data import registry
from ganstudy.study import gpu_slots, looks, memory, preflight
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
    return [data_path("manifest", dataset)]


def data_path(kind, *names):
    """A path of the data root (``store.DataRoot``), e.g. data_path("manifest", "mnist")."""
    return str(getattr(store.DataRoot(DATA), kind)(*names))


def verbatim(text):
    """A params value that Snakemake passes on without expanding braces in it."""
    return lambda wildcards: text


def member_files(job, name):
    """The file ``name`` of every member of a job."""
    return [STUDY.run_path(run_dir, name) for run_dir in job.run_dirs]


def fid_curves(job):
    """The members' fid_curve.csv where the job's runs take a FID curve while training."""
    image = registry.dataset(job.variant.dataset).kind == "image"
    if image and job.variant.run_config["train"].get("fid_every", 0) > 0:
        return member_files(job, store.FID_CURVE)
    return []


def sample_files(job):
    """What evaluation draws for the report: an 8x8 grid of images, or the 2D points."""
    image = registry.dataset(job.variant.dataset).kind == "image"
    return member_files(job, store.SAMPLE_GRID if image else store.SAMPLES_2D)


def evaluate_inputs(job):
    """A training job's run files, its dataset's classifier and FID reference statistics (where
    it has them)."""
    dataset = job.variant.dataset
    inputs = {
        "metrics": member_files(job, store.METRICS),
        "final": member_files(job, store.FINAL),
        "logs": member_files(job, store.LOG),
        "fid_curves": fid_curves(job),
    }
    classifier = STUDY.classifier_dataset(dataset)
    if classifier is not None:
        inputs["classifier"] = data_path("classifier", classifier)
    receipt = STUDY.fid_receipt(dataset)
    if receipt is not None:
        inputs["fid_reference"] = receipt
    return inputs


def evaluate_minutes(job):
    """A generous bound on an evaluation job's time (minutes): a full-protocol FID of one member
    takes seconds on a GPU and a few minutes on a CPU core; the bound is 30 + 5 per member."""
    return 30 + 5 * len(job.seeds)


# A sequential study (analysis.sequential with waves > 1) trains its waves one after another:
# after wave k the `look` checkpoint (rules/looks.smk) decides the primary family on every run
# trained so far, and wave k + 1 holds the jobs of the blocks it lets continue. The functions
# below ask the checkpoint's record, so Snakemake re-plans the DAG after each look.
WAVES = STUDY.waves
LOOKS = WAVES.looks


def look_record(k):
    return str(store.ResultsDir(RESULTS).look(k))


def continuing_blocks(k):
    """The blocks that train wave k + 1: look k's decision (waits for it)."""
    return looks.continuing_blocks(checkpoints.look.get(look=k).output.record)


def trained_jobs(through=None, first=True, later=True):
    """The training jobs of waves 1..through (default: every wave the study trains); ``first``
    and ``later``: those of the first wave (known at once) and of the later ones (known after
    each look), so that a rule can ask for the first wave apart and Snakemake schedules it
    while a look is pending."""
    if not WAVES.sequential:
        return STUDY.jobs if first else []
    jobs = WAVES.jobs_of_wave(STUDY, 1) if first else []
    if not later:
        return jobs
    for k in range(1, LOOKS if through is None else through):
        going = continuing_blocks(k)
        if not going:
            break
        jobs += WAVES.jobs_of_wave(STUDY, k + 1, going)
    return jobs


def trained_runs(through=None, first=True, later=True):
    return [run_dir for job in trained_jobs(through, first, later) for run_dir in job.run_dirs]


def wave_priority(job):
    """The primary family's jobs first (a sequential study): the look they feed comes sooner,
    and the next wave trains beside the secondary blocks' jobs."""
    return 1 if WAVES.sequential and job.variant.key in WAVES.primary_variants else 0


def primary_runs(through):
    """The runs of the primary family's strata trained by the end of wave ``through``."""
    return [
        run_dir for job in trained_jobs(through)
        if job.variant.key in WAVES.primary_variants for run_dir in job.run_dirs
    ]  # fmt: skip


def final_look():
    """The look at which the study stopped (every block decided), or the last."""
    for k in range(1, LOOKS):
        if not continuing_blocks(k):
            return k
    return LOOKS


def look_records():
    """Every look record of the study: none for a fixed design."""
    if not WAVES.sequential:
        return []
    return [look_record(k) for k in range(1, final_look() + 1)]


def shell_words(paths):
    """Paths as one shell-quoted, space-separated string (a params value)."""
    return " ".join(shlex.quote(path) for path in paths)


onstart:
    # ganstudy.study.preflight: GPU plan, power of the planned tests, disk and (local runs) time.
    local = workflow.local_exec
    check = preflight.check(
        STUDY,
        GPUS,
        GPU_PLAN,
        workflow.cores if local else None,
        cluster_jobs=None if local else workflow.nodes,
    )
    for line in check.info:
        logger.info(line)
    for line in check.warnings:
        logger.warning(line)
    if check.stop:
        logger.error(check.stop)
        sys.exit(1)
    if TRACKING_URI:
        shell(
            f"ganstudy study init-tracking --uri {TRACKING_URI!r} --experiment {STUDY.name!r}"
        )

"""GPU memory a job needs, estimated before any job starts; how many jobs share a GPU.

A training job of K members (seeds) at batch size B holds on its GPU:

- weights: the parameters of G and D, their gradients and the optimizer's state (two tensors
  per parameter: Adam's moments, or RMSProp's square average and momentum buffer), and the
  buffers (batch-norm statistics), all float32;
- activations: one forward pass of G on z (K, B, z_dim) and of D on a batch, run on PyTorch's
  ``meta`` device (no memory, no time), summing the outputs of every leaf module with forward
  hooks. A step keeps G's outputs and D's for the real and the fake batch (a loss with a
  gradient penalty: also D on the interpolates and its gradient, two more D passes), and the
  rule of thumb counts that forward total three times: the tensors saved for backward, their
  gradients during backward, and the allocator's slack and temporaries;
- random draws held ahead: ``DRAW_CHUNK_STEPS`` steps of noise for every member,
  K x steps x (d_steps + 1) x B x z_dim x 4 bytes, the gradient penalty's mixing weights
  K x steps x d_steps x B x 4 bytes, and for a 2-D mixture its samples'
  K x steps x d_steps x B x 3 x 8 bytes (component and two coordinates);
- the training set: image datasets as uint8 (N x C x H x W bytes), a fixed 2-D training set
  as float32 (N x 2 x 4 bytes);
- Inception (``INCEPTION_BYTES``) where the run computes training-time FID;
- the CUDA context of the process (``CUDA_CONTEXT_BYTES``).

Evaluation, classifier and FID-reference jobs are counted as ``EVALUATION_BYTES``: the CUDA
context and Inception at its batch of 50 (the classifiers are far smaller).

None of these numbers was measured on a GPU yet: they are estimates from tensor sizes and the
constants below, meant to keep a job that cannot fit off the GPU and to pack small jobs.

``gpus.jobs_per_gpu: auto`` packs jobs onto a GPU from the largest job's estimate and the GPU's
free memory, bounded by the cores: ``max(1, min(floor(free x HEADROOM / largest), cores //
gpus))``; with no GPU it is 1. Free memory is read with ``nvidia-smi`` (the smallest free memory
of the GPUs used), or taken from ``$GANSTUDY_GPU_MEMORY_MIB`` (MiB free per GPU; with
``$GANSTUDY_GPUS`` it simulates GPUs of that size where there are none).

Nothing here imports torch until a training job is estimated, which happens only where a GPU
memory size is known.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
from dataclasses import dataclass

from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.losses import LOSSES
from ganstudy.study.cost import train_size

MIB = 2**20
GIB = 2**30
GPU_MEMORY_ENV = "GANSTUDY_GPU_MEMORY_MIB"
# The share of a GPU's free memory the jobs may plan to use (the rest for fragmentation and
# whatever else starts on the GPU).
HEADROOM = 0.9
# A process's CUDA context (driver, kernels of torch and cuDNN): about 300 to 600 MiB with
# current drivers; not measured here.
CUDA_CONTEXT_BYTES = 500 * MIB
# Inception v3 at its batch of 50 (evaluation, FID reference, training-time FID): the weights
# (pt_inception-2015-12-05, 91 MiB) and the largest two adjacent feature maps of a no-grad
# forward at 299 x 299 (64 x 147 x 147 and 32 x 147 x 147 floats, about 8 MB per image).
INCEPTION_BYTES = 100 * MIB + 400 * MIB
EVALUATION_BYTES = CUDA_CONTEXT_BYTES + INCEPTION_BYTES
# Forward activations x this = what a training step holds (saved tensors, their gradients,
# temporaries).
BACKWARD_FACTOR = 3
# Optimizer tensors per parameter (Adam's two moments; RMSProp's square average and momentum).
OPTIMIZER_TENSORS = 2
# Steps of random numbers drawn ahead: ganstudy.data.draws.CHUNK_STEPS (a copy, so that this
# module imports no torch; a test keeps them equal).
DRAW_CHUNK_STEPS = 64


def _gib(n: float) -> str:
    return f"{n / GIB:,.2f} GiB"


@dataclass(frozen=True)
class JobMemory:
    """Bytes of GPU memory one job needs, by part (see the module's docstring)."""

    members: int
    batch_size: int
    weights: int = 0
    activations: int = 0
    draws: int = 0
    data: int = 0
    inception: int = 0
    context: int = CUDA_CONTEXT_BYTES
    name: str = ""  # what the job is, for messages

    @property
    def total(self) -> int:
        return (
            self.weights + self.activations + self.draws + self.data + self.inception + self.context
        )

    def describe(self) -> str:
        parts = [
            ("weights, gradients and optimizer state", self.weights),
            ("activations", self.activations),
            ("random draws", self.draws),
            ("training set", self.data),
            ("Inception", self.inception),
            ("CUDA context", self.context),
        ]
        shown = ", ".join(f"{name} {_gib(n)}" for name, n in parts if n)
        return f"{_gib(self.total)} ({shown})"


def evaluation_memory() -> JobMemory:
    """An evaluation, classifier or FID-reference job (a documented constant)."""
    return JobMemory(1, 50, inception=INCEPTION_BYTES, name="an evaluation job")


def _forward_bytes(cfg, members: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(parameters, buffers, G's forward outputs, D's forward outputs) in elements/bytes of one
    forward pass of K members at the run's batch size, measured on the meta device."""
    import torch

    from ganstudy.nets.bodies import build_pair

    batch = cfg.train.batch_size
    outputs: list[int] = []

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel() * output.element_size())

    with torch.device("meta"):
        generator, discriminator = build_pair(cfg, members, shape)
        handles = [
            m.register_forward_hook(hook)
            for net in (generator, discriminator)
            for m in net.modules()
            if not list(m.children())
        ]
        try:
            with torch.no_grad():
                fake = generator(torch.empty(members, batch, cfg.arch.z_dim))
                g_bytes = sum(outputs)
                outputs.clear()
                discriminator(fake)
                d_bytes = sum(outputs)
        finally:
            for handle in handles:
                handle.remove()
    params = sum(p.numel() for net in (generator, discriminator) for p in net.parameters())
    buffers = sum(
        b.numel() * b.element_size() for net in (generator, discriminator) for b in net.buffers()
    )
    return params, buffers, g_bytes, d_bytes


def training_memory(
    run_cfg: dict,
    members: int,
    n_train: int | None = None,
    chunk_steps: int = DRAW_CHUNK_STEPS,
) -> JobMemory:
    """The GPU memory of one training job of ``members`` seeds of a run config (a mapping).

    ``n_train``: images of an image dataset's training set (None: its nominal size); a 2-D
    mixture's fixed training set is the run config's ``dataset.n_train``."""
    from ganstudy import config as run_config

    cfg = run_config.from_dict(run_cfg)
    spec = registry.dataset(cfg.dataset.name)
    shape = tuple(spec.shape)
    t = cfg.train
    k, batch = members, t.batch_size
    params, buffers, g_bytes, d_bytes = _forward_bytes(cfg, k, shape)
    gradient_penalty = LOSSES[cfg.loss.name].gradient_penalty
    d_passes = 2 + (2 if gradient_penalty else 0)
    activations = BACKWARD_FACTOR * (g_bytes + d_passes * d_bytes)
    weights = 4 * params * (2 + OPTIMIZER_TENSORS) + buffers
    draws = k * chunk_steps * (t.d_steps + 1) * batch * cfg.arch.z_dim * 4
    if gradient_penalty:
        draws += k * chunk_steps * t.d_steps * batch * 4
    if spec.kind == "mixture2d":
        draws += k * chunk_steps * t.d_steps * batch * 3 * 8
        data = (cfg.dataset.n_train or 0) * 2 * 4
    else:
        n = n_train if n_train is not None else (registry.nominal_train_size(spec.name) or 0)
        data = n * math.prod(shape)
    inception = INCEPTION_BYTES if t.fid_every > 0 and spec.kind == "image" else 0
    return JobMemory(k, batch, weights, activations, draws, data, inception)


# ---------------------------------------------------------------------------------------------
# The study's jobs


class StudyMemory:
    """Estimates of a study's training jobs, each variant's computed once per member count."""

    def __init__(self, study, chunk_steps: int = DRAW_CHUNK_STEPS):
        self.study = study
        self.chunk_steps = chunk_steps
        self._cache: dict[tuple[str, int], JobMemory] = {}

    def variant(self, variant, members: int | None = None) -> JobMemory:
        """A job of ``members`` seeds of ``variant`` (default: its largest job)."""
        members = members or max(len(job.seeds) for job in variant.jobs())
        key = (variant.key, members)
        if key not in self._cache:
            n_train = None
            if registry.dataset(variant.dataset).kind == "image":
                dataset, params = variant.dataset, self.study.prepare_params(variant.dataset)
                n_train = train_size(dataset, params, self.study.data_root)
            job = training_memory(variant.run_config, members, n_train, self.chunk_steps)
            name = f"a training job of {members} seed(s) of {variant.key}"
            self._cache[key] = dataclasses.replace(job, name=name)
        return self._cache[key]

    def largest_members(self, variant, usable: float, upto: int) -> int:
        """The most seeds of ``variant`` (at most ``upto``) whose job fits in ``usable`` bytes;
        0 when not even one does. The estimate grows with the members: a binary search."""
        low, high = 0, upto
        while low < high:
            mid = (low + high + 1) // 2
            if self.variant(variant, mid).total <= usable:
                low = mid
            else:
                high = mid - 1
        return low

    def largest_job(self) -> JobMemory:
        """The study's largest job: a training job, or an evaluation job where that is larger."""
        jobs = [self.variant(v) for v in self.study.variants] + [evaluation_memory()]
        return max(jobs, key=lambda job: job.total)


def check_fits(study, free_bytes: int, estimates: StudyMemory | None = None) -> None:
    """ConfigError for the first variant whose training job cannot fit on a GPU with
    ``free_bytes`` free, naming its block's seeds_per_job, the estimate and the largest K that
    fits."""
    estimates = estimates or StudyMemory(study)
    usable = free_bytes * HEADROOM
    for v in study.variants:
        job = estimates.variant(v)
        if job.total <= usable:
            continue
        fits = estimates.largest_members(v, usable, job.members - 1)
        if fits:
            allowed = (
                f"at most {fits} seeds per job for {v.key} (about "
                f"{_gib(estimates.variant(v, fits).total)})"
            )
        else:
            allowed = (
                "not even one seed fits: a smaller batch_size, width or training set, or a "
                "GPU with more free memory"
            )
        inherited = study.config["experiments"][v.block].get("seeds_per_job") is None
        raise ConfigError(
            f"key 'experiments.{v.block}.seeds_per_job'"
            + (" (the top-level seeds_per_job applies)" if inherited else "")
            + f": {job.members} seeds of {v.key} in one job need about {job.describe()} of GPU "
            f"memory (estimated, ganstudy.study.memory), but the GPU has {_gib(free_bytes)} free, "
            f"{int(HEADROOM * 100)}% of it usable ({_gib(usable)}); allowed: {allowed}"
        )


def host_free_bytes() -> int:
    """Memory the host can give a new job (Linux's MemAvailable)."""
    import psutil

    return int(psutil.virtual_memory().available)


# ---------------------------------------------------------------------------------------------
# The GPUs


def _mib(value: str, where: str) -> int:
    try:
        mib = float(value)
    except ValueError:
        raise ConfigError(
            f"{where}: {value!r} is not allowed; allowed: MiB, a number > 0"
        ) from None
    if not mib > 0:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: MiB, a number > 0")
    return int(mib * MIB)


def _nvidia_smi_free(gpus: list[str]) -> int | None:
    """The smallest free memory (bytes) of ``gpus`` (indices or UUIDs) that nvidia-smi lists;
    every GPU it lists when none matches; None without nvidia-smi."""
    query = "index,uuid,memory.free,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            try:
                rows.append((parts[0], parts[1], int(float(parts[2]) * MIB)))
            except ValueError:
                continue
    if not rows:
        return None
    used = [free for index, uuid, free in rows if index in gpus or uuid in gpus] or [
        free for _, _, free in rows
    ]
    return min(used)


def gpu_free_bytes(gpus: list[str], environ=None) -> int | None:
    """Free memory of the GPUs used (the smallest): ``$GANSTUDY_GPU_MEMORY_MIB`` (MiB, which
    also simulates a GPU), else nvidia-smi; None without GPUs or without an answer."""
    environ = os.environ if environ is None else environ
    if not gpus:
        return None
    if environ.get(GPU_MEMORY_ENV):
        return _mib(environ[GPU_MEMORY_ENV], f"${GPU_MEMORY_ENV}")
    return _nvidia_smi_free(gpus)


@dataclass(frozen=True)
class GpuPlan:
    """How the study's jobs use the GPUs: jobs per GPU and what the choice rests on."""

    gpus: int
    jobs_per_gpu: int
    free_bytes: int | None
    largest: JobMemory | None
    note: str
    warning: str | None = None


def auto_jobs_per_gpu(largest: int, free_bytes: int, cores: int, gpus: int) -> int:
    """max(1, min(floor(free x HEADROOM / largest), cores // gpus))."""
    by_memory = math.floor(free_bytes * HEADROOM / largest)
    return max(1, min(by_memory, cores // gpus))


def plan(study, gpus: list[str], cores: int | None = None, environ=None) -> GpuPlan:
    """Check the study against the GPUs' free memory (ConfigError for a job that cannot fit)
    and resolve ``gpus.jobs_per_gpu`` (``auto``: packed by memory, bounded by the cores)."""
    setting = study.config["gpus"]["jobs_per_gpu"]
    free = gpu_free_bytes(gpus, environ)
    if free is None:
        count = 1 if setting == "auto" else int(setting)
        if not gpus:
            note = "no GPU: every job runs on the CPU"
        elif setting == "auto":
            note = "1 job per GPU (auto, but the GPUs' free memory is unknown: no nvidia-smi)"
        else:
            note = f"{count} job(s) per GPU (gpus.jobs_per_gpu; GPU memory unknown)"
        return GpuPlan(len(gpus), count, None, None, note)
    estimates = StudyMemory(study)
    check_fits(study, free, estimates)
    largest = estimates.largest_job()
    cores = cores or os.cpu_count() or 1
    if setting == "auto":
        count = auto_jobs_per_gpu(largest.total, free, cores, len(gpus))
        note = (
            f"{count} job(s) per GPU (auto: {_gib(free)} free per GPU, largest job about "
            f"{_gib(largest.total)}, {cores} cores for {len(gpus)} GPU(s))"
        )
        return GpuPlan(len(gpus), count, free, largest, note)
    count = int(setting)
    warning = None
    if count * largest.total > free * HEADROOM:
        warning = (
            f"GPU memory: gpus.jobs_per_gpu = {count} jobs of up to about {_gib(largest.total)} "
            f"each may not fit in the {_gib(free)} free on a GPU; `auto` would run "
            f"{auto_jobs_per_gpu(largest.total, free, cores, len(gpus))}."
        )
    note = f"{count} job(s) per GPU (gpus.jobs_per_gpu; {_gib(free)} free per GPU)"
    return GpuPlan(len(gpus), count, free, largest, note, warning)

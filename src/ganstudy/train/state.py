"""What the two halves of a training job share, declared: :class:`TrainingState` is everything
the run directories are written from (:mod:`ganstudy.train.outputs`) that the step loop
(:mod:`ganstudy.train.trainer`) builds or advances; :class:`LoopState` is the loop's own
bookkeeping between two steps.

The networks, optimizers, random streams and learning-rate schedule in :class:`TrainingState`
are the very objects the step updates in place, so a checkpoint written from it is the state the
next step starts from, and loading one into it is resuming. Its fields that change are few:
``step`` and ``diverged_step`` (the loop; loading a checkpoint), ``wall_before`` (loading a
checkpoint) and ``t_start`` (the start of training in this process).

Both are slotted dataclasses: the loop reads their fields every step, and a slot read costs no
more than reading an attribute of the trainer itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ganstudy import store
from ganstudy.sample import generate_members
from ganstudy.train.step import MemberSeeds

if TYPE_CHECKING:
    from ganstudy.config import RunConfig
    from ganstudy.data.draws import ChunkedDraws
    from ganstudy.data.registry import DatasetSpec
    from ganstudy.data.streams import ImageStream, MixtureStream
    from ganstudy.metrics.fid import TrainingFID
    from ganstudy.train.progress import Progress
    from ganstudy.train.signals import StopRequest
    from ganstudy.train.updates import GapAwareSchedule


@dataclass(eq=False, slots=True)
class TrainingState:
    """The members ``seeds`` of the variant ``cfg`` (member k writes ``run_dirs[k]``), their
    networks with a leading member dimension, and how far they have trained."""

    cfg: RunConfig
    seeds: list[int]
    run_dirs: list[Path]
    member_cfgs: list[RunConfig]
    device: torch.device
    spec: DatasetSpec
    # The numerical settings in effect (numerics.apply), recorded in metrics.json.
    numerics: dict
    # The eager networks: sampling and checkpoints use them; the step may call compiled
    # wrappers of them, which own the same parameters.
    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    # Optimizers built for a CUDA graph keep that setting when a checkpoint is loaded into them.
    capturable: bool
    d_schedule: GapAwareSchedule | None
    noise_draws: ChunkedDraws
    stream: MixtureStream | ImageStream
    # What the run trained on, in metrics.json: the protocol comparisons read its size.
    training_data: dict
    total_steps: int
    # The fixed noise of the sample grids, (K, SAMPLE_GRID, z_dim).
    sample_z: Tensor
    fid: TrainingFID | None
    step: int = 0
    # Each member's first non-finite step (None: finite so far).
    diverged_step: list[int | None] = field(init=False)
    # Training time of earlier processes (from the checkpoint resumed), in seconds.
    wall_before: float = 0.0
    # time.monotonic() as this process started training; None until then.
    t_start: float | None = None

    def __post_init__(self) -> None:
        self.diverged_step = [None] * len(self.seeds)

    @property
    def K(self) -> int:
        return len(self.seeds)

    @property
    def name(self) -> str:
        """The variant's name, as messages show it."""
        return store.RunKey.of_config(self.cfg).name

    def generate_all(self, n: int) -> Tensor:
        """n samples of every member, (K, n, *sample_shape) on the CPU, from fixed noise."""
        seeds = [MemberSeeds.from_seed(s).sample + 1 for s in self.seeds]
        return generate_members(self.G, self.cfg, seeds, n, self.device)


@dataclass(eq=False, slots=True)
class LoopState:
    """The training loop's state between two steps. ``frozen`` is the device-side mask of
    diverged members, replaced every step; ``frozen_host`` is what the host knows of it, updated
    in place at each log row (and read by the trainer after the loop)."""

    stop: StopRequest
    progress: Progress | None
    frozen: Tensor
    frozen_host: list[bool]
    # The losses of the steps since the last log row, (log_every, K, 2).
    history: Tensor
    last_log_step: int
    last_log_time: float

"""What a training step asks of the device, counted on any device: its ATen calls and its host
synchronisations.

On a GPU nearly every ATen call is a kernel launch of a few microseconds (views are not), so a
step whose calls grow with the members K is bound by launches, not arithmetic. A host
synchronisation (``.item()``, ``.tolist()``, ``bool(tensor)``, ``nonzero``) makes the host
wait for the device, which empties the launch queue. Both are counted with a
``TorchDispatchMode``, which sees every ATen call made below Python, on the CPU as on a GPU.

Not a synchronisation: reading an optimizer's step counter. PyTorch keeps it on the CPU unless
the optimizer is capturable (the CUDA graph's), and reads it there with ``.item()``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ganstudy.data.draws import CHUNK_STEPS

# ATen calls whose result the host reads (it waits for the device to compute it).
SYNC_CALLS = frozenset(
    {"aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten.equal"}
)


# Metadata-only calls that return a fresh tensor rather than an alias (reshape's last step).
METADATA_CALLS = frozenset({"aten._unsafe_view"})


def is_view(func) -> bool:
    """An ATen call that launches no kernel: a view of its input, or metadata only."""
    if str(func.overloadpacket) in METADATA_CALLS:
        return True
    returns = func._schema.returns
    return (
        bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write
    )


@dataclass
class StepCalls:
    """ATen calls by name (views apart) and host synchronisations (name, shape) over
    ``steps`` steps."""

    steps: int
    calls: collections.Counter = field(default_factory=collections.Counter)
    views: int = 0
    syncs: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    @property
    def kernels(self) -> int:
        return sum(self.calls.values())

    @property
    def total(self) -> int:
        return self.kernels + self.views


class _Counter(TorchDispatchMode):
    def __init__(self, record: StepCalls, optimizers):
        super().__init__()
        self.record, self.optimizers = record, optimizers

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if is_view(func):
            self.record.views += 1
        else:
            self.record.calls[name] += 1
        if name in SYNC_CALLS:
            tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
            # Recomputed: an optimizer creates its counters at its first step.
            if tensor is None or id(tensor) not in optimizer_step_counters(*self.optimizers):
                self.record.syncs.append((name, tuple(tensor.shape) if tensor is not None else ()))
        return func(*args, **(kwargs or {}))


def optimizer_step_counters(*optimizers) -> set[int]:
    """The ids of the optimizers' step-counter tensors (read on the host by design)."""
    return {
        id(state["step"])
        for opt in optimizers
        for state in opt.state.values()
        if isinstance(state.get("step"), torch.Tensor)
    }


def count_steps(trainer, steps) -> StepCalls:
    """Run ``trainer.train_step`` for each of ``steps`` (no log rows) and count their calls."""
    record = StepCalls(len(steps))
    frozen = torch.zeros(trainer.K, dtype=torch.bool, device=trainer.device)
    # Counted as the step runs on a GPU: the CPU's shortcut of reading the frozen mask on the
    # host (Trainer._mask) is off while counting.
    host_checks, trainer.host_checks = trainer.host_checks, False
    try:
        with _Counter(record, (trainer.state.opt_g, trainer.state.opt_d)):
            for step in steps:
                _, _, frozen = trainer.train_step(step, frozen, False)
    finally:
        trainer.host_checks = host_checks
    return record


@dataclass(frozen=True)
class PerStep:
    """A step's calls on average over a chunk of drawn numbers: a step inside a chunk
    (``steady``) plus 1 / ``CHUNK_STEPS`` of what drawing the next chunk adds."""

    members: int
    steady_total: float
    steady_kernels: float
    drawing_total: float
    drawing_kernels: float
    syncs: tuple

    @property
    def total(self) -> float:
        """ATen calls, views included."""
        return self.steady_total + self.drawing_total / CHUNK_STEPS

    @property
    def kernels(self) -> float:
        """ATen calls that launch a kernel on a GPU (views and metadata apart)."""
        return self.steady_kernels + self.drawing_kernels / CHUNK_STEPS


def per_step(trainer) -> PerStep:
    """Count a fresh trainer's calls: step 0 builds the optimizers' state and draws chunk 0 (not
    counted), steps 1 and 2 are steady, step ``CHUNK_STEPS`` draws chunk 1 (steps may be taken
    out of order here: only the counts matter)."""
    frozen = torch.zeros(trainer.K, dtype=torch.bool, device=trainer.device)
    trainer.train_step(0, frozen, False)
    steady = count_steps(trainer, [1, 2])
    drawing = count_steps(trainer, [CHUNK_STEPS])
    return PerStep(
        members=trainer.K,
        steady_total=steady.total / steady.steps,
        steady_kernels=steady.kernels / steady.steps,
        drawing_total=drawing.total - steady.total / steady.steps,
        drawing_kernels=drawing.kernels - steady.kernels / steady.steps,
        syncs=tuple(steady.syncs + drawing.syncs),
    )

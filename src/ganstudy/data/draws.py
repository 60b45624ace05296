"""The random numbers of a training step, for K members, drawn ahead in chunks of steps.

Every member has its own ``torch.Generator`` per stream (noise, data). Drawing a step's numbers
member by member costs one call per member and part each step, so a step's kernel count grew
with K: on a GPU, where every call is a kernel launch, seeds cost launches. Here a chunk of
``CHUNK_STEPS`` steps is drawn at once: for each member in turn, each part (e.g. the noise of
every D and G update of the next 64 steps) is filled by one call from that member's generator
into a contiguous block, which is then copied into the chunk's buffer of shape
``(steps, updates, K, *shape)``. A step reads ``buffer[step, update]``, a contiguous ``(K, *shape)``
tensor for every member at once. The calls per step are then K / ``CHUNK_STEPS`` per part on
average, and the step itself makes the same calls for any K.

Why member k stays the solo run k: its blocks have the same size whatever K, are filled by the
same calls of its own generator in the same order (parts in a fixed order, chunks at absolute
steps ``c x CHUNK_STEPS``), and a contiguous block of a given size is filled the same way
whatever else is in the buffer. ``CHUNK_STEPS`` must therefore not depend on K: it is a constant.

Resuming: a checkpoint holds each member's generator state at the start of the chunk it is in
and the chunk's index; loading re-draws that chunk, bitwise, and the step reads on from its
position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Steps per chunk. Memory: K x 64 steps x the step's numbers (e.g. 2 noise draws of 256 x 64
# floats for mlp2d at batch 256: 8.4 MB per member). Calls: K x parts per 64 steps.
CHUNK_STEPS = 64
# Recorded in every checkpoint: a checkpoint drawn by another scheme cannot be resumed bitwise.
SCHEME = f"chunks-{CHUNK_STEPS}"

KINDS = ("normal", "uniform", "uniform_pm1", "randint")


@dataclass(frozen=True)
class Part:
    """One kind of number a step needs, ``updates`` times per step (e.g. once per D update),
    each of per-member ``shape``: ``normal`` N(0, 1), ``uniform`` U(0, 1), ``uniform_pm1``
    U(-1, 1), ``randint`` integers in [0, high)."""

    name: str
    updates: int
    shape: tuple[int, ...]
    kind: str
    high: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"draw kind {self.kind!r}; allowed: {', '.join(KINDS)}")

    def fill(self, out: Tensor, generator: torch.Generator) -> None:
        if self.kind == "normal":
            out.normal_(generator=generator)
        elif self.kind == "uniform":
            out.uniform_(generator=generator)
        elif self.kind == "uniform_pm1":
            out.uniform_(-1.0, 1.0, generator=generator)
        else:
            out.random_(0, self.high, generator=generator)


class ChunkedDraws:
    """The parts of K members' steps, drawn ``CHUNK_STEPS`` steps ahead (see the module)."""

    def __init__(
        self,
        generators: list[torch.Generator],
        parts: list[Part],
        device,
        chunk_steps: int = CHUNK_STEPS,
    ):
        self.generators, self.parts, self.steps = list(generators), list(parts), chunk_steps
        K = len(self.generators)
        self.buffers, self._blocks = {}, {}
        for part in self.parts:
            dtype = torch.int64 if part.kind == "randint" else torch.get_default_dtype()
            size = (chunk_steps, part.updates)
            self.buffers[part.name] = torch.empty(
                size + (K,) + part.shape, dtype=dtype, device=device
            )
            self._blocks[part.name] = torch.empty(size + part.shape, dtype=dtype, device=device)
        self.chunk: int | None = None  # the chunk in the buffers
        self.next_chunk = 0  # the chunk the generators draw next
        self._start_states: list[Tensor] = []

    @property
    def nbytes(self) -> int:
        tensors = list(self.buffers.values()) + list(self._blocks.values())
        return sum(t.numel() * t.element_size() for t in tensors)

    def _draw(self) -> None:
        self._start_states = [g.get_state() for g in self.generators]
        for k, gen in enumerate(self.generators):
            for part in self.parts:
                block = self._blocks[part.name]
                part.fill(block, gen)
                self.buffers[part.name][:, :, k].copy_(block)
        self.chunk, self.next_chunk = self.next_chunk, self.next_chunk + 1

    def at(self, step: int) -> dict[str, Tensor]:
        """``{part: (updates, K, *shape)}``: the numbers of ``step`` (views into the chunk)."""
        chunk, pos = divmod(step, self.steps)
        if chunk != self.chunk:
            if chunk < self.next_chunk:
                raise RuntimeError(
                    f"step {step} is in chunk {chunk}, already drawn past (next: "
                    f"{self.next_chunk}); steps are read in order"
                )
            while self.next_chunk <= chunk:
                self._draw()
        return {name: buffer[pos] for name, buffer in self.buffers.items()}

    def member_state(self, k: int) -> dict:
        """What resumes member k: its generator state at the start of the current chunk."""
        if self.chunk is None:
            return {"chunk": self.next_chunk, "generator": self.generators[k].get_state()}
        return {"chunk": self.chunk, "generator": self._start_states[k].clone()}

    def load_members(self, states: list[dict]) -> None:
        chunks = {s["chunk"] for s in states}
        if len(chunks) != 1:
            raise ValueError(f"members' random numbers are at different chunks {sorted(chunks)}")
        for gen, state in zip(self.generators, states):
            gen.set_state(state["generator"])
        self.chunk, self.next_chunk = None, chunks.pop()

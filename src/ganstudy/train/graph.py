"""The whole training step as one CUDA graph (``train.compile: cudagraph``).

A step of a small GAN is hundreds of kernels of a few microseconds each: on a GPU its time is
the launches, not the arithmetic. Captured once as a CUDA graph, both networks' forward and
backward passes, both optimizers' updates (capturable Adam or RMSProp: their step counters live
on the GPU), the gap-aware factor, the frozen-member mask and the step's losses and log
statistics are replayed with one launch.

What stays outside the graph, each step: reading the step's random numbers and real batches
(:meth:`Trainer.step_inputs`, drawn ahead in chunks) and copying them into the graph's static
input buffers; every ``CHUNK_STEPS`` steps the drawing of the next chunk. Nothing random
happens inside the graph, so a replay computes exactly what an eager step computes from the
same inputs with the same kernels.

Capture follows PyTorch's recipe (``torch.cuda.graphs``): ``WARMUP_STEPS`` real training steps
run eagerly on a side stream first (they build the optimizers' state and let cuBLAS and cuDNN
choose their kernels), then the next step is captured, which runs nothing, and replayed. A
resumed run captures after loading its checkpoint, so resuming under the graph is the same as
resuming eagerly. Divergence is still caught at its step: the mask is part of the graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

WARMUP_STEPS = 3


class GraphedStep:
    """``trainer.step_body`` captured as a CUDA graph once ``WARMUP_STEPS`` steps ran."""

    def __init__(self, trainer):
        if trainer.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, not {trainer.device}")
        self.trainer = trainer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm_steps = 0
        self.static: dict | None = None
        self.outputs: tuple[Tensor, Tensor, Tensor] | None = None

    def _fill(self, inputs: dict) -> None:
        """Copy the step's inputs into the static buffers the graph reads."""
        for name, value in inputs.items():
            if name == "real":
                for buffer, batch in zip(self.static["real"], value):
                    buffer.copy_(batch)
            else:
                self.static[name].copy_(value)

    def _allocate(self, inputs: dict, frozen: Tensor) -> None:
        self.static = {
            name: [b.clone() for b in value] if name == "real" else value.clone()
            for name, value in inputs.items()
        }
        self.static["frozen"] = frozen.clone()

    def __call__(self, step: int, frozen: Tensor):
        inputs = self.trainer.step_inputs(step)
        if self.static is None:
            self._allocate(inputs, frozen)
        self._fill(inputs)
        if self.graph is None:
            # The frozen mask is the graph's input and output: keep it in the static buffer.
            if frozen is not self.static["frozen"]:
                self.static["frozen"].copy_(frozen)
            if self.warm_steps < WARMUP_STEPS:
                return self._warm_step()
            self._capture()
        self.graph.replay()
        return self.outputs

    def _body(self):
        static = self.static
        inputs = {name: value for name, value in static.items() if name != "frozen"}
        losses, stats, frozen = self.trainer.step_body(inputs, static["frozen"], True)
        static["frozen"].copy_(frozen)
        return losses, stats, static["frozen"]

    def _warm_step(self):
        side = torch.cuda.Stream(self.trainer.device)
        side.wait_stream(torch.cuda.current_stream(self.trainer.device))
        with torch.cuda.stream(side):
            out = self._body()
        torch.cuda.current_stream(self.trainer.device).wait_stream(side)
        self.warm_steps += 1
        return out

    def _capture(self) -> None:
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: tracking and progress threads may use CUDA (NVML) while this captures.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = self._body()

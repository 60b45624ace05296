"""How parameters are updated: the torch optimizers and D learning-rate schedules that implement
the registries of :mod:`ganstudy.optimizers` (the registry names each one with its settings;
this module builds it).

An ensemble's parameters carry a leading member dimension and share one torch optimizer, whose
state is per element and therefore per member. A schedule gives each member its own factor of
``lr_d`` (a tensor of shape (K,)), applied by :func:`ganstudy.train.step.apply_update` to that
member's step: Adam's and RMSProp's steps are linear in the learning rate (lr is in no state
they keep), so scaling a member's step by s is training it with lr_d x s, up to the rounding of
the parameter (a few ulps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganstudy.losses import ideal_d_loss
from ganstudy.optimizers import D_LR_SCHEDULES, OPTIMIZERS

# Devices on which Adam runs PyTorch's fused kernel (one kernel per tensor for the whole update).
# Not the CPU: its fused kernel computes the first multiple of the vector width of a tensor's
# elements with SIMD (fused multiply-adds) and the rest one by one, so the same parameter rounds
# differently in a tensor of 2 elements (a solo run's 2-d output bias) than in one of 8 (that
# bias in a 4-member ensemble): member k then leaves the solo run k from K = 4 on.
FUSED_DEVICES = ("cuda",)


def adam(params, lr: float, train, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam: PyTorch's fused kernel on CUDA; on the CPU its foreach implementation, whose
    elementwise operations round every element alike whatever the tensor's length, so an
    ensemble member's update is bitwise the solo run's (``FUSED_DEVICES``; measured: member 5 of
    4, 24 and 64 seeds equal to the solo run over 300 mlp2d steps with foreach, not with fused).
    foreach took 1.25 ms of a 12 ms mlp2d step on one CPU thread (fused 0.51, PyTorch's default
    for-loop 1.56). Which implementation ran is recorded (:func:`implementation`)."""
    params = list(params)
    fused = bool(params) and all(p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.Adam(
        params, lr=lr, betas=(train.beta1, train.beta2), fused=True if fused else None,
        foreach=None if fused else True, capturable=capturable,
    )  # fmt: skip


def rmsprop(params, lr: float, train, capturable: bool = False) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=train.rmsprop_alpha,
        eps=train.rmsprop_eps,
        momentum=train.rmsprop_momentum,
        capturable=capturable,
    )


def build_optimizer(params, lr: float, train, capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` of a resolved train config over ``params``;
    ``capturable``: its step counters on the device, so that a CUDA graph can replay its update
    (see :mod:`ganstudy.train.graph`)."""
    return globals()[OPTIMIZERS[train.optimizer].build](params, lr, train, capturable)


def keep_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """After ``load_state_dict``, which takes a group's settings from the file, set
    ``capturable`` back to this process's: whether it replays the update in a CUDA graph is its
    own, and the step counters move to where that needs them. The file's choice of fused,
    foreach or for-loop is kept: a resumed run computes its updates as it did before
    (:func:`implementation` records which)."""
    for group in optimizer.param_groups:
        group["capturable"] = capturable
        on_device = group.get("capturable") or group.get("fused")
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if isinstance(state.get("step"), torch.Tensor):
                # PyTorch keeps the step counter beside the parameter for these, else on the CPU
                device = p.device if on_device else "cpu"
                state["step"] = state["step"].to(device, torch.float32)


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """Which of PyTorch's implementations ``optimizer`` runs: fused, foreach or for-loop.

    Read from the parameter group, which ``step`` reads (a loaded state dict replaces the
    group's settings, not the optimizer's defaults). ``foreach`` None is PyTorch's choice:
    foreach where every tensor is on CUDA, the for-loop otherwise."""
    group = optimizer.param_groups[0]
    if group.get("fused"):
        return "fused"
    foreach = group.get("foreach")
    if foreach is None:
        foreach = all(p.device.type == "cuda" for p in group["params"])
    return "foreach" if foreach else "for-loop"


def direction_state(train) -> tuple[str, ...]:
    """The optimizer state zeroed for a frozen member (see OptimizerSpec.direction_state)."""
    return OPTIMIZERS[train.optimizer].direction_state


class GapAwareSchedule:
    """The gap-aware learning-rate schedule of D (Hazimeh & Ponomareva, "Mind the (optimality)
    Gap", AISTATS 2023), per member, as its reference code computes it (google-research,
    ``adversarial_nets_lr_scheduler/demo.ipynb``: ``lr_scheduler`` and ``train_step``):

    - before each D update, the moving average of D's loss takes the loss of that update's batch:
      ``ema <- w ema + (1 - w) loss_D`` (w = ``gap_ema``, 0.95), starting at the ideal loss V*;
    - x = |ema - V*|; D's learning rate is lr_d x s with
      ``s = min(f_max^(x / x_max), f_max)`` where ema > V*   (D loses: speed it up),
      ``s = max(h_min^(x / x_min), h_min)`` otherwise       (D wins: slow it down),
      x_min = ``gap_x_min`` V*, x_max = ``gap_x_max`` V* (the paper's 0.1 V*), h_min = 0.1,
      f_max = 2.

    V* is :func:`ganstudy.losses.ideal_d_loss` of the run's loss (log 4 for the standard GAN).
    The state (each member's moving average) is part of every member checkpoint.
    """

    def __init__(self, train, ideal: float, members: int, device):
        self.ideal = ideal
        self.weight = train.gap_ema
        self.h_min, self.f_max = train.gap_h_min, train.gap_f_max
        self.x_min, self.x_max = train.gap_x_min * ideal, train.gap_x_max * ideal
        self.ema = torch.full((members,), ideal, device=device)

    def factor(self, loss_d: Tensor) -> Tensor:
        """Update each member's moving average with its loss of this D update (shape (K,)) and
        return each member's factor of lr_d for this update."""
        # In place: a CUDA graph of the step reads and writes this one tensor.
        self.ema.copy_(self.weight * self.ema + (1 - self.weight) * loss_d)
        gap = (self.ema - self.ideal).abs()
        up = torch.pow(self.f_max, gap / self.x_max).clamp(1.0, self.f_max)
        down = torch.pow(self.h_min, gap / self.x_min).clamp(self.h_min, 1.0)
        return torch.where(self.ema > self.ideal, up, down)

    def member_state(self, k: int) -> dict:
        return {"ema": self.ema[k : k + 1].detach().clone().cpu()}

    def load_members(self, states: list[dict]) -> None:
        self.ema.copy_(torch.cat([s["ema"] for s in states]))


def build_schedule(cfg, members: int, device) -> GapAwareSchedule | None:
    """The D learning-rate schedule of a resolved run config (None: a constant lr_d)."""
    spec = D_LR_SCHEDULES[cfg.train.d_lr_schedule]
    if spec.build is None:
        return None
    return globals()[spec.build](cfg.train, ideal_d_loss(cfg.loss), members, device)

"""The maths around one training step: per-member seeds, initialisation, gradient norms and the
masked update that freezes a diverged member.

Member k's random streams (initialisation, noise, data order, sample noise) come from its run
seed alone, so member k of an ensemble follows the trajectory of a solo run with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ganstudy.config import RunConfig
from ganstudy.data import registry
from ganstudy.loss_functions import gradient_penalty
from ganstudy.nets.bodies import build_pair
from ganstudy.nets.layers import init_members


@dataclass(frozen=True)
class MemberSeeds:
    """Independent seeds of one member's random streams, derived from its run seed."""

    init: int
    noise: int
    data: int
    sample: int

    @classmethod
    def from_seed(cls, seed: int) -> MemberSeeds:
        words = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint32)
        return cls(*(int(w) for w in words))


def init_networks(cfg: RunConfig, seeds: list[int], device: torch.device):
    """The (G, D) ensemble, member k initialised from its own generator (on the CPU, so the
    initial weights do not depend on the device)."""
    spec = registry.dataset(cfg.dataset.name)
    generator, discriminator = build_pair(cfg, len(seeds), spec.shape)
    for k, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(MemberSeeds.from_seed(seed).init)
        init_members(generator, k, gen, cfg.arch.init)
        init_members(discriminator, k, gen, cfg.arch.init)
    return generator.to(device), discriminator.to(device)


def norms(grads: tuple[Tensor, ...]) -> Tensor:
    """Per-member L2 norm over all parameters: sqrt(sum_p ||grad_p[k]||^2)."""
    # (K, P) rows reduced along their contiguous dimension: the same rounding for any K.
    per_param = torch.stack([g.detach().flatten(1).square().sum(1) for g in grads], dim=1)
    return per_param.sum(1).sqrt()


def apply_update(
    params: list[Tensor],
    grads: tuple[Tensor, ...],
    optimizer,
    frozen: Tensor | None,
    scale: Tensor | None = None,
    direction_state: tuple[str, ...] = ("exp_avg",),
):
    """One optimizer step. ``frozen`` members keep their parameters; ``scale`` (shape (K,))
    multiplies each member's step, i.e. its learning rate (see :mod:`ganstudy.train.updates`)."""
    for p, g in zip(params, grads):
        p.grad = g
    keep_shape = [(-1,) + (1,) * (p.dim() - 1) for p in params]
    if frozen is not None:
        # Zero the gradient and the state that carries the step's direction (Adam's first
        # moment, RMSProp's momentum buffer): the update is then 0.
        for p, shape in zip(params, keep_shape):
            alive = ~frozen.view(shape)
            p.grad = torch.where(alive, p.grad, torch.zeros((), device=p.device))
            state = optimizer.state.get(p)
            for key in direction_state:
                if state and key in state:
                    state[key].mul_(alive)
        if scale is not None:
            # A frozen member's factor may be NaN (its loss was); its zero step must stay zero.
            scale = torch.where(frozen, torch.ones((), device=scale.device), scale)
    before = None if scale is None else [p.detach().clone() for p in params]
    optimizer.step()
    if before is not None:
        with torch.no_grad():
            for p, old, shape in zip(params, before, keep_shape):
                # p - old is the step the optimizer took (exactly, while the step is small
                # next to the parameter: Sterbenz's lemma); only that step is scaled.
                p.sub_(old).mul_(scale.view(shape)).add_(old)


def penalty(D, real: Tensor, fake: Tensor, eps: Tensor, weight: float):
    """``weight`` x the gradient penalty of D at x_hat = eps x + (1 - eps) G(z), with ``eps``
    (K, batch) ~ U(0, 1), one per sample, from each member's noise stream (see
    :func:`ganstudy.loss_functions.gradient_penalty`)."""
    eps = eps.view(real.shape[:2] + (1,) * (real.dim() - 2))
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return weight * gradient_penalty(grad, real.dim() - 2)

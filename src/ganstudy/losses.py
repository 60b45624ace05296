"""GAN losses as pure functions of the raw discriminator outputs.

Every function takes ``d_real`` / ``d_fake`` of shape ``(..., B)`` (raw, unbounded outputs of D,
no sigmoid applied) and returns the loss averaged over the last (batch) dimension, so a
multi-seed ensemble with outputs of shape ``(K, B)`` gets one loss per member, shape ``(K,)``.

``LOSSES`` maps a name to a :class:`Loss` (discriminator loss, generator loss, whether the
discriminator loss needs the gradient penalty, and the LSGAN coding where it applies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch.nn.functional as F
from torch import Tensor


def gan_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Standard GAN, sigmoid cross-entropy on logits.

    L_D = -E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))]
        = E[softplus(-D(x))] + E[softplus(D(G(z)))]
    """
    return F.softplus(-d_real).mean(-1) + F.softplus(d_fake).mean(-1)


def gan_ns_g_loss(d_fake: Tensor) -> Tensor:
    """Non-saturating generator loss: L_G = -E[log sigmoid(D(G(z)))] = E[softplus(-D(G(z)))]."""
    return F.softplus(-d_fake).mean(-1)


def gan_minimax_g_loss(d_fake: Tensor) -> Tensor:
    """Saturating (minimax) generator loss: L_G = E[log(1 - sigmoid(D(G(z))))] = -E[softplus(D(G(z)))]."""
    return -F.softplus(d_fake).mean(-1)


def lsgan_d_loss(d_real: Tensor, d_fake: Tensor, a: float, b: float) -> Tensor:
    """Least squares, on the raw output: L_D = 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]."""
    return 0.5 * (d_real - b).square().mean(-1) + 0.5 * (d_fake - a).square().mean(-1)


def lsgan_g_loss(d_fake: Tensor, c: float) -> Tensor:
    """Least squares generator loss: L_G = 1/2 E[(D(G(z)) - c)^2]."""
    return 0.5 * (d_fake - c).square().mean(-1)


def l1_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """L1 GAN with an unbounded discriminator: L_D = E|D(x) - 1| + E|D(G(z))|."""
    return (d_real - 1).abs().mean(-1) + d_fake.abs().mean(-1)


def l1_g_loss(d_fake: Tensor) -> Tensor:
    """L1 GAN generator loss: L_G = E|D(G(z)) - 1|."""
    return (d_fake - 1).abs().mean(-1)


def wasserstein_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """WGAN critic loss (without the penalty): L_D = E[D(G(z))] - E[D(x)]."""
    return d_fake.mean(-1) - d_real.mean(-1)


def wasserstein_g_loss(d_fake: Tensor) -> Tensor:
    """WGAN generator loss: L_G = -E[D(G(z))]."""
    return -d_fake.mean(-1)


def hinge_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Hinge loss: L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1 - d_real).mean(-1) + F.relu(1 + d_fake).mean(-1)


def gradient_penalty(grad: Tensor, sample_dims: int) -> Tensor:
    """WGAN-GP penalty from the gradient of D at interpolates x_hat, shape (..., B, *sample):

    GP = E[(||grad_x_hat D(x_hat)||_2 - 1)^2], the mean over the batch dimension, where the norm
    runs over the last ``sample_dims`` dimensions.
    """
    norms = grad.flatten(start_dim=grad.dim() - sample_dims).norm(dim=-1)
    return (norms - 1).square().mean(-1)


@dataclass(frozen=True)
class Loss:
    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    description: str
    gradient_penalty: bool = False
    coding: tuple[float, float, float] | None = None


LSGAN_PRESETS = {"lsgan": (0.0, 1.0, 1.0), "lsgan_chi2": (-1.0, 1.0, 0.0)}

LOSSES: dict[str, Loss] = {
    "gan": Loss("gan", gan_d_loss, gan_ns_g_loss, "standard GAN, non-saturating G loss"),
    "gan_minimax": Loss(
        "gan_minimax", gan_d_loss, gan_minimax_g_loss, "standard GAN, saturating (minimax) G loss"
    ),
    "lsgan": Loss(
        "lsgan",
        lsgan_d_loss,
        lsgan_g_loss,
        "least squares GAN, 0-1 coding (a, b, c) = (0, 1, 1)",
        coding=LSGAN_PRESETS["lsgan"],
    ),
    "lsgan_chi2": Loss(
        "lsgan_chi2",
        lsgan_d_loss,
        lsgan_g_loss,
        "least squares GAN, (a, b, c) = (-1, 1, 0): b - c = 1, b - a = 2 (Pearson chi^2)",
        coding=LSGAN_PRESETS["lsgan_chi2"],
    ),
    "l1": Loss("l1", l1_d_loss, l1_g_loss, "L1 GAN with an unbounded discriminator"),
    "wgan_gp": Loss(
        "wgan_gp",
        wasserstein_d_loss,
        wasserstein_g_loss,
        "Wasserstein GAN with gradient penalty",
        gradient_penalty=True,
    ),
    "hinge": Loss("hinge", hinge_d_loss, wasserstein_g_loss, "hinge loss"),
}


def resolve_coding(loss_cfg) -> tuple[float | None, float | None, float | None]:
    """The (a, b, c) coding of an LSGAN loss config: explicit values override the preset.

    Non-LSGAN losses take no coding; setting one there is an error.
    """
    from ganstudy.config import ConfigError

    given = (loss_cfg.a, loss_cfg.b, loss_cfg.c)
    preset = LOSSES[loss_cfg.name].coding
    if preset is None:
        if any(v is not None for v in given):
            raise ConfigError(
                f"keys 'loss.a/b/c': {given} given for loss '{loss_cfg.name}', which has no "
                f"coding; allowed only for: {', '.join(LSGAN_PRESETS)}"
            )
        return None, None, None
    return tuple(p if v is None else float(v) for v, p in zip(given, preset))


def build_loss(loss_cfg) -> tuple[Callable, Callable, bool]:
    """The (d_loss, g_loss, needs_gradient_penalty) triple of a validated loss config."""
    loss = LOSSES[loss_cfg.name]
    if loss.coding is None:
        return loss.d_loss, loss.g_loss, loss.gradient_penalty
    a, b, c = resolve_coding(loss_cfg)
    return partial(loss.d_loss, a=a, b=b), partial(loss.g_loss, c=c), loss.gradient_penalty

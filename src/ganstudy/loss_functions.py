"""GAN losses as pure functions of the raw discriminator outputs.

Every function takes ``d_real`` / ``d_fake`` of shape ``(..., B)`` (raw, unbounded outputs of D,
no sigmoid applied) and returns the loss averaged over the last (batch) dimension, so a
multi-seed ensemble with outputs of shape ``(K, B)`` gets one loss per member, shape ``(K,)``.
The registry :data:`ganstudy.losses.LOSSES` names the pair each loss uses.
"""

from __future__ import annotations

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

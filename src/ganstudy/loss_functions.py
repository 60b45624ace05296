"""GAN losses as pure functions of the raw discriminator outputs.

Every function takes ``d_real`` / ``d_fake`` of shape ``(..., B)`` (raw, unbounded outputs of D,
no sigmoid applied) and returns the loss averaged over the last (batch) dimension, so a
multi-seed ensemble with outputs of shape ``(K, B)`` gets one loss per member, shape ``(K,)``.
The registry :data:`ganstudy.losses.LOSSES` names the pair each loss uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# The alpha-loss reference implementation (SankarLab/AlphaGan-Papers-Results, gan.py, AlphaLoss)
# clamps D's probability to [eps, 1 - eps] for alpha != 1; below alpha = 1 the loss is unbounded
# as the probability goes to 0, and the clamp keeps it finite.
ALPHA_EPS = 1e-7


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


def lsgan_sigmoid_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Least squares on sigmoid(D), Lucic et al. 2018's "LSGAN" as compare_gan codes it
    (google/compare_gan, v1, compare_gan/src/gans/LSGAN.py: ``D_real``/``D_fake`` are the
    discriminator's sigmoid outputs, abstract_gan.py), with targets 1 for reals and 0 for fakes:

    L_D = 1/2 (E[(sigmoid(D(x)) - 1)^2] + E[sigmoid(D(G(z)))^2])
        = 1/2 E[sigmoid(-D(x))^2] + 1/2 E[sigmoid(D(G(z)))^2]

    (1 - sigmoid(t) = sigmoid(-t), which keeps the real term accurate where sigmoid(t) is near 1).
    Unlike :func:`lsgan_d_loss` every term is bounded: at most 1/2 per sample. Its ideal value
    (p_g = p_d, the best D outputs sigmoid(D) = 1/2 everywhere) is V* = 1/2 (1/4 + 1/4) = 1/4.
    """
    return 0.5 * (
        torch.sigmoid(-d_real).square().mean(-1) + torch.sigmoid(d_fake).square().mean(-1)
    )


def lsgan_sigmoid_g_loss(d_fake: Tensor) -> Tensor:
    """Least squares on sigmoid(D), generator (compare_gan's LSGAN ``g_loss``):
    L_G = 1/2 E[(sigmoid(D(G(z))) - 1)^2] = 1/2 E[sigmoid(-D(G(z)))^2]."""
    return 0.5 * torch.sigmoid(-d_fake).square().mean(-1)


def _alpha_loss_of_correct(logit: Tensor, alpha: float) -> Tensor:
    """alpha-loss of a sample whose correct class has probability p = sigmoid(logit), per sample:

    l_alpha(p) = alpha / (alpha - 1) * (1 - p^((alpha - 1) / alpha))   for alpha in (0, 1) u (1, inf)
    l_1(p)     = -log p = softplus(-logit)                               (the limit alpha -> 1)
    l_inf(p)   = 1 - p                                                   (the limit alpha -> inf)

    With k = (alpha - 1) / alpha, l_alpha(p) = -expm1(k log p) / k, which stays accurate near
    alpha = 1. log p is clamped to [log eps, log(1 - eps)] (:data:`ALPHA_EPS`) as the reference
    clamps p, except at alpha = 1, where the formula is the standard GAN's.
    """
    if alpha == 1:
        return F.softplus(-logit)
    log_p = F.logsigmoid(logit).clamp(math.log(ALPHA_EPS), math.log1p(-ALPHA_EPS))
    if math.isinf(alpha):
        return -torch.expm1(log_p)
    k = (alpha - 1) / alpha
    return -torch.expm1(k * log_p) / k


def alpha_d_loss(d_real: Tensor, d_fake: Tensor, alpha: float) -> Tensor:
    """(alpha_D, alpha_G)-GAN discriminator loss (Welfert, Otstot, Kurri, Sankar 2023, eq. 4-5a;
    reference: SankarLab/AlphaGan-Papers-Results, gan.py, ``AlphaLoss`` and
    ``GAN.train_discriminator``): alpha-loss with labels 1 for reals and 0 for fakes,

    L_D = E[l_alpha(sigmoid(D(x)))] + E[l_alpha(1 - sigmoid(D(G(z))))],  alpha = alpha_D in (0, inf],

    where l_alpha is the loss of the probability given to the correct class
    (:func:`_alpha_loss_of_correct`; 1 - sigmoid(t) = sigmoid(-t)). At alpha = 1 this is
    :func:`gan_d_loss`, term by term.
    """
    return _alpha_loss_of_correct(d_real, alpha).mean(-1) + _alpha_loss_of_correct(
        -d_fake, alpha
    ).mean(-1)


def alpha_ns_g_loss(d_fake: Tensor, alpha: float) -> Tensor:
    """Non-saturating (alpha_D, alpha_G)-GAN generator loss (eq. 10-11 of the paper; the
    reference's ``train_generator`` with ``flip=True``, as run for its ring and Stacked MNIST
    results): alpha-loss of the fakes labelled real,

    L_G = E[l_alpha(sigmoid(D(G(z))))],  alpha = alpha_G in (0, inf].

    At alpha = 1 this is :func:`gan_ns_g_loss`.
    """
    return _alpha_loss_of_correct(d_fake, alpha).mean(-1)


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

"""The bodies of the generator/discriminator pairs that :data:`ganstudy.nets.ARCHS` names.

Every network is an ensemble of K members built from :mod:`ganstudy.nets.layers` (K = 1 for a
solo run). Generators map z of shape (K, B, z_dim) to samples (K, B, *sample_shape); discriminators
map samples (K, B, *sample_shape) to raw, unbounded outputs (K, B). Batch norm is a factor of
the study: ``bn.g`` / ``bn.d`` switch every batch-norm layer of G / D on or off; with a flag off
no batch-norm module exists at all.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ganstudy.nets import ARCHS
from ganstudy.nets.layers import (
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Linear,
    LinearMaxout,
    Maxout,
    ToFeatures,
    ToImages,
    images_to_member_layout,
    member_layout_to_images,
)


class Generator(nn.Module):
    def __init__(self, body: nn.Sequential, members: int, sample_shape: tuple[int, ...]):
        super().__init__()
        self.body, self.members, self.sample_shape = body, members, tuple(sample_shape)

    def forward(self, z: Tensor) -> Tensor:
        out = self.body(z)
        if len(self.sample_shape) == 3:
            return member_layout_to_images(out, self.members)
        return out


class Discriminator(nn.Module):
    def __init__(self, body: nn.Sequential, members: int, sample_shape: tuple[int, ...]):
        super().__init__()
        self.body, self.members, self.sample_shape = body, members, tuple(sample_shape)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.sample_shape) == 3:
            x = images_to_member_layout(x)
        return self.body(x).squeeze(-1)


def _bn(enabled: bool, members: int, channels: int) -> list[nn.Module]:
    return [BatchNorm(members, channels)] if enabled else []


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def dcgan28(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool):
    """The 28x28 pair of large GAN comparisons (Lucic et al. 2018; InfoGAN's MNIST networks).

    G: z -> FC 1024 -> FC 128*7*7 -> deconv4x4/2 64 -> deconv4x4/2 C, tanh.
    D: conv4x4/2 64 -> conv4x4/2 128 -> FC 1024 -> FC 1, LeakyReLU(0.2), no BN on D's input layer.
    """
    c = shape[0]
    g = nn.Sequential(
        Linear(k, z_dim, 1024), *_bn(bn_g, k, 1024), nn.ReLU(),
        Linear(k, 1024, 128 * 7 * 7), *_bn(bn_g, k, 128 * 7 * 7), nn.ReLU(),
        ToImages(128, 7),
        ConvTranspose2d(k, 128, 64, 4, 2, 1), *_bn(bn_g, k, 64), nn.ReLU(),
        ConvTranspose2d(k, 64, c, 4, 2, 1), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        Conv2d(k, c, 64, 4, 2, 1), _lrelu(),
        Conv2d(k, 64, 128, 4, 2, 1), *_bn(bn_d, k, 128), _lrelu(),
        ToFeatures(k),
        Linear(k, 128 * 7 * 7, 1024), *_bn(bn_d, k, 1024), _lrelu(),
        Linear(k, 1024, 1),
    )  # fmt: skip
    return g, d


def dcgan28_small(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool):
    """A lower-capacity 28x28 pair: no 1024-unit layers, half the channels.

    G: z -> FC 64*7*7 -> deconv4x4/2 32 -> deconv4x4/2 C, tanh.
    D: conv4x4/2 32 -> conv4x4/2 64 -> FC 1.
    """
    c = shape[0]
    g = nn.Sequential(
        Linear(k, z_dim, 64 * 7 * 7), *_bn(bn_g, k, 64 * 7 * 7), nn.ReLU(),
        ToImages(64, 7),
        ConvTranspose2d(k, 64, 32, 4, 2, 1), *_bn(bn_g, k, 32), nn.ReLU(),
        ConvTranspose2d(k, 32, c, 4, 2, 1), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        Conv2d(k, c, 32, 4, 2, 1), _lrelu(),
        Conv2d(k, 32, 64, 4, 2, 1), *_bn(bn_d, k, 64), _lrelu(),
        ToFeatures(k),
        Linear(k, 64 * 7 * 7, 1),
    )  # fmt: skip
    return g, d


def dcgan28_tiny(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool):
    """The small Stacked MNIST DCGAN of the (alpha_D, alpha_G)-GAN (Welfert, Otstot, Kurri, Sankar
    2023; SankarLab/AlphaGan-Papers-Results, experiments/stacked_mnist.py, ``model_width`` 1):
    3x3 kernels, stride 2, channels 8/16/32 and no bias in any convolution.

    G: z as z_dim x 1 x 1 -> deconv3x3/2 32 (3x3) -> deconv3x3/2 16 (7x7) -> deconv3x3/2 pad 1
    output_padding 1 8 (14x14) -> deconv3x3/2 pad 1 output_padding 1 C (28x28), BN + ReLU, tanh.
    D: conv3x3/2 pad 1 8 (14x14), LeakyReLU(0.2), no BN -> conv3x3/2 pad 1 16 (7x7) -> conv3x3/2
    32 (3x3), BN + LeakyReLU(0.2) -> conv3x3/2 1 (1x1), raw output. That last convolution sees a
    3x3 map with a 3x3 kernel and no padding, so it is a dot product with the flattened
    (32, 3, 3) features: it is built as a bias-free Linear(32 * 3 * 3, 1), the same function
    with the same 288 weights in the same (channel, row, column) order and the same fan-in.
    The reference draws z from N(0, I) with z_dim 100 and initialises as ``arch.init: dcgan``
    (gan.py, ``weights_init``); ``width`` is unused.
    """
    c = shape[0]
    g = nn.Sequential(
        ToImages(z_dim, 1),
        ConvTranspose2d(k, z_dim, 32, 3, 2, 0, bias=False), *_bn(bn_g, k, 32), nn.ReLU(),
        ConvTranspose2d(k, 32, 16, 3, 2, 0, bias=False), *_bn(bn_g, k, 16), nn.ReLU(),
        ConvTranspose2d(k, 16, 8, 3, 2, 1, 1, bias=False), *_bn(bn_g, k, 8), nn.ReLU(),
        ConvTranspose2d(k, 8, c, 3, 2, 1, 1, bias=False), nn.Tanh(),
    )  # fmt: skip
    d = nn.Sequential(
        Conv2d(k, c, 8, 3, 2, 1, bias=False), _lrelu(),
        Conv2d(k, 8, 16, 3, 2, 1, bias=False), *_bn(bn_d, k, 16), _lrelu(),
        Conv2d(k, 16, 32, 3, 2, 0, bias=False), *_bn(bn_d, k, 32), _lrelu(),
        ToFeatures(k),
        Linear(k, 32 * 3 * 3, 1, bias=False),
    )  # fmt: skip
    return g, d


def _dcgan_generator(k, shape, z_dim, width, bn):
    c, res = shape[0], shape[1]
    n_up = int(math.log2(res)) - 2
    ch = width * 2 ** (n_up - 1)
    layers: list[nn.Module] = [
        Linear(k, z_dim, ch * 16),
        *_bn(bn, k, ch * 16),
        nn.ReLU(),
        ToImages(ch, 4),
    ]
    for _ in range(n_up - 1):
        layers += [ConvTranspose2d(k, ch, ch // 2, 4, 2, 1), *_bn(bn, k, ch // 2), nn.ReLU()]
        ch //= 2
    layers += [ConvTranspose2d(k, ch, c, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def _dcgan_discriminator(k, shape, width, bn):
    c, res = shape[0], shape[1]
    n_down = int(math.log2(res)) - 2
    layers: list[nn.Module] = [Conv2d(k, c, width, 4, 2, 1), _lrelu()]
    ch = width
    for _ in range(n_down - 1):
        layers += [Conv2d(k, ch, ch * 2, 4, 2, 1), *_bn(bn, k, ch * 2), _lrelu()]
        ch *= 2
    layers += [ToFeatures(k), Linear(k, ch * 16, 1)]
    return nn.Sequential(*layers)


def dcgan(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool):
    """DCGAN (Radford et al. 2016) for 64x64 or 128x128: 4x4 kernels, stride 2.

    G: z -> FC to (width * 2^(n-1)) x 4 x 4, then n - 1 deconvs halving the channels and one to
    C, with BN + ReLU and a tanh output (n = log2(resolution) - 2). D mirrors it with
    LeakyReLU(0.2), no BN on the input layer, and a final 4x4 -> 1 linear output.
    """
    return _dcgan_generator(k, shape, z_dim, width, bn_g), _dcgan_discriminator(
        k, shape, width, bn_d
    )


def mlp_g(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool):
    """A "difficult architecture" of the LSGAN paper: an MLP generator (4 hidden layers of 512
    ReLU units) against the DCGAN discriminator of the same resolution."""
    c, res = shape[0], shape[1]
    layers: list[nn.Module] = []
    fan_in = z_dim
    for _ in range(4):
        layers += [Linear(k, fan_in, 512), *_bn(bn_g, k, 512), nn.ReLU()]
        fan_in = 512
    layers += [Linear(k, 512, c * res * res), nn.Tanh(), ToImages(c, res)]
    if res == 28:
        _, d = dcgan28(k, shape, z_dim, width, bn_g, bn_d)
    else:
        d = _dcgan_discriminator(k, shape, width, bn_d)
    return nn.Sequential(*layers), d


def _mlp(
    k: int,
    fan_in: int,
    layers: int,
    width: int,
    out: int,
    bn: bool,
    activation,
    hidden_bias: bool = True,
):
    body: list[nn.Module] = []
    for _ in range(layers):
        body += [Linear(k, fan_in, width, hidden_bias), *_bn(bn, k, width), activation()]
        fan_in = width
    body.append(Linear(k, fan_in, out))
    return nn.Sequential(*body)


def mlp2d(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool, *, mlp: dict):
    """ReLU MLPs for 2D mixtures, the PacGAN/VEEGAN generator sizes by default.

    G: z -> g_layers hidden layers of g_width ReLU units -> 2 (default 4 x 400).
    D: x -> d_layers hidden layers of d_width ReLU units -> 1 (default 3 x 200).
    """
    g = _mlp(k, z_dim, mlp["g_layers"], mlp["g_width"], shape[0], bn_g, nn.ReLU)
    d = _mlp(k, shape[0], mlp["d_layers"], mlp["d_width"], 1, bn_d, nn.ReLU)
    return g, d


def mlp2d_lrelu(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool, *, mlp: dict):
    """The 2D-ring networks of the (alpha_D, alpha_G)-GAN (Welfert et al. 2023, experiments/2D.py).

    G: z -> g_layers hidden layers of g_width ReLU units -> 2 (default 4 x 400).
    D: x -> d_layers hidden layers of d_width LeakyReLU(0.2) units -> 1 (default 4 x 200).
    """
    g = _mlp(k, z_dim, mlp["g_layers"], mlp["g_width"], shape[0], bn_g, nn.ReLU)
    d = _mlp(k, shape[0], mlp["d_layers"], mlp["d_width"], 1, bn_d, _lrelu)
    return g, d


# Pieces per maxout unit of mlp2d_maxout's D: PacGAN's disc_maxout_pieces, fixed by the architecture.
MAXOUT_PIECES = 5


def mlp2d_maxout(k: int, shape, z_dim: int, width: int, bn_g: bool, bn_d: bool, *, mlp: dict):
    """PacGAN's 2D-mixture networks (Lin et al. 2018; fjxmlzn/PacGAN,
    synthetic_data_experiments/2D{Ring,Grid}_GAN&PacGAN/pacgan_task.py and config.py), unpacked.

    G: z -> g_layers hidden layers of g_width ReLU units with BN -> 2 (default 4 x 400). As in the
    reference (a blocks MLP with ``use_bias=False``, only the output layer given a bias back), a
    hidden layer followed by batch norm has no bias: BN's shift takes its place. With ``bn.g``
    false the hidden layers keep a bias.
    D: x -> d_layers maxout layers of d_width units with :data:`MAXOUT_PIECES` (5) pieces each
    -> a linear output of 1 (default 3 x 200), raw logits. The reference's D has biases and no
    batch norm (``bn.d: false`` reproduces it); ``bn.d: true`` normalises each maxout layer's
    linear outputs before the max, and drops their bias.
    The reference draws weights N(0, 0.02) and biases 0 (``arch.init: dcgan``; its BN scales
    start at 1, not N(1, 0.02)).
    """
    g = _mlp(
        k, z_dim, mlp["g_layers"], mlp["g_width"], shape[0], bn_g, nn.ReLU, hidden_bias=not bn_g
    )
    body: list[nn.Module] = []
    fan_in = shape[0]
    for _ in range(mlp["d_layers"]):
        units = mlp["d_width"]
        if bn_d:
            # Linear -> BN -> max over the pieces, as _mlp's Linear -> BN -> activation.
            body += [
                Linear(k, fan_in, units * MAXOUT_PIECES, bias=False),
                BatchNorm(k, units * MAXOUT_PIECES),
                Maxout(MAXOUT_PIECES),
            ]
        else:
            body.append(LinearMaxout(k, fan_in, units, MAXOUT_PIECES))
        fan_in = units
    body.append(Linear(k, fan_in, 1))
    return g, nn.Sequential(*body)


def build_pair(cfg, members: int, sample_shape) -> tuple[Generator, Discriminator]:
    """An uninitialised (G, D) ensemble pair for a validated run config."""
    a = cfg.arch
    arch = ARCHS[a.name]
    build_bodies = globals()[arch.bodies]
    shape = tuple(sample_shape)
    extra = {}
    if arch.mlp_defaults:
        extra["mlp"] = {
            key: default if getattr(a, key) is None else getattr(a, key)
            for key, default in arch.mlp_defaults.items()
        }
    g_body, d_body = build_bodies(members, shape, a.z_dim, a.width, a.bn.g, a.bn.d, **extra)
    return Generator(g_body, members, shape), Discriminator(d_body, members, shape)

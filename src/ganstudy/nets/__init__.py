"""Generator/discriminator architectures: the registry ``ARCHS``, one :class:`Arch` per name.

An :class:`Arch` says which datasets it fits (kind, resolutions, channels) and names the
function of :mod:`ganstudy.nets.bodies` that builds its two bodies; ``bodies.build_pair`` builds
the networks. This module imports no torch: run configs are checked against it when the
Snakefile is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# How member weights are drawn (ganstudy.nets.layers.MemberModule.init_member).
INIT_SCHEMES = {
    "dcgan": "weights N(0, 0.02), biases 0, batch-norm scales N(1, 0.02) (Radford et al. 2016)",
    "pytorch": "PyTorch's default: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), "
    "batch-norm scales 1",
}
# The depth and width keys of the MLP architectures (arch.g_layers, ...): hidden layers and
# units per hidden layer of G and of D.
MLP_KEYS = ("g_layers", "g_width", "d_layers", "d_width")


@dataclass(frozen=True)
class Arch:
    name: str
    # A function of ganstudy.nets.bodies: (members, shape, arch config) -> (G body, D body).
    bodies: str
    description: str
    kinds: tuple[str, ...]
    resolutions: tuple[int, ...] = ()
    channels: tuple[int, ...] = (1, 3)
    # Defaults of the MLP_KEYS for an architecture that has them; others must leave them unset.
    mlp_defaults: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_defaults", MappingProxyType(dict(self.mlp_defaults)))

    def supports(self, spec) -> bool:
        if spec.kind not in self.kinds:
            return False
        if spec.kind != "image":
            return True
        return spec.shape[1] in self.resolutions and spec.shape[0] in self.channels


ARCHS: dict[str, Arch] = {
    arch.name: arch
    for arch in (
        Arch("dcgan28", "dcgan28", "28x28 DCGAN of Lucic et al. 2018", ("image",), (28,)),
        Arch("dcgan28_small", "dcgan28_small", "lower-capacity 28x28 DCGAN", ("image",), (28,)),
        Arch(
            "dcgan28_tiny", "dcgan28_tiny",
            "tiny 28x28 DCGAN, 3x3 kernels, channels 8/16/32, no biases (the (alpha_D, "
            "alpha_G)-GAN Stacked MNIST nets)",
            ("image",), (28,),
        ),
        Arch("dcgan64", "dcgan", "DCGAN for 64x64 RGB", ("image",), (64,), (3,)),
        Arch("dcgan128", "dcgan", "DCGAN for 128x128 RGB", ("image",), (128,), (3,)),
        Arch("mlp_g", "mlp_g", "MLP generator vs DCGAN discriminator", ("image",), (28, 64)),
        Arch(
            "mlp2d", "mlp2d", "ReLU MLPs for 2D mixtures (PacGAN/VEEGAN generator sizes)",
            ("mixture2d",),
            mlp_defaults={"g_layers": 4, "g_width": 400, "d_layers": 3, "d_width": 200},
        ),
        Arch(
            "mlp2d_lrelu", "mlp2d_lrelu",
            "MLPs for 2D mixtures, ReLU G and LeakyReLU(0.2) D (the (alpha_D, alpha_G)-GAN ring "
            "nets)",
            ("mixture2d",),
            mlp_defaults={"g_layers": 4, "g_width": 400, "d_layers": 4, "d_width": 200},
        ),
        Arch(
            "mlp2d_maxout", "mlp2d_maxout",
            "PacGAN's 2D-mixture nets: ReLU G with BN, maxout D (5 pieces) without BN (bn.d false)",
            ("mixture2d",),
            mlp_defaults={"g_layers": 4, "g_width": 400, "d_layers": 3, "d_width": 200},
        ),
    )
}  # fmt: skip

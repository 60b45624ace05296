"""Generator/discriminator architectures: the registry ``ARCHS``, one :class:`Arch` per name.

An :class:`Arch` says which datasets it fits (kind, resolutions, channels) and names the
function of :mod:`ganstudy.nets.bodies` that builds its two bodies; ``bodies.build_pair`` builds
the networks. This module imports no torch: run configs are checked against it when the
Snakefile is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str
    # A function of ganstudy.nets.bodies: (members, shape, z_dim, width, bn_g, bn_d) -> bodies.
    bodies: str
    description: str
    kinds: tuple[str, ...]
    resolutions: tuple[int, ...] = ()
    channels: tuple[int, ...] = (1, 3)

    def supports(self, spec) -> bool:
        if spec.kind not in self.kinds:
            return False
        if spec.kind != "image":
            return True
        return spec.shape[1] in self.resolutions and spec.shape[0] in self.channels


ARCHS: dict[str, Arch] = {
    "dcgan28": Arch("dcgan28", "dcgan28", "28x28 DCGAN of Lucic et al. 2018", ("image",), (28,)),
    "dcgan28_small": Arch(
        "dcgan28_small", "dcgan28_small", "lower-capacity 28x28 DCGAN", ("image",), (28,)
    ),
    "dcgan64": Arch("dcgan64", "dcgan", "DCGAN for 64x64 RGB", ("image",), (64,), (3,)),
    "dcgan128": Arch("dcgan128", "dcgan", "DCGAN for 128x128 RGB", ("image",), (128,), (3,)),
    "mlp_g": Arch("mlp_g", "mlp_g", "MLP generator vs DCGAN discriminator", ("image",), (28, 64)),
    "mlp2d": Arch("mlp2d", "mlp2d", "MLPs for 2D mixtures (PacGAN/VEEGAN)", ("mixture2d",)),
}

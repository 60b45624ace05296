"""Datasets of the study (registry ``DATASETS``) and the batch streams that feed training.

Image datasets are prepared once into uint8 tensors (see :mod:`ganstudy.prepare`), moved to the
training device as one tensor, and batches are indexed from it: no DataLoader, no per-step
host work beyond one gather. 2D Gaussian mixtures are sampled directly.

Every stream draws for K members at once with one random stream per member, so member k of an
ensemble sees exactly the batches of a solo run with the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "image" or "mixture2d"
    shape: tuple[int, ...]
    n_classes: int
    description: str
    # Set on a dataset used in place of another one that cannot be fetched; reports name it so.
    substitute_for: str | None = None
    splits: tuple[str, ...] = ("train",)

    def describe_shape(self) -> str:
        if self.kind == "image":
            c, h, w = self.shape
            return f"{h}x{w}x{c} images"
        return f"{self.shape[0]}D points"


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "fashion_mnist", "image", (1, 28, 28), 10, "Fashion-MNIST (Xiao et al. 2017)",
            splits=("train", "test"),
        ),
        DatasetSpec("mnist", "image", (1, 28, 28), 10, "MNIST (LeCun et al. 1998)", splits=("train", "test")),
        DatasetSpec(
            "stacked_mnist", "image", (3, 28, 28), 1000,
            "Stacked MNIST: three independent MNIST digits as RGB channels, 1000 modes",
            splits=("train", "test"),
        ),
        DatasetSpec(
            "cat64", "image", (3, 64, 64), 0,
            "CAT dataset (Zhang, Sun, Tang 2008), faces aligned and cropped to 64x64",
        ),
        DatasetSpec(
            "cat128", "image", (3, 128, 128), 0,
            "CAT dataset (Zhang, Sun, Tang 2008), faces aligned and cropped to 128x128",
        ),
        DatasetSpec(
            "cat_faces64", "image", (3, 64, 64), 0,
            "a public set of 15,747 aligned 64x64 cat faces (not the CAT dataset)",
            substitute_for="cat64",
        ),
        DatasetSpec(
            "ring8", "mixture2d", (2,), 8,
            "8 Gaussians on the unit circle, sigma 0.01",
        ),
        DatasetSpec(
            "grid25", "mixture2d", (2,), 25,
            "25 Gaussians on the grid {-4,-2,0,2,4}^2, sigma 0.05",
        ),
    )
}  # fmt: skip


def mixture_means(name: str) -> Tensor:
    """Means of a 2D mixture, shape (M, 2).

    ring8: angles 2*pi*i/8 for i = 0..7 (not linspace(0, 2*pi, 8), whose ends coincide and
    leave 7 distinct modes). grid25: {-4, -2, 0, 2, 4}^2.
    """
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    if name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    raise KeyError(f"{name!r} is not a 2D mixture; mixtures: ring8, grid25")


MIXTURE_SIGMA = {"ring8": 0.01, "grid25": 0.05}


def load_images(name: str, data_root: str | Path, split: str = "train", mirror=None):
    """The prepared uint8 images (N, C, H, W) and int64 labels of a split, preparing if needed."""
    from ganstudy import prepare

    try:
        return prepare.load_split(name, data_root, split)
    except FileNotFoundError:
        prepare.prepare(name, data_root, mirror=mirror)
        return prepare.load_split(name, data_root, split)


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 pixels in [0, 255] -> float in [-1, 1]: x / 127.5 - 1 (in the default dtype)."""
    return images.to(torch.get_default_dtype()).div_(127.5).sub_(1.0)


class MixtureStream:
    """Batches from a 2D Gaussian mixture: a uniform mode index plus N(0, sigma^2 I) noise."""

    def __init__(self, name: str, generators: list[torch.Generator], batch_size: int, device):
        self.means = mixture_means(name).to(device, torch.get_default_dtype())
        self.sigma = MIXTURE_SIGMA[name]
        self.generators, self.batch_size, self.device = generators, batch_size, device

    def batch(self, index: int) -> Tensor:
        del index  # the stream is stateful: its generators advance with every batch
        out = []
        for gen in self.generators:
            mode = torch.randint(
                len(self.means), (self.batch_size,), generator=gen, device=self.device
            )
            noise = torch.randn(self.batch_size, 2, generator=gen, device=self.device)
            out.append(self.means[mode] + self.sigma * noise)
        return torch.stack(out)

    def state_dict(self, k: int) -> dict:
        return {"generator": self.generators[k].get_state()}

    def load_state_dict(self, k: int, state: dict) -> None:
        self.generators[k].set_state(state["generator"])


class ImageStream:
    """Batches of a dataset held on the device as uint8, in a fresh random order every epoch.

    The order of epoch e for a member is ``randperm(N)`` from a generator seeded with
    (member data seed, e), so batch n is a pure function of n: resuming needs no stream state.
    The last incomplete batch of an epoch is dropped.
    """

    def __init__(self, images: Tensor, data_seeds: list[int], batch_size: int, device):
        if len(images) < batch_size:
            raise ValueError(
                f"the dataset has {len(images)} images, fewer than one batch of {batch_size}"
            )
        self.images = images.to(device)
        self.data_seeds, self.batch_size, self.device = data_seeds, batch_size, device
        self.batches_per_epoch = len(images) // batch_size
        self._epoch, self._orders = -1, None

    def _order(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            orders = []
            for seed in self.data_seeds:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(seed * 1_000_003 + epoch)
                orders.append(torch.randperm(len(self.images), generator=gen, device=self.device))
            self._epoch, self._orders = epoch, torch.stack(orders)
        return self._orders

    def batch(self, index: int) -> Tensor:
        epoch, pos = divmod(index, self.batches_per_epoch)
        start = pos * self.batch_size
        idx = self._order(epoch)[:, start : start + self.batch_size]
        return to_unit_range(self.images[idx])

    def state_dict(self, k: int) -> dict:
        return {}

    def load_state_dict(self, k: int, state: dict) -> None:
        pass


def make_stream(cfg, generators: list[torch.Generator], data_seeds: list[int], device):
    """The batch stream of a validated run config for K members."""
    spec = DATASETS[cfg.dataset.name]
    if spec.kind == "mixture2d":
        return MixtureStream(spec.name, generators, cfg.train.batch_size, device)
    images, _ = load_images(spec.name, cfg.dataset.data_root, "train", cfg.dataset.mirror)
    if tuple(images.shape[1:]) != spec.shape:
        raise ValueError(
            f"prepared {spec.name} images have shape {tuple(images.shape[1:])}, expected {spec.shape}"
        )
    return ImageStream(images, data_seeds, cfg.train.batch_size, device)

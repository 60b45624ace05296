"""The batch streams that feed training, for the datasets of :mod:`ganstudy.data.registry`.

Image datasets are prepared once into uint8 tensors (see :mod:`ganstudy.data.prepare`), moved to the
training device as one tensor, and batches are indexed from it: no DataLoader, no per-step
host work beyond one gather. 2D Gaussian mixtures are sampled directly.

Every stream draws for K members at once with one random stream per member, so member k of an
ensemble sees exactly the batches of a solo run with the same seed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ganstudy.data import prepare, registry
from ganstudy.data.draws import ChunkedDraws, Part


def mixture_means(name: str) -> Tensor:
    """Means of a 2D mixture, shape (M, 2), in float32 (see :class:`registry.Mixture`)."""
    mixture = registry.dataset(name).mixture
    if mixture is None:
        raise KeyError(f"{name!r} is not a 2D mixture")
    return torch.tensor(mixture.means, dtype=torch.float64).float()


def load_images(name: str, data_root: str | Path, split: str = "train", mirror=None):
    """The prepared uint8 images (N, C, H, W) and int64 labels of a split, preparing if needed."""
    try:
        return prepare.load_split(name, data_root, split)
    except FileNotFoundError:
        prepare.prepare(name, data_root, mirror=mirror)
        return prepare.load_split(name, data_root, split)


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 pixels in [0, 255] -> float in [-1, 1]: x / 127.5 - 1 (in the default dtype)."""
    return images.to(torch.get_default_dtype()).div_(127.5).sub_(1.0)


class MixtureStream:
    """Batches from a 2D Gaussian mixture: a uniform mode index plus N(0, sigma^2 I) noise.

    The mode indices and offsets of every member are drawn ahead in chunks of steps (see
    :mod:`ganstudy.data.draws`); a batch is one gather, one product and one sum for all
    members."""

    def __init__(
        self,
        name: str,
        generators: list[torch.Generator],
        batch_size: int,
        device,
        batches_per_step: int = 1,
    ):
        self.means = mixture_means(name).to(device, torch.get_default_dtype())
        self.sigma = registry.dataset(name).mixture.sigma
        self.batches_per_step = batches_per_step
        self.draws = ChunkedDraws(
            generators,
            [
                Part("mode", batches_per_step, (batch_size,), "randint", high=len(self.means)),
                Part("offset", batches_per_step, (batch_size, 2), "normal"),
            ],
            device,
        )

    def batch(self, index: int) -> Tensor:
        step, update = divmod(index, self.batches_per_step)
        drawn = self.draws.at(step)
        return self.means[drawn["mode"][update]] + self.sigma * drawn["offset"][update]

    def member_state(self, k: int) -> dict:
        return self.draws.member_state(k)

    def load_members(self, states: list[dict]) -> None:
        self.draws.load_members(states)


def mixture_training_set(name: str, n: int, sample_seed: int) -> Tensor:
    """A fixed training set of ``n`` points of a 2D mixture, (n, 2) in the default dtype: mode
    indices uniform, then N(0, sigma^2 I) offsets, drawn on the CPU from ``sample_seed`` (so the
    set is the same on every device and for every seed of a study)."""
    gen = torch.Generator().manual_seed(sample_seed)
    means = mixture_means(name).double()
    sigma = registry.dataset(name).mixture.sigma
    mode = torch.randint(len(means), (n,), generator=gen)
    noise = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return (means[mode] + sigma * noise).to(torch.get_default_dtype())


class ImageStream:
    """Batches of a dataset held on the device (as uint8 images, or as points), in a fresh
    random order every epoch.

    The order of epoch e for a member is ``randperm(N)`` from a generator seeded with
    (member data seed, e), so batch n is a pure function of n: resuming needs no stream state.
    The last incomplete batch of an epoch is dropped.
    """

    def __init__(self, images: Tensor, data_seeds: list[int], batch_size: int, device):
        if len(images) < batch_size:
            raise ValueError(
                f"the dataset has {len(images)} images, fewer than one batch of {batch_size}"
            )
        self.convert = to_unit_range if images.dtype == torch.uint8 else (lambda x: x)
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
        return self.convert(self.images[idx])

    def member_state(self, k: int) -> dict:
        return {}

    def load_members(self, states: list[dict]) -> None:
        pass


def make_stream(cfg, generators: list[torch.Generator], data_seeds: list[int], device):
    """The batch stream of a validated run config for K members."""
    spec = registry.dataset(cfg.dataset.name)
    if spec.kind == "mixture2d":
        if cfg.dataset.n_train is not None:
            points = mixture_training_set(spec.name, cfg.dataset.n_train, cfg.dataset.sample_seed)
            return ImageStream(points, data_seeds, cfg.train.batch_size, device)
        return MixtureStream(spec.name, generators, cfg.train.batch_size, device, cfg.train.d_steps)
    images, _ = load_images(spec.name, cfg.dataset.data_root, "train", cfg.dataset.mirror)
    if tuple(images.shape[1:]) != spec.shape:
        raise ValueError(
            f"prepared {spec.name} images have shape {tuple(images.shape[1:])}, expected {spec.shape}"
        )
    return ImageStream(images, data_seeds, cfg.train.batch_size, device)

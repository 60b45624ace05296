"""Builders: raw source files -> uint8 image tensors (N, C, H, W) and int64 labels per split.

Every builder has the signature ``build(raw_dir, work_dir, params) -> (splits, info)`` where
``splits`` maps a split name to ``(images, labels)`` and ``info`` holds counts and fixed
preparation settings for the manifest. ``work_dir`` is scratch space removed afterwards.
``BUILDERS`` names them; a dataset's :class:`~ganstudy.data.registry.Preparation` picks one.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ganstudy.data.cats import CORRECTION_FILE, build_cat_faces, iter_zip_photos
from ganstudy.data.sources import SOURCES

Splits = dict[str, tuple[Tensor, Tensor]]


def _torchvision_split(dataset_cls, source_key: str, raw_dir: Path, work_dir: Path, train: bool):
    """Load one split with torchvision's dataset class from the verified .gz files.

    torchvision looks for ``<root>/<ClassName>/raw/<file>.gz``; with the md5 matching it only
    decompresses them (no network), so the files are copied into that layout inside work_dir.
    """
    folder = work_dir / dataset_cls.__name__ / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for spec in SOURCES[source_key].files:
        if not (folder / spec.name).exists():
            shutil.copyfile(raw_dir / spec.name, folder / spec.name)
    # torchvision reports each file it finds on stdout; the manifest records them instead.
    with contextlib.redirect_stdout(io.StringIO()):
        ds = dataset_cls(str(work_dir), train=train, download=True)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.to(torch.int64)


def torchvision_builder(dataset_name: str, source_key: str):
    """A builder for MNIST-like sets: train (60,000) and test (10,000) as (N, 1, 28, 28)."""

    def build(raw_dir: Path, work_dir: Path, params: dict) -> tuple[Splits, dict]:
        import torchvision.datasets as tvd

        cls = getattr(tvd, dataset_name)
        splits = {
            split: _torchvision_split(cls, source_key, raw_dir, work_dir, split == "train")
            for split in ("train", "test")
        }
        return splits, {"loader": f"torchvision.datasets.{dataset_name}"}

    return build


def stack_digits(images: Tensor, labels: Tensor, n: int, generator: torch.Generator):
    """``n`` Stacked-MNIST images: channel k is MNIST image i_k, i_1..i_3 drawn independently and
    uniformly with replacement; label = 100 d_1 + 10 d_2 + d_3 (1000 modes)."""
    idx = torch.randint(len(images), (n, 3), generator=generator)
    stacked = images[:, 0][idx]  # (n, 3, 28, 28)
    digits = labels[idx]
    return stacked, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def build_stacked_mnist(raw_dir: Path, work_dir: Path, params: dict) -> tuple[Splits, dict]:
    """Stacked MNIST, train digits from MNIST train and test digits from MNIST test."""
    import torchvision.datasets as tvd

    generator = torch.Generator().manual_seed(params["seed"])
    splits = {}
    for split, count in (("train", params["n_train"]), ("test", params["n_test"])):
        images, labels = _torchvision_split(tvd.MNIST, "mnist", raw_dir, work_dir, split == "train")
        splits[split] = stack_digits(images, labels, count, generator)
    return splits, {"digits_from": {"train": "MNIST train", "test": "MNIST test"}}


def _cat_faces_index(member: str) -> int | None:
    match = re.fullmatch(r"(?:.*/)?cats/(\d+)\.jpg", member)
    return None if match is None else int(match.group(1))


def build_cat_faces64(raw_dir: Path, work_dir: Path, params: dict) -> tuple[Splits, dict]:
    """The aligned 64x64 cat faces of the archive's ``cats/<n>.jpg``, ordered by n; train only."""
    archive_path = raw_dir / SOURCES["cat-faces-64x64-spandan2"].files[0].name
    faces: dict[int, np.ndarray] = {}
    with tarfile.open(archive_path, "r:gz") as archive:
        for member in archive:
            index = _cat_faces_index(member.name)
            if not member.isfile() or index is None:
                continue
            with Image.open(archive.extractfile(member)) as image:
                if image.size != (64, 64):
                    raise ValueError(
                        f"{archive_path.name}:{member.name} is {image.size[0]}x{image.size[1]}, "
                        "expected 64x64"
                    )
                faces[index] = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if not faces:
        raise ValueError(f"{archive_path} holds no cats/<n>.jpg images")
    order = sorted(faces)
    images = torch.from_numpy(np.stack([faces[i] for i in order])).permute(0, 3, 1, 2)
    labels = torch.zeros(len(order), dtype=torch.int64)
    return {"train": (images.contiguous(), labels)}, {"members": "cats/<n>.jpg, sorted by n"}


def cat_builder(size: int):
    """A builder for the CAT dataset faces at ``size`` x ``size`` (train only, label 0)."""

    def build(raw_dir: Path, work_dir: Path, params: dict) -> tuple[Splits, dict]:
        zips = sorted(raw_dir.glob("CAT_DATASET_*.zip"))
        correction = raw_dir / CORRECTION_FILE
        photos = iter_zip_photos(zips, correction if correction.is_file() else None)
        images, counts = build_cat_faces(photos, size)
        labels = torch.zeros(len(images), dtype=torch.int64)
        info = {
            "size": size,
            "counts": counts,
            "rotation": "about the eye midpoint by the eye angle, bilinear, gray 128 fill",
            "crop": "square, side = outer ear-base distance, eyes at (0.5, 0.4)",
            "min_face": size,
            "resize": "bilinear",
        }
        return {"train": (images, labels)}, info

    return build


Builder = Callable[[Path, Path, dict], tuple[Splits, dict]]

BUILDERS: dict[str, Builder] = {
    "torchvision_mnist": torchvision_builder("MNIST", "mnist"),
    "torchvision_fashion_mnist": torchvision_builder("FashionMNIST", "fashion-mnist"),
    "stacked_mnist": build_stacked_mnist,
    "cat_faces_64": cat_builder(64),
    "cat_faces_128": cat_builder(128),
    "cat_faces64_archive": build_cat_faces64,
}

"""Prepared datasets: one uint8 tensor file per split plus a manifest, built once, loaded fast.

``prepared/<name>/`` holds ``<split>.pt`` = ``{"images": uint8 (N, C, H, W), "labels": int64
(N,)}`` for every split and ``manifest.json`` (source, raw checksums, counts, shape, parameters,
versions). It is built in a temporary sibling directory and swapped in by renames, so a failure
leaves an existing preparation untouched and a reader never sees half a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganstudy import atomic, builders
from ganstudy.config import ConfigError
from ganstudy.fetch import fetch, read_record
from ganstudy.sources import DATASET_SOURCES, SOURCES

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Recipe:
    """How a dataset is built: its builder, the shape it yields, its splits and parameters."""

    build: Callable[[Path, Path, dict], tuple[dict[str, tuple[Tensor, Tensor]], dict]]
    shape: tuple[int, int, int]
    splits: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    # Parameters that must be positive integers.
    positive: tuple[str, ...] = ()


RECIPES: dict[str, Recipe] = {
    "fashion_mnist": Recipe(
        builders.torchvision_builder("FashionMNIST", "fashion-mnist"),
        (1, 28, 28),
        ("train", "test"),
    ),
    "mnist": Recipe(builders.torchvision_builder("MNIST", "mnist"), (1, 28, 28), ("train", "test")),
    # 128,000 training images as in the PacGAN protocol; the test split gives FID references.
    "stacked_mnist": Recipe(
        builders.build_stacked_mnist,
        (3, 28, 28),
        ("train", "test"),
        defaults={"seed": 0, "n_train": 128_000, "n_test": 10_000},
        positive=("n_train", "n_test"),
    ),
    "cat64": Recipe(builders.cat_builder(64), (3, 64, 64), ("train",)),
    "cat128": Recipe(builders.cat_builder(128), (3, 128, 128), ("train",)),
    "cat_faces64": Recipe(builders.build_cat_faces64, (3, 64, 64), ("train",)),
}


def recipe_for(name: str) -> Recipe:
    if name in RECIPES:
        return RECIPES[name]
    if name in DATASET_SOURCES:
        raise ConfigError(f"dataset {name!r} has no files to prepare: it is sampled directly")
    raise ConfigError(f"unknown dataset {name!r}; datasets with files: {', '.join(RECIPES)}")


def resolve_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe's defaults updated with ``params``; unknown keys and wrong types are errors."""
    recipe = recipe_for(name)
    resolved = dict(recipe.defaults)
    for key, value in (params or {}).items():
        if key not in recipe.defaults:
            allowed = ", ".join(recipe.defaults) or "none"
            raise ConfigError(f"unknown parameter {key!r} for {name}; allowed: {allowed}")
        want = type(recipe.defaults[key])
        if isinstance(value, bool) or not isinstance(value, want):
            raise ConfigError(f"parameter {key!r} of {name}: {value!r} is not a {want.__name__}")
        if key in recipe.positive and value <= 0:
            raise ConfigError(f"parameter {key!r} of {name}: {value!r} is not a positive integer")
        resolved[key] = value
    return resolved


def prepared_dir(name: str, data_root: str | os.PathLike) -> Path:
    return Path(data_root) / "prepared" / name


def read_manifest(name: str, data_root: str | os.PathLike) -> dict | None:
    path = prepared_dir(name, data_root) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def is_prepared(name: str, data_root: str | os.PathLike) -> bool:
    out = prepared_dir(name, data_root)
    recipe = recipe_for(name)
    return (out / MANIFEST).is_file() and all((out / f"{s}.pt").is_file() for s in recipe.splits)


def _check_split(name: str, split: str, images: Tensor, labels: Tensor, shape) -> None:
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name}/{split}: images are {images.dtype} {tuple(images.shape)}, "
            f"expected uint8 (N, {', '.join(map(str, shape))})"
        )
    if labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise ValueError(
            f"{name}/{split}: labels are {labels.dtype} {tuple(labels.shape)}, "
            f"expected int64 ({len(images)},)"
        )


def _swap_in(new: Path, out: Path) -> None:
    """Replace directory ``out`` by ``new`` with two renames; the old one is restored on failure."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        # A concurrent preparation got there first: keep its complete result.
        if (out / MANIFEST).is_file():
            shutil.rmtree(new, ignore_errors=True)
        elif old.exists():
            os.replace(old, out)
            raise
        else:
            raise
    shutil.rmtree(old, ignore_errors=True)


def _manifest(name: str, recipe: Recipe, splits, params, info, raw_dir: Path) -> dict:
    from ganstudy import __version__

    source = SOURCES[DATASET_SOURCES[name]]
    record = read_record(raw_dir)
    return {
        "format": FORMAT,
        "dataset": name,
        "shape": list(recipe.shape),
        "splits": {s: {"count": len(images)} for s, (images, _) in splits.items()},
        "params": params,
        "preparation": info,
        "source": {
            "key": source.key,
            "title": source.title,
            "homepage": source.homepage,
            "citation": source.citation,
            "pinned": source.pinned,
            "files": [
                {
                    "name": f.name,
                    "sha256": record.get(f.name, f.sha256),
                    "md5": f.md5,
                    "pinned": f.pinned,
                    "urls": list(f.urls),
                }
                for f in source.files
            ],
        },
        "versions": {"ganstudy": __version__, "torch": str(torch.__version__)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def prepare(
    name: str,
    data_root: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    *,
    params: dict[str, Any] | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fetch (if needed) and prepare dataset ``name``; return ``prepared/<name>/``.

    An existing preparation with the same parameters is kept as is. One with other parameters is
    an error unless ``force``, which rebuilds it and swaps it in only once the new one is complete.
    """
    recipe = recipe_for(name)
    resolved = resolve_params(name, params)
    out = prepared_dir(name, data_root)
    if is_prepared(name, data_root):
        existing = read_manifest(name, data_root)
        if existing.get("params") == resolved and not force:
            return out
        if not force:
            raise ConfigError(
                f"{out} was prepared with parameters {existing.get('params')}, not {resolved}; "
                "rebuild it with --force (the existing files stay until the new ones are complete)"
            )
    raw_dir = fetch(name, data_root, mirror, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "work").mkdir(parents=True)
        splits, info = recipe.build(raw_dir, staging / "work", resolved)
        shutil.rmtree(staging / "work")
        if sorted(splits) != sorted(recipe.splits):
            raise ValueError(f"{name}: built splits {sorted(splits)}, expected {recipe.splits}")
        for split, (images, labels) in splits.items():
            _check_split(name, split, images, labels, recipe.shape)
            atomic.save_torch({"images": images, "labels": labels}, staging / f"{split}.pt")
        manifest = _manifest(name, recipe, splits, resolved, info, raw_dir)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def load_split(name: str, data_root: str | os.PathLike, split: str) -> tuple[Tensor, Tensor]:
    """The prepared ``(images uint8 (N, C, H, W), labels int64 (N,))`` of one split.

    FileNotFoundError when the dataset is not prepared yet (``prepare`` builds it).
    """
    recipe = recipe_for(name)
    if split not in recipe.splits:
        raise ConfigError(
            f"dataset {name} has no split {split!r}; its splits: {', '.join(recipe.splits)}"
        )
    path = prepared_dir(name, data_root) / f"{split}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: prepare it with `ganstudy data prepare {name}`"
        )
    blob = torch.load(path, weights_only=True)
    if not isinstance(blob, dict) or not {"images", "labels"} <= set(blob):
        raise ValueError(f"{path} is not a prepared split (expected keys images, labels)")
    _check_split(name, split, blob["images"], blob["labels"], recipe.shape)
    return blob["images"], blob["labels"]

"""Prepared datasets: one uint8 tensor file per split plus a manifest, built once, loaded fast.

``prepared/<name>/`` holds ``<split>.pt`` = ``{"images": uint8 (N, C, H, W), "labels": int64
(N,)}`` for every split and ``manifest.json`` (source, raw checksums, counts, shape, parameters,
versions). It is built in a temporary sibling directory and swapped in by renames, so a failure
leaves an existing preparation untouched and a reader never sees half a dataset.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import ganstudy
from ganstudy import atomic, store
from ganstudy.data import registry
from ganstudy.data.builders import BUILDERS
from ganstudy.data.fetch import fetch, read_record
from ganstudy.data.sources import SOURCES
from ganstudy.errors import ConfigError

MANIFEST = store.MANIFEST
FORMAT = 1


def prepared_dir(name: str, data_root: str | os.PathLike) -> Path:
    return store.DataRoot(data_root).prepared(name)


def read_manifest(name: str, data_root: str | os.PathLike) -> dict | None:
    return store.read_record(store.DataRoot(data_root).manifest(name), missing_ok=True)


def is_prepared(name: str, data_root: str | os.PathLike) -> bool:
    root = store.DataRoot(data_root)
    splits = registry.preparation(name).splits
    return root.manifest(name).is_file() and all(
        root.prepared_split(name, s).is_file() for s in splits
    )


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


def _manifest(name: str, splits, params, info, raw_dir: Path) -> dict:
    spec = registry.dataset(name)
    source = SOURCES[spec.source]
    record = read_record(raw_dir)
    return {
        "format": FORMAT,
        "dataset": name,
        "shape": list(spec.shape),
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
        "versions": {"ganstudy": ganstudy.__version__, "torch": str(torch.__version__)},
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
    spec = registry.dataset(name)
    prep = registry.preparation(name)
    resolved = registry.resolve_params(name, params)
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
        splits, info = BUILDERS[prep.builder](raw_dir, staging / "work", resolved)
        shutil.rmtree(staging / "work")
        if sorted(splits) != sorted(prep.splits):
            raise ValueError(f"{name}: built splits {sorted(splits)}, expected {prep.splits}")
        for split, (images, labels) in splits.items():
            _check_split(name, split, images, labels, spec.shape)
            tensors = {"images": images, "labels": labels}
            atomic.save_torch(tensors, staging / store.split_file(split))
        store.write_record(staging / MANIFEST, _manifest(name, splits, resolved, info, raw_dir))
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def load_split(name: str, data_root: str | os.PathLike, split: str) -> tuple[Tensor, Tensor]:
    """The prepared ``(images uint8 (N, C, H, W), labels int64 (N,))`` of one split.

    FileNotFoundError when the dataset is not prepared yet (``prepare`` builds it).
    """
    spec = registry.dataset(name)
    if split not in registry.preparation(name).splits:
        raise ConfigError(
            f"dataset {name} has no split {split!r}; its splits: {', '.join(spec.splits)}"
        )
    path = store.DataRoot(data_root).prepared_split(name, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: prepare it with `ganstudy data prepare {name}`"
        )
    blob = torch.load(path, weights_only=True)
    if not isinstance(blob, dict) or not {"images", "labels"} <= set(blob):
        raise ValueError(f"{path} is not a prepared split (expected keys images, labels)")
    _check_split(name, split, blob["images"], blob["labels"], spec.shape)
    return blob["images"], blob["labels"]

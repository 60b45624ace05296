"""Frechet Inception Distance with pytorch-fid's network and distance, from in-memory tensors.

FID between two image sets with Inception feature means mu_1, mu_2 and covariances C_1, C_2:

    FID = ||mu_1 - mu_2||^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2))

Features are pytorch-fid's ``InceptionV3`` outputs (pool3, 2048-d, or the 64/192/768-d blocks,
average-pooled to a vector exactly as pytorch-fid does), and the distance is pytorch-fid's
``calculate_frechet_distance``. Images enter as float tensors in [-1, 1] (or uint8), are
quantised to 8-bit levels (what an image file of the same samples holds), mapped to [0, 1],
grayscale is repeated to three channels, and the network resizes bilinearly to 299x299
(``resize_input=True``, ``normalize_input=True``), so a value here equals pytorch-fid's on the
same samples written as PNG. The network and its weights file come from
:mod:`ganstudy.metrics.inception`.

FID depends on the sample counts and the feature block; every value is stored with
:func:`settings` and values are only comparable when their settings are equal.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from pytorch_fid import fid_score as pt_fid_score
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import InceptionV3
from scipy import linalg as scipy_linalg
from torch import Tensor

from ganstudy import atomic, store
from ganstudy.data import streams
from ganstudy.errors import FIDError
from ganstudy.metrics.fid_protocol import (
    FIDProtocol,
    protocol_for,
    singular_flag,
)
from ganstudy.metrics.inception import InceptionWeights, load_inception, resolve_weights
from ganstudy.numerics import full_fp32

PYTORCH_FID_VERSION = version("pytorch-fid")
RESIZE = "bilinear to 299x299 (pytorch-fid InceptionV3 resize_input=True, align_corners=False)"
INPUT = "8-bit levels in [0, 1], grayscale repeated to 3 channels"
REFERENCE_SUBSET_SEED = 0
STATS_FORMAT = "ganstudy-fid-stats-1"


# ---------------------------------------------------------------------------------------------
# Features and statistics


def inception_input(images: Tensor) -> Tensor:
    """Images -> InceptionV3 input in [0, 1] with three channels.

    uint8 u: u / 255. Float x in [-1, 1]: round(clamp((x + 1) * 127.5, 0, 255)) / 255, the
    8-bit level a PNG of the sample holds. One channel is repeated to three.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise FIDError(f"FID expects images (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    else:
        x = ((images.float() + 1.0) * 127.5).clamp_(0.0, 255.0).round_() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


def activations(
    images: Tensor, model: InceptionV3, batch_size: int, device: str | torch.device
) -> np.ndarray:
    """Inception features (N, dims) as float64, batched under no_grad in full fp32 (TF32 off);
    blocks below pool3 are average-pooled to one vector per image as pytorch-fid does."""
    if not images.dtype == torch.uint8 and not torch.isfinite(images).all():
        raise FIDError("FID inputs contain non-finite values")
    out = []
    # Full fp32 (no TF32) whatever training chose: FIDs from a GPU stay comparable to the CPU's.
    with torch.no_grad(), full_fp32():
        for start in range(0, len(images), batch_size):
            batch = inception_input(images[start : start + batch_size]).to(device)
            features = model(batch)[0]
            if features.shape[2:] != (1, 1):
                features = torch.nn.functional.adaptive_avg_pool2d(features, (1, 1))
            out.append(features.flatten(1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@dataclass(frozen=True)
class Statistics:
    """Mean and (n - 1)-normalised covariance of n feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int


def statistics(features: np.ndarray) -> Statistics:
    if len(features) < 2:
        raise FIDError(f"FID needs at least 2 images, got {len(features)}")
    return Statistics(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


class _LinalgForPytorchFid:
    """``scipy.linalg`` as pytorch-fid 0.3.0 uses it: its distance calls
    ``sqrtm(M, disp=False)``, an argument SciPy 1.18 removed. The root is scipy's own; the
    error estimate that ``disp=False`` returned beside it, ||X X - M||_F / ||M||_F, is
    computed here (pytorch-fid discards it)."""

    def __getattr__(self, name: str):
        return getattr(scipy_linalg, name)

    @staticmethod
    def sqrtm(matrix, disp: bool = True):
        root = scipy_linalg.sqrtm(matrix)
        if disp:
            return root
        error = np.linalg.norm(root @ root - matrix, "fro") / np.linalg.norm(matrix, "fro")
        return root, error


pt_fid_score.linalg = _LinalgForPytorchFid()


def frechet_distance(a: Statistics, b: Statistics) -> tuple[float, str | None]:
    """pytorch-fid's Frechet distance ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)),
    with a note when it had to regularise a singular product."""
    printed = io.StringIO()
    # pytorch-fid prints (instead of warning) when it adds eps to the diagonals; keep it as a
    # note next to the value rather than on the console.
    with contextlib.redirect_stdout(printed):
        value = float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    note = printed.getvalue().strip() or None
    return value, note


def settings(protocol: FIDProtocol, weights: InceptionWeights, n_reference: int) -> dict:
    """Everything a FID value depends on; values are comparable only when these are equal."""
    return {
        "protocol": protocol.name,
        "pytorch_fid_version": PYTORCH_FID_VERSION,
        "dims": protocol.dims,
        "n_generated": protocol.n_generated,
        "n_reference": n_reference,
        "reference_split": protocol.reference_split,
        "resize": RESIZE,
        "input": INPUT,
        "weights": weights.identity,
    }


# ---------------------------------------------------------------------------------------------
# Reference statistics, cached under data_root/fid_stats


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic.replacing(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def reference_images(
    dataset: str, data_root: str | Path, split: str, n: int | None, mirror: str | None = None
) -> Tensor:
    """uint8 images of a split: all of them (n=None), else a fixed random subset of n
    (``randperm`` with seed 0, so every run and every process compares against the same set)."""
    images, _ = streams.load_images(dataset, data_root, split, mirror)
    if n is None or n == len(images):
        return images
    if n > len(images):
        raise FIDError(
            f"FID reference of {n} images asked, but {dataset} split '{split}' has "
            f"{len(images)}; allowed: at most {len(images)}"
        )
    gen = torch.Generator().manual_seed(REFERENCE_SUBSET_SEED)
    index = torch.randperm(len(images), generator=gen)[:n].sort().values
    return images[index]


def stats_path(
    data_root: str | Path, dataset: str, protocol: FIDProtocol, n: int, sha: str
) -> Path:
    split, dims = protocol.reference_split, protocol.dims
    return store.DataRoot(data_root).fid_statistics(dataset, split, dims, n, sha)


def reference_statistics(
    dataset: str,
    data_root: str | Path,
    protocol: FIDProtocol,
    weights: InceptionWeights,
    device: str | torch.device,
    mirror: str | None = None,
) -> tuple[Statistics, dict]:
    """Reference statistics and their settings, computed once and cached; the cache key is
    (dataset, split, dims, count, weights sha256), and a file whose stored settings differ is
    recomputed."""
    images = reference_images(
        dataset, data_root, protocol.reference_split, protocol.n_reference, mirror
    )
    expected = settings(protocol, weights, len(images)) | {"dataset": dataset}
    expected.pop("n_generated")
    path = stats_path(data_root, dataset, protocol, len(images), weights.sha256)
    if path.is_file():
        with np.load(path) as stored:
            if (
                str(stored["format"]) == STATS_FORMAT
                and json.loads(str(stored["settings"])) == expected
            ):
                stats = Statistics(stored["mu"], stored["sigma"], int(stored["count"]))
                return stats, expected
    model = load_inception(protocol.dims, weights, device)
    stats = statistics(activations(images, model, protocol.batch_size, device))
    _atomic_savez(
        path,
        format=np.array(STATS_FORMAT),
        mu=stats.mu,
        sigma=stats.sigma,
        count=np.array(stats.count),
        settings=np.array(json.dumps(expected, sort_keys=True)),
    )
    return stats, expected


# ---------------------------------------------------------------------------------------------
# Entry points


@dataclass(frozen=True)
class FIDResult:
    value: float | None
    flag: str | None
    settings: dict

    def to_dict(self) -> dict:
        return {"value": self.value, "flag": self.flag, "settings": self.settings}


def generated_fid(
    images: Tensor,
    reference: Statistics,
    reference_settings: dict,
    protocol: FIDProtocol,
    weights: InceptionWeights,
    device: str | torch.device,
) -> FIDResult:
    """FID of ``protocol.n_generated`` generated images against cached reference statistics."""
    if len(images) != protocol.n_generated:
        raise FIDError(
            f"FID protocol '{protocol.name}' compares {protocol.n_generated} generated images, "
            f"got {len(images)}"
        )
    run_settings = settings(protocol, weights, reference.count)
    mismatch = {
        k: (v, run_settings[k])
        for k, v in reference_settings.items()
        if run_settings.get(k, v) != v
    }
    if mismatch:
        raise FIDError(f"reference statistics were computed with other settings: {mismatch}")
    model = load_inception(protocol.dims, weights, device)
    stats = statistics(activations(images, model, protocol.batch_size, device))
    value, note = frechet_distance(stats, reference)
    flags = [f for f in (singular_flag(stats.count, reference.count, protocol.dims), note) if f]
    return FIDResult(value, "; ".join(flags) or None, run_settings)


# Curves are taken every few steps with few samples; the 192-d block keeps that affordable on a
# CPU and its covariance non-singular from 193 samples on.
TRAINING_DIMS = 192


class TrainingFID:
    """FID during training: ``n_samples`` generated vs ``n_samples`` reference images of the
    dataset's protocol split, with ``dims``-d features (None: ``TRAINING_DIMS``). The reference
    statistics are loaded or computed when the object is built, so bad settings fail before
    training starts; ``settings`` describes every value it returns."""

    def __init__(
        self,
        dataset: str,
        data_root: str | Path,
        n_samples: int,
        dims: int | None = None,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        mirror: str | None = None,
        allow_singular: bool = False,
        batch_size: int = 50,
    ):
        dims = TRAINING_DIMS if dims is None else dims
        self.protocol = protocol_for(
            dataset, n_samples=n_samples, dims=dims, allow_singular=allow_singular
        ).replace(batch_size=batch_size)
        self.n_samples, self.dims = n_samples, dims
        self.device = device
        self.weights = resolve_weights(weights)
        self.reference, self._reference_settings = reference_statistics(
            dataset, data_root, self.protocol, self.weights, device, mirror
        )
        self.settings = settings(self.protocol, self.weights, self.reference.count)
        self.last_flag: str | None = None

    def __call__(self, images: Tensor) -> float:
        """FID of ``n_samples`` images in [-1, 1]; NaN (with ``last_flag``) for non-finite ones,
        so a member that is about to diverge leaves a gap in its curve rather than a crash."""
        if not torch.isfinite(images).all():
            self.last_flag = "generated samples are not finite"
            return float("nan")
        result = generated_fid(
            images,
            self.reference,
            self._reference_settings,
            self.protocol,
            self.weights,
            self.device,
        )
        self.last_flag = result.flag
        return float(result.value)

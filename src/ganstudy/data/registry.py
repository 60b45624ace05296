"""The datasets of the study: one :class:`DatasetSpec` per dataset in ``DATASETS``.

A spec holds every fact other modules need about a dataset: its shape and kind, where its files
come from (a key of :data:`ganstudy.data.sources.SOURCES`), how it is prepared (a builder of
:data:`ganstudy.data.builders.BUILDERS` with its splits and parameters), the parameters of a 2D
mixture, the FID reference (split and sample counts), the evaluation classifier, the mode metric
(a key of :data:`ganstudy.evaluate.mode_metrics.MODE_METRICS`), the nominal training-set size for the cost
estimate, and its description and citation. Adding a dataset is adding one entry here (plus a
builder function when it needs new preparation code).

This module imports nothing heavy: the study config is checked against it when the Snakefile is
parsed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ganstudy.errors import ConfigError

KINDS = ("image", "mixture2d")


@dataclass(frozen=True)
class Mixture:
    """A 2D Gaussian mixture: equally weighted modes at ``means``, each N(mean, sigma^2 I)."""

    means: tuple[tuple[float, float], ...]
    sigma: float
    layout: str

    @classmethod
    def ring(cls, n: int, radius: float, sigma: float) -> Mixture:
        """``n`` modes at angles 2 pi i / n, i = 0..n-1, on a circle (not linspace(0, 2 pi, n),
        whose ends coincide and leave n - 1 distinct modes)."""
        angles = [2 * math.pi * i / n for i in range(n)]
        means = tuple((radius * math.cos(a), radius * math.sin(a)) for a in angles)
        return cls(means, sigma, f"{n} modes on a circle of radius {radius:g}")

    @classmethod
    def grid(cls, axis: tuple[float, ...], sigma: float) -> Mixture:
        """Modes at every point of ``axis`` x ``axis`` (the first coordinate varying slowest)."""
        means = tuple((float(x), float(y)) for x in axis for y in axis)
        return cls(
            means, sigma, f"{len(means)} modes on the grid {{{', '.join(map(str, axis))}}}^2"
        )


@dataclass(frozen=True)
class Preparation:
    """How a dataset's files are built: a builder (key of ``data.builders.BUILDERS``), the splits
    it yields and its parameters (defaults; those in ``positive`` must be positive integers)."""

    builder: str
    splits: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    positive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


@dataclass(frozen=True)
class FIDReference:
    """What FID compares a generator with: ``n_generated`` samples against ``n_reference`` images
    of ``split`` (None: the whole split)."""

    split: str
    n_reference: int | None
    n_generated: int = 10_000


@dataclass(frozen=True)
class ClassifierTraining:
    """How a dataset's evaluation classifier is trained: a classifier architecture (key of
    ``metrics.classifiers.CLASSIFIER_ARCHS``), its parameters, epochs and the test accuracy it
    must reach."""

    arch: str
    arch_params: Mapping[str, Any]
    epochs: int
    target_accuracy: float
    lr: float = 2e-3
    batch_size: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_params", MappingProxyType(dict(self.arch_params)))


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # one of KINDS
    shape: tuple[int, ...]
    n_classes: int
    description: str
    citation: str = ""
    # Key of data.sources.SOURCES; None: no files (sampled directly).
    source: str | None = None
    preparation: Preparation | None = None
    mixture: Mixture | None = None
    fid: FIDReference | None = None
    # The dataset whose evaluation classifier measures this one's mode coverage.
    classifier: str | None = None
    # Set on a dataset whose own classifier is trained (the classifier datasets).
    classifier_training: ClassifierTraining | None = None
    # Key of evaluate.mode_metrics.MODE_METRICS; None: no mode metric.
    mode_metric: str | None = None
    # Training images before the dataset is prepared (the study's cost estimate); datasets with
    # an ``n_train`` preparation parameter take it from there.
    nominal_train_size: int | None = None
    # Set on a dataset used in place of another one that cannot be fetched; reports name it so.
    substitute_for: str | None = None
    # Set on another preparation of the same data (a published protocol's size): the report sets
    # runs of either beside the other's published numbers, with the difference listed.
    preparation_of: str | None = None

    @property
    def base(self) -> str:
        """The dataset this one is a preparation of (itself for most)."""
        return self.preparation_of or self.name

    @property
    def splits(self) -> tuple[str, ...]:
        return self.preparation.splits if self.preparation is not None else ("train",)

    def describe_shape(self) -> str:
        if self.kind == "image":
            c, h, w = self.shape
            return f"{h}x{w}x{c} images"
        return f"{self.shape[0]}D points"


_MNIST_CLASSIFIER = ClassifierTraining("small_cnn", {"width": 16}, epochs=4, target_accuracy=0.990)
_FASHION_CLASSIFIER = ClassifierTraining("small_cnn", {"width": 16}, epochs=6, target_accuracy=0.90)
# The protocol of Lucic et al. 2018 ("Are GANs Created Equal?"): 10k generated vs 10k test
# images. The cat sets have no test split, so their reference is the whole training set.
_TEST_10K = FIDReference(split="test", n_reference=10_000)
_TRAIN_ALL = FIDReference(split="train", n_reference=None)
_CAT_PREPARED = "faces aligned by their landmarks (ganstudy.data.cats)"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "fashion_mnist", "image", (1, 28, 28), 10, "Fashion-MNIST (Xiao et al. 2017)",
            citation="Xiao, Rasul, Vollgraf 2017",
            source="fashion-mnist",
            preparation=Preparation("torchvision_fashion_mnist", ("train", "test")),
            fid=_TEST_10K, classifier="fashion_mnist", classifier_training=_FASHION_CLASSIFIER,
            mode_metric="classes", nominal_train_size=60_000,
        ),
        DatasetSpec(
            "mnist", "image", (1, 28, 28), 10, "MNIST (LeCun et al. 1998)",
            citation="LeCun, Bottou, Bengio, Haffner 1998",
            source="mnist",
            preparation=Preparation("torchvision_mnist", ("train", "test")),
            fid=_TEST_10K, classifier="mnist", classifier_training=_MNIST_CLASSIFIER,
            mode_metric="classes", nominal_train_size=60_000,
        ),
        DatasetSpec(
            "stacked_mnist", "image", (3, 28, 28), 1000,
            "Stacked MNIST: three independent MNIST digits as RGB channels, 1000 modes",
            citation="Metz et al. 2017; Lin et al. 2018 (PacGAN)",
            source="mnist",
            # 128,000 training images as in the PacGAN protocol; the test split gives FID
            # references.
            preparation=Preparation(
                "stacked_mnist", ("train", "test"),
                defaults={"seed": 0, "n_train": 128_000, "n_test": 10_000},
                positive=("n_train", "n_test"),
            ),
            fid=_TEST_10K, classifier="mnist", mode_metric="stacked_mnist",
        ),
        DatasetSpec(
            "stacked_mnist_100k", "image", (3, 28, 28), 1000,
            "Stacked MNIST as the (alpha_D, alpha_G)-GAN protocol builds it: 100,000 training "
            "and 25,000 test images, 1000 modes",
            citation="Welfert, Otstot, Kurri, Sankar 2023 (experiments/stacked_mnist.py)",
            source="mnist",
            preparation=Preparation(
                "stacked_mnist", ("train", "test"),
                defaults={"seed": 1, "n_train": 100_000, "n_test": 25_000},
                positive=("n_train", "n_test"),
            ),
            fid=_TEST_10K, classifier="mnist", mode_metric="stacked_mnist",
            preparation_of="stacked_mnist",
        ),
        DatasetSpec(
            "cat64", "image", (3, 64, 64), 0,
            "CAT dataset (Zhang, Sun, Tang 2008), faces aligned and cropped to 64x64",
            citation="Zhang, Sun, Tang 2008",
            source="cat-dataset",
            preparation=Preparation("cat_faces_64", ("train",)),
            # The CAT dataset has 9,997 photos; faces that cannot be aligned are dropped, so the
            # prepared count is somewhat lower.
            fid=_TRAIN_ALL, nominal_train_size=9_997,
        ),
        DatasetSpec(
            "cat128", "image", (3, 128, 128), 0,
            "CAT dataset (Zhang, Sun, Tang 2008), faces aligned and cropped to 128x128",
            citation="Zhang, Sun, Tang 2008",
            source="cat-dataset",
            preparation=Preparation("cat_faces_128", ("train",)),
            fid=_TRAIN_ALL, nominal_train_size=9_997,
        ),
        DatasetSpec(
            "cat_faces64", "image", (3, 64, 64), 0,
            "a public set of 15,747 aligned 64x64 cat faces (not the CAT dataset)",
            citation="public Kaggle dataset 'spandan2/cats-faces-64x64-for-generative-models'",
            source="cat-faces-64x64-spandan2",
            preparation=Preparation("cat_faces64_archive", ("train",)),
            fid=_TRAIN_ALL, nominal_train_size=15_747, substitute_for="cat64",
        ),
        DatasetSpec(
            "ring8", "mixture2d", (2,), 8,
            "8 Gaussians on the unit circle, sigma 0.01",
            citation="Metz et al. 2017 (unrolled GAN); Lin et al. 2018 (PacGAN)",
            mixture=Mixture.ring(8, 1.0, sigma=0.01), mode_metric="mixture2d",
        ),
        DatasetSpec(
            "grid25", "mixture2d", (2,), 25,
            "25 Gaussians on the grid {-4,-2,0,2,4}^2, sigma 0.05",
            citation="Srivastava et al. 2017 (VEEGAN); Lin et al. 2018 (PacGAN)",
            mixture=Mixture.grid((-4.0, -2.0, 0.0, 2.0, 4.0), sigma=0.05), mode_metric="mixture2d",
        ),
    )
}  # fmt: skip


def dataset(name: str) -> DatasetSpec:
    """The spec of a dataset; an unknown name is a ConfigError listing the known ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def preparation(name: str) -> Preparation:
    """A dataset's preparation; a dataset without files is a ConfigError."""
    spec = dataset(name)
    if spec.preparation is None:
        raise ConfigError(f"dataset {name!r} has no files to prepare: it is sampled directly")
    return spec.preparation


def resolve_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dataset's preparation defaults updated with ``params``; unknown keys and wrong types are
    errors."""
    prep = preparation(name)
    resolved = dict(prep.defaults)
    for key, value in (params or {}).items():
        if key not in prep.defaults:
            allowed = ", ".join(prep.defaults) or "none"
            raise ConfigError(f"unknown parameter {key!r} for {name}; allowed: {allowed}")
        want = type(prep.defaults[key])
        if isinstance(value, bool) or not isinstance(value, want):
            raise ConfigError(f"parameter {key!r} of {name}: {value!r} is not a {want.__name__}")
        if key in prep.positive and value <= 0:
            raise ConfigError(f"parameter {key!r} of {name}: {value!r} is not a positive integer")
        resolved[key] = value
    return resolved


def nominal_train_size(name: str, prepare_params: Mapping[str, Any] | None = None) -> int | None:
    """Training images of a dataset before it is prepared: its ``n_train`` preparation parameter
    where it has one, else its nominal size (None: unknown, or sampled without end)."""
    spec = dataset(name)
    if spec.preparation is not None and "n_train" in spec.preparation.defaults:
        return int(resolve_params(name, prepare_params)["n_train"])
    return spec.nominal_train_size


def with_files() -> list[str]:
    """Datasets that are fetched and prepared (every dataset with a source)."""
    return [name for name, spec in DATASETS.items() if spec.preparation is not None]


def classifier_datasets() -> list[str]:
    """Datasets with an evaluation classifier of their own."""
    return [name for name, spec in DATASETS.items() if spec.classifier_training is not None]

"""Prepared datasets: shapes, dtypes, value ranges, Stacked MNIST, atomic rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from ganstudy.data.builders import BUILDERS, stack_digits
from ganstudy.data.prepare import load_split, prepare
from ganstudy.data.registry import DATASETS, resolve_params
from ganstudy.data.streams import load_images
from ganstudy.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MIRROR = SHARED / "datasets"
N_STACKED = 20_000


def _quiet(_message: str) -> None:
    pass


# One pytest-xdist worker runs the whole module, so its prepared data root is built once, not once
# per worker.
pytestmark = pytest.mark.xdist_group("test_prepare")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with mnist, fashion_mnist and a small stacked_mnist prepared from the mirror."""
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror at {MIRROR}")
    data_root = tmp_path_factory.mktemp("data")
    prepare("mnist", data_root, MIRROR, log=_quiet)
    prepare("fashion_mnist", data_root, MIRROR, log=_quiet)
    prepare(
        "stacked_mnist", data_root, None, params={"n_train": N_STACKED, "n_test": 2000}, log=_quiet
    )
    return data_root


def test_recipes_agree_with_the_dataset_registry():
    prepared = {n: s.preparation for n, s in DATASETS.items() if s.preparation is not None}
    for name, preparation in prepared.items():
        assert DATASETS[name].kind == "image"
        assert preparation.builder in BUILDERS, name
        assert DATASETS[name].splits == preparation.splits, name
    images = {n for n, s in DATASETS.items() if s.kind == "image"}
    assert images == set(prepared)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_like_sets_have_the_official_sizes_and_ranges(root, name):
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = load_split(name, root, split)
        assert images.shape == (count, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (count,) and labels.dtype == torch.int64
        assert images.min() == 0 and images.max() == 255
        counts = torch.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.min() > 0.08 * count  # every class, none dominant
    manifest = json.loads((root / "prepared" / name / "manifest.json").read_text())
    assert manifest["splits"] == {"train": {"count": 60_000}, "test": {"count": 10_000}}
    assert manifest["shape"] == [1, 28, 28]
    assert all(f["pinned"] and len(f["sha256"]) == 64 for f in manifest["source"]["files"])


def test_first_mnist_labels_are_the_known_ones(root):
    # The first training digits of MNIST are 5 0 4 1 9 2 1 3 1 4; Fashion-MNIST starts 9 0 0 3.
    assert load_split("mnist", root, "train")[1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert load_split("fashion_mnist", root, "train")[1][:4].tolist() == [9, 0, 0, 3]


def test_stacked_mnist_has_1000_near_uniform_modes(root):
    images, labels = load_split("stacked_mnist", root, "train")
    assert images.shape == (N_STACKED, 3, 28, 28) and images.dtype == torch.uint8
    counts = torch.bincount(labels, minlength=1000)
    assert len(counts) == 1000 and (counts > 0).all()
    # Each channel is a uniformly drawn MNIST image, so mode (a, b, c) has probability
    # f(a) f(b) f(c) with f the MNIST digit frequencies (0.090 to 0.112): within a factor 2 of uniform; a
    # chi-square goodness-of-fit test against exactly that distribution does not reject it.
    freq = torch.bincount(load_split("mnist", root, "train")[1], minlength=10).double() / 60_000
    expected = torch.einsum("a,b,c->abc", freq, freq, freq).flatten() * N_STACKED
    assert expected.max() / expected.min() < 2.0
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    for place in (100, 10, 1):
        digit_counts = torch.bincount(labels // place % 10, minlength=10).numpy()
        assert stats.chisquare(digit_counts, (freq * N_STACKED).numpy()).pvalue > 1e-3, place


@pytest.mark.parametrize("split", ["train", "test"])
def test_stacked_mnist_channels_are_real_mnist_digits(root, split):
    mnist, mnist_labels = load_split("mnist", root, split)
    lookup = {bytes(img.numpy()): int(lab) for img, lab in zip(mnist[:, 0], mnist_labels)}
    images, labels = load_split("stacked_mnist", root, split)
    for k, place in enumerate((100, 10, 1)):
        found = [lookup.get(bytes(img.numpy())) for img in images[:, k]]
        assert None not in found  # every channel is one of the split's MNIST images
        assert found == (labels // place % 10).tolist()  # and the label spells its digits


def test_stacked_digits_follow_the_seed():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 28, 28)
    labels = torch.arange(50) % 10
    a = stack_digits(images, labels, 300, torch.Generator().manual_seed(1))
    b = stack_digits(images, labels, 300, torch.Generator().manual_seed(1))
    c = stack_digits(images, labels, 300, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # the three channels are drawn independently, not copies of one index
    assert (a[0][:, 0, 0, 0] != a[0][:, 1, 0, 0]).any()


def test_stacked_mnist_defaults_follow_the_pacgan_protocol():
    assert resolve_params("stacked_mnist", None) == {
        "seed": 0,
        "n_train": 128_000,
        "n_test": 10_000,
    }


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_trian": 5}, "unknown parameter 'n_trian' for stacked_mnist; allowed: seed, n_train"),
        ({"n_train": "many"}, "parameter 'n_train' of stacked_mnist: 'many' is not a int"),
        ({"n_train": 0}, "'n_train' of stacked_mnist: 0 is not a positive integer"),
        ({"seed": True}, "'seed' of stacked_mnist: True is not a int"),
    ],
)
def test_bad_parameters_are_named(params, match):
    with pytest.raises(ConfigError, match=match):
        resolve_params("stacked_mnist", params)


def test_unknown_and_fileless_datasets_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'minst'.*fashion_mnist, mnist"):
        prepare("minst", tmp_path)
    with pytest.raises(ConfigError, match="ring8.*sampled directly"):
        load_split("ring8", tmp_path, "train")
    with pytest.raises(ConfigError, match="no split 'test'; its splits: train"):
        load_split("cat_faces64", tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="ganstudy data prepare mnist"):
        load_split("mnist", tmp_path, "train")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rebuild_leaves_the_prepared_data_untouched(root, monkeypatch):
    folder = root / "prepared" / "stacked_mnist"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(ConfigError, match="prepared with parameters .* --force"):
        prepare("stacked_mnist", root, params={"n_train": 1000})

    def explode(raw_dir, work_dir, params):
        raise RuntimeError("disk full")

    builder = DATASETS["stacked_mnist"].preparation.builder
    monkeypatch.setitem(BUILDERS, builder, explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare("stacked_mnist", root, params={"n_train": 1000}, force=True)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        "fashion_mnist",
        "mnist",
        "stacked_mnist",
    ]


def test_an_existing_preparation_is_reused(root):
    manifest = root / "prepared" / "mnist" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    prepare("mnist", root)  # no mirror, no network: nothing to do
    assert manifest.stat().st_mtime_ns == stamp


def test_training_loads_prepared_images_through_the_data_module(root):
    images, labels = load_images("fashion_mnist", root, "test")
    assert images.shape == (10_000, 1, 28, 28) and labels.shape == (10_000,)


def test_a_forced_rebuild_swaps_in_the_new_data(tmp_path):
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror at {MIRROR}")
    small = {"n_train": 100, "n_test": 10, "seed": 3}
    prepare("stacked_mnist", tmp_path, MIRROR, params=small, log=_quiet)
    first, _ = load_split("stacked_mnist", tmp_path, "train")
    prepare("stacked_mnist", tmp_path, params={**small, "seed": 4}, force=True, log=_quiet)
    second, _ = load_split("stacked_mnist", tmp_path, "train")
    assert first.shape == second.shape == (100, 3, 28, 28)
    assert not torch.equal(first, second)
    manifest = json.loads((tmp_path / "prepared" / "stacked_mnist" / "manifest.json").read_text())
    assert manifest["params"]["seed"] == 4
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == ["stacked_mnist"]


def test_cat_faces64_is_its_own_dataset(tmp_path):
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror at {MIRROR}")
    prepare("cat_faces64", tmp_path, MIRROR, log=_quiet)
    images, labels = load_split("cat_faces64", tmp_path, "train")
    assert images.shape == (15_747, 3, 64, 64) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and (labels == 0).all()
    assert images.min() == 0 and images.max() == 255
    # real photos: the colour channels differ and images differ from each other
    assert (images[:, 0] != images[:, 2]).float().mean() > 0.5
    assert np.unique(images[:100].reshape(100, -1).numpy(), axis=0).shape[0] == 100
    manifest = json.loads((tmp_path / "prepared" / "cat_faces64" / "manifest.json").read_text())
    assert manifest["source"]["key"] == "cat-faces-64x64-spandan2"
    assert "CAT dataset" not in manifest["source"]["title"]
    assert manifest["splits"] == {"train": {"count": 15_747}}

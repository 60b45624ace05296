"""Evaluation classifiers: accuracy on a small budget, caching, determinism, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganstudy.cli import build_parser
from ganstudy.data.prepare import load_split, prepare
from ganstudy.errors import ConfigError
from ganstudy.metrics.classifiers import (
    build,
    classifier_path,
    fit,
    load_classifier,
    predict,
    train_classifier,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MIRROR = SHARED / "datasets"


# One pytest-xdist worker runs the whole module, so its data root (MNIST and Fashion-MNIST prepared) is built once, not once
# per worker.
pytestmark = pytest.mark.xdist_group("test_classifiers")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror at {MIRROR}")
    data_root = tmp_path_factory.mktemp("data")
    for name in ("mnist", "fashion_mnist"):
        prepare(name, data_root, MIRROR, log=lambda m: None)
    return data_root


@pytest.fixture(scope="module")
def quick_mnist(root):
    """The MNIST classifier trained on 12,000 digits for 2 epochs (the full one: 60,000 x 4)."""
    return train_classifier("mnist", root, epochs=2, train_limit=12_000, device="cpu")


def test_a_small_budget_mnist_classifier_is_accurate(quick_mnist):
    _, info = quick_mnist
    assert info["n_train"] == 12_000 and info["n_test"] == 10_000
    assert info["test_accuracy"] >= 0.97


def test_the_stored_classifier_reproduces_the_trained_one(root, quick_mnist):
    model, info = quick_mnist
    path = classifier_path(root, "mnist")
    blob = torch.load(path, weights_only=True)  # plain tensors and values only
    assert blob["test_accuracy"] == info["test_accuracy"]
    loaded, loaded_info = load_classifier(root, "mnist", "cpu")
    assert not loaded.training
    for key in ("dataset", "test_accuracy", "arch", "epochs", "seed"):
        assert loaded_info[key] == info[key]
    images, labels = load_split("mnist", root, "test")
    x = images[:2000].float() / 127.5 - 1
    model.eval()
    assert torch.equal(predict(loaded, x, batch_size=300), predict(model, x))
    predicted = predict(loaded, x)
    assert predicted.dtype == torch.int64 and predicted.shape == (2000,)
    accuracy = (predicted == labels[:2000]).float().mean().item()
    assert accuracy == pytest.approx(info["test_accuracy"], abs=0.02)
    # Stacked MNIST is classified channel by channel with the MNIST classifier.
    _, stacked_info = load_classifier(root, "stacked_mnist", "cpu")
    assert stacked_info["dataset"] == "mnist"


def test_fashion_classifier_on_a_small_budget(root):
    _, info = train_classifier(
        "fashion_mnist", root, epochs=1, train_limit=12_000, device="cpu", save=False
    )
    assert info["test_accuracy"] >= 0.80
    assert not classifier_path(root, "fashion_mnist").exists()


def test_training_is_deterministic_from_the_seed(root):
    images, labels = load_split("fashion_mnist", root, "train")
    images, labels = images[:512], labels[:512]

    def weights(seed):
        torch.manual_seed(seed)
        model = build("small_cnn", {"width": 8})
        fit(model, images, labels, epochs=1, lr=2e-3, batch_size=128, seed=seed)
        return torch.cat([p.detach().flatten() for p in model.state_dict().values()])

    first = weights(3)
    assert torch.equal(first, weights(3))
    assert not torch.equal(first, weights(4))


def test_bad_requests_are_named(root, tmp_path):
    with pytest.raises(ConfigError, match="no evaluation classifier for dataset 'cat64'"):
        train_classifier("cat64", root)
    with pytest.raises(ConfigError, match="epochs: 0"):
        train_classifier("mnist", root, epochs=0)
    with pytest.raises(ConfigError, match="device 'tpu'.*auto, cpu, cuda"):
        train_classifier("mnist", root, device="tpu")
    with pytest.raises(FileNotFoundError, match="ganstudy classifier train --dataset mnist"):
        load_classifier(tmp_path, "stacked_mnist")


def _cli(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    return args.func(args)


def test_classifier_show_prints_the_stored_info(root, quick_mnist, capsys):
    assert _cli(["classifier", "show", "--dataset", "stacked_mnist", "--data-root", str(root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dataset"] == "mnist"
    assert shown["test_accuracy"] == quick_mnist[1]["test_accuracy"]


def test_data_list_shows_every_dataset_and_its_state(root, capsys):
    from ganstudy.cli import main

    assert main(["data", "list", "--data-root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(table) >= {
        "mnist",
        "fashion_mnist",
        "stacked_mnist",
        "cat64",
        "cat_faces64",
        "ring8",
    }
    assert table["mnist"][1:6] == ["1x28x28", "mnist", "pinned", "4/4", "True"]
    assert table["cat64"][2:6] == ["cat-dataset", "unpinned", "0/3", "False"]
    assert table["ring8"][2] == "sampled"


def test_cli_prepare_rejects_a_bad_parameter_before_work(tmp_path):
    with pytest.raises(ConfigError, match="--param 'n_train' is not of the form key=value"):
        _cli(
            ["data", "prepare", "stacked_mnist", "--data-root", str(tmp_path), "--param", "n_train"]
        )
    assert list(tmp_path.iterdir()) == []

"""Evaluation classifiers for the mode-coverage metrics, trained once per dataset and cached.

``classifiers/<dataset>.pt`` holds the weights with their test accuracy and training settings.
The MNIST classifier also serves Stacked MNIST (applied to each channel), so
``load_classifier(root, "stacked_mnist")`` returns the MNIST one.

Inputs are float images in [-1, 1] of shape (N, 1, 28, 28) (``x / 127.5 - 1`` of the uint8
pixels); outputs are logits (N, 10). Training is cross-entropy with Adam and a cosine learning
rate ``lr_t = lr * (1 + cos(pi t / T)) / 2``, on batches indexed from in-memory tensors in a
seeded random order, so a seed fixes the result.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import ganstudy
from ganstudy import store
from ganstudy.data import registry
from ganstudy.data.prepare import is_prepared, load_split, prepare
from ganstudy.errors import ConfigError
from ganstudy.numerics import resolve_device


def small_cnn(width: int = 32) -> nn.Module:
    """conv5x5(w) -> BN -> ReLU -> pool2 -> conv5x5(2w) -> BN -> ReLU -> pool2 -> FC(128) -> FC(10)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 5, padding=2, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 5, padding=2, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


CLASSIFIER_ARCHS: dict[str, Callable[..., nn.Module]] = {"small_cnn": small_cnn}


def classifier_name(dataset: str) -> str:
    """The dataset whose classifier measures ``dataset`` (its registry entry's ``classifier``)."""
    name = registry.dataset(dataset).classifier
    if name is None:
        with_classifier = [n for n, s in registry.DATASETS.items() if s.classifier is not None]
        raise ConfigError(
            f"no evaluation classifier for dataset {dataset!r}; available for: "
            f"{', '.join(with_classifier)}"
        )
    return name


def training_spec(dataset: str) -> registry.ClassifierTraining:
    """How the classifier of a classifier dataset is trained."""
    spec = registry.dataset(dataset).classifier_training
    if spec is None:
        raise ConfigError(
            f"no classifier is trained on {dataset!r}; allowed: "
            f"{', '.join(registry.classifier_datasets())}"
        )
    return spec


def classifier_path(data_root: str | os.PathLike, dataset: str) -> Path:
    return store.DataRoot(data_root).classifier(classifier_name(dataset))


def to_unit(images: Tensor) -> Tensor:
    """uint8 pixels -> float in [-1, 1]: x / 127.5 - 1 (floats pass through)."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """Predicted labels (int64, on the CPU) for images in [-1, 1] (uint8 pixels are converted)."""
    device = next(model.parameters()).device
    out = [
        model(to_unit(images[i : i + batch_size]).to(device)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    was_training = model.training
    model.eval()
    acc = (predict(model, images) == labels.cpu()).float().mean().item()
    model.train(was_training)
    return acc


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train in place: Adam, cosine learning rate, a seeded random order every epoch."""
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(images) // batch_size
    total = max(1, epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = loss_fn(model(to_unit(images[idx])), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: mean loss {running / max(1, steps_per_epoch):.4f}")


def build(arch: str, arch_params: dict) -> nn.Module:
    if arch not in CLASSIFIER_ARCHS:
        raise ConfigError(
            f"unknown classifier arch {arch!r}; allowed: {', '.join(CLASSIFIER_ARCHS)}"
        )
    return CLASSIFIER_ARCHS[arch](**arch_params)


def train_classifier(
    dataset: str,
    data_root: str | os.PathLike,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    mirror: str | os.PathLike | None = None,
    train_limit: int | None = None,
    save: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, dict]:
    """Train the classifier of ``dataset`` on its train split, measure it on the full test split.

    Saves ``classifiers/<name>.pt`` atomically unless ``save`` is false. ``train_limit`` keeps only
    the first images of the train split (for quick checks).
    """
    name = classifier_name(dataset)
    spec = training_spec(name)
    epochs = spec.epochs if epochs is None else epochs
    if epochs <= 0:
        raise ConfigError(f"epochs: {epochs!r} is not a positive integer")
    if train_limit is not None and train_limit < spec.batch_size:
        raise ConfigError(
            f"train_limit: {train_limit!r} is smaller than a batch ({spec.batch_size})"
        )
    dev = resolve_device(device)
    if not is_prepared(name, data_root):
        prepare(name, data_root, mirror, log=log)
    train_x, train_y = load_split(name, data_root, "train")
    test_x, test_y = load_split(name, data_root, "test")
    if train_limit is not None:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]

    torch.manual_seed(seed)
    model = build(spec.arch, spec.arch_params).to(dev)
    start = time.perf_counter()
    fit(model, train_x, train_y, epochs, spec.lr, spec.batch_size, seed, log)
    train_time = time.perf_counter() - start
    model.eval()
    acc = accuracy(model, test_x, test_y)
    if acc < spec.target_accuracy and log is not None:
        log(
            f"warning: test accuracy {acc:.4f} is below the target {spec.target_accuracy:.3f}; "
            "evaluation refuses this classifier unless told to flag it (more epochs help)"
        )
    info = {
        "dataset": name,
        "arch": spec.arch,
        "arch_params": dict(spec.arch_params),
        "test_accuracy": acc,
        "target_accuracy": spec.target_accuracy,
        "epochs": epochs,
        "seed": seed,
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "n_train": len(train_x),
        "n_test": len(test_x),
        "train_time_s": train_time,
        "device": str(dev),
        "versions": {"ganstudy": ganstudy.__version__, "torch": str(torch.__version__)},
    }
    if save:
        save_classifier(model, info, classifier_path(data_root, name))
    return model, info


def save_classifier(model: nn.Module, info: dict, path: Path) -> None:
    """Write ``{"state_dict", **info}`` to a temporary name and rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save({"state_dict": state, **info}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_classifier(
    data_root: str | os.PathLike, name: str, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """The cached classifier of dataset ``name`` in eval mode and its info (accuracy, settings)."""
    path = classifier_path(data_root, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: train it with "
            f"`ganstudy classifier train --dataset {classifier_name(name)}`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    info = {k: v for k, v in blob.items() if k != "state_dict"}
    model = build(info["arch"], info.get("arch_params", {}))
    model.load_state_dict(blob["state_dict"])
    return model.to(resolve_device(device)).eval(), info

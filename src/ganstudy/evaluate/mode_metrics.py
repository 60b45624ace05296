"""The mode metrics: ``MODE_METRICS``, one :class:`ModeMetric` per kind a dataset names in the
dataset registry (``DatasetSpec.mode_metric``), measuring the mode coverage of generated
samples with the pure functions of :mod:`ganstudy.metrics.modes`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ganstudy.data import streams
from ganstudy.metrics import classifiers, modes


@dataclass(frozen=True)
class ModeMetric:
    """How mode coverage is measured: ``measure(samples, context) -> ModeCoverage``."""

    measure: Callable
    default_samples: int
    classifier: bool


def _classify_channels(samples: Tensor, context: dict) -> np.ndarray:
    model = context["classifier"]
    return np.stack(
        [
            classifiers.predict(model, samples[:, c : c + 1]).numpy()
            for c in range(samples.shape[1])
        ],
        axis=1,
    )


def _stacked(samples: Tensor, context: dict) -> modes.ModeCoverage:
    return modes.stacked_mnist_modes(
        _classify_channels(samples, context), context.get("min_count") or 1
    )


def _classes(samples: Tensor, context: dict) -> modes.ModeCoverage:
    labels = _classify_channels(samples, context)[:, 0]
    return modes.class_modes(labels, context["spec"].n_classes, min_count=context.get("min_count"))


def _mixture(samples: Tensor, context: dict) -> modes.ModeCoverage:
    spec = context["spec"]
    means = streams.mixture_means(spec.name).numpy()
    return modes.mixture_modes(
        samples.numpy(), means, spec.mixture.sigma, min_count=context.get("min_count")
    )


MODE_METRICS: dict[str, ModeMetric] = {
    "stacked_mnist": ModeMetric(_stacked, modes.DEFAULT_SAMPLES["stacked_mnist"], classifier=True),
    "classes": ModeMetric(_classes, modes.DEFAULT_SAMPLES["classes"], classifier=True),
    "mixture2d": ModeMetric(_mixture, modes.DEFAULT_SAMPLES["mixture2d"], classifier=False),
}

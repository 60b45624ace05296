"""The mode metrics: ``MODE_METRICS``, the kinds of :data:`ganstudy.metrics.mode_kinds.MODE_KINDS`
(the kind a dataset names in the dataset registry, ``DatasetSpec.mode_metric``) with the function
that measures each, from the pure functions of :mod:`ganstudy.metrics.modes`. Each function gives
the eval.json ``modes`` block, whose numbers are entries of
:data:`ganstudy.metrics.registry.METRICS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ganstudy.data import streams
from ganstudy.metrics import classifiers, modes
from ganstudy.metrics.mode_kinds import MODE_KINDS, ModeKind


@dataclass(frozen=True)
class ModeMetric:
    """A kind of mode metric and how it is measured: ``measure(samples, context) ->
    ModeCoverage``."""

    kind: ModeKind
    measure: Callable

    @property
    def default_samples(self) -> int:
        return self.kind.default_samples

    @property
    def classifier(self) -> bool:
        return self.kind.classifier


def _classify_channels(samples: Tensor, context: dict) -> np.ndarray:
    model = context["classifier"]
    return np.stack(
        [
            classifiers.predict(model, samples[:, c : c + 1]).numpy()
            for c in range(samples.shape[1])
        ],
        axis=1,
    )


def stacked_mnist_coverage(samples: Tensor, context: dict) -> modes.ModeCoverage:
    return modes.stacked_mnist_modes(_classify_channels(samples, context), context.get("min_count"))


def class_coverage(samples: Tensor, context: dict) -> modes.ModeCoverage:
    labels = _classify_channels(samples, context)[:, 0]
    return modes.class_modes(labels, context["spec"].n_classes, min_count=context.get("min_count"))


def mixture_coverage(samples: Tensor, context: dict) -> modes.ModeCoverage:
    spec = context["spec"]
    means = streams.mixture_means(spec.name).numpy()
    return modes.mixture_modes(
        samples.numpy(), means, spec.mixture.sigma, min_count=context.get("min_count")
    )


_MEASURES: dict[str, Callable[[Tensor, dict], modes.ModeCoverage]] = {
    "stacked_mnist": stacked_mnist_coverage,
    "classes": class_coverage,
    "mixture2d": mixture_coverage,
}
MODE_METRICS: dict[str, ModeMetric] = {
    name: ModeMetric(MODE_KINDS[name], measure) for name, measure in _MEASURES.items()
}

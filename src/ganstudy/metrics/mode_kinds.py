"""The kinds of mode metric: ``MODE_KINDS``, one :class:`ModeKind` per kind a dataset names in the
dataset registry (``DatasetSpec.mode_metric``).

A kind holds the facts other modules need before anything is measured: the samples it measures
by default, whether an evaluation classifier labels them and the count that covers a mode where
the study sets none. The function that measures each kind is in
:data:`ganstudy.evaluate.mode_metrics.MODE_METRICS`; the numbers it gives (and which of them are
tested, tabled and drawn) are entries of :data:`ganstudy.metrics.registry.METRICS`.

Pure Python: the Snakefile plans the study from it when it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModeKind:
    name: str
    # Samples measured when ``ganstudy evaluate --mode-samples`` is not given.
    default_samples: int
    # Whether an evaluation classifier labels the samples (the dataset names it:
    # ``DatasetSpec.classifier``).
    classifier: bool
    # The count that covers a mode when the study sets no ``modes.min_count`` (None: the
    # measure's own rule, a share of the samples a perfect generator gives each mode).
    min_count: int | None


MODE_KINDS: dict[str, ModeKind] = {
    kind.name: kind
    for kind in (
        # The VEEGAN/PacGAN protocol: a mode is covered by one sample.
        ModeKind("stacked_mnist", default_samples=26_000, classifier=True, min_count=1),
        ModeKind("classes", default_samples=10_000, classifier=True, min_count=None),
        ModeKind("mixture2d", default_samples=2_500, classifier=False, min_count=None),
    )
}

"""The kinds of mode metric: ``MODE_KINDS``, one :class:`ModeKind` per kind a dataset names in the
dataset registry (``DatasetSpec.mode_metric``).

A kind holds every fact other modules need about it: the samples it measures by default, whether
an evaluation classifier labels them, the count that covers a mode where the study sets none,
the summary columns the study tests (:func:`ganstudy.analysis.comparisons.metric_tests`) and
those the report plots, and the function of :mod:`ganstudy.evaluate.mode_metrics` that measures
it (:data:`~ganstudy.evaluate.mode_metrics.MODE_METRICS` resolves it).

Pure Python: the Snakefile plans the study's tests from it when it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganstudy.analysis.power import CONTINUOUS, RATE


@dataclass(frozen=True)
class ModeKind:
    name: str
    # The function of ganstudy.evaluate.mode_metrics that measures it: (samples, context) ->
    # metrics.modes.ModeCoverage.
    measure: str
    # Samples measured when ``ganstudy evaluate --mode-samples`` is not given.
    default_samples: int
    # Whether an evaluation classifier labels the samples (the dataset names it:
    # ``DatasetSpec.classifier``).
    classifier: bool
    # The count that covers a mode when the study sets no ``modes.min_count`` (None: the
    # measure's own rule, a share of the samples a perfect generator gives each mode).
    min_count: int | None
    # The summary columns compared over seeds: (column, label, higher is better, test kind:
    # power.CONTINUOUS or power.RATE), the fields of analysis.comparisons.MetricTest.
    tests: tuple[tuple[str, str, bool, str], ...]
    # The summary columns the report plots per run as values, and as rates: (column, heading).
    panels: tuple[tuple[str, str], ...]
    rate_panels: tuple[tuple[str, str], ...] = ()


_MODES_COVERED = ("modes_covered", "modes covered", True, CONTINUOUS)

MODE_KINDS: dict[str, ModeKind] = {
    kind.name: kind
    for kind in (
        ModeKind(
            "stacked_mnist",
            "stacked_mnist_coverage",
            default_samples=26_000,
            classifier=True,
            # The VEEGAN/PacGAN protocol: a mode is covered by one sample.
            min_count=1,
            tests=(_MODES_COVERED,),
            panels=(("modes_covered", "modes covered"), ("kl_to_uniform", "KL to uniform")),
        ),
        ModeKind(
            "classes",
            "class_coverage",
            default_samples=10_000,
            classifier=True,
            min_count=None,
            tests=(_MODES_COVERED,),
            panels=(("modes_covered", "modes covered"), ("kl_to_uniform", "KL to uniform")),
        ),
        ModeKind(
            "mixture2d",
            "mixture_coverage",
            default_samples=2_500,
            classifier=False,
            min_count=None,
            tests=(_MODES_COVERED, ("success", "success rate", True, RATE)),
            panels=(
                ("modes_covered", "modes covered"),
                ("high_quality_fraction", "high-quality fraction"),
            ),
            rate_panels=(("success", "success"), ("failure", "failure")),
        ),
    )
}

"""What the study compares, per dataset: the metric tests of every baseline-vs-candidate group.

A dataset with FID is compared on FID, one without on its mode metric(s); every dataset is also
compared on the rate of diverged runs, the study's stability question. Continuous metrics are
tested with Mann-Whitney U and binary outcomes as rates with Fisher's exact test
(:mod:`ganstudy.power`, :mod:`ganstudy.stats`). The study plans its family of comparisons from
this table before any run, and the report tests the same family.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganstudy.data import registry
from ganstudy.power import CONTINUOUS, RATE


@dataclass(frozen=True)
class MetricTest:
    column: str  # a column of summary.csv
    label: str
    higher_is_better: bool
    kind: str  # power.CONTINUOUS or power.RATE


FID = MetricTest("fid", "FID", False, CONTINUOUS)
DIVERGED = MetricTest("diverged", "diverged rate", False, RATE)
# By mode metric (evaluate.MODE_METRICS), for datasets without FID.
MODE_TESTS: dict[str, tuple[MetricTest, ...]] = {
    "stacked_mnist": (MetricTest("modes_covered", "modes covered", True, CONTINUOUS),),
    "classes": (MetricTest("modes_covered", "modes covered", True, CONTINUOUS),),
    "mixture2d": (
        MetricTest("modes_covered", "modes covered", True, CONTINUOUS),
        MetricTest("success", "success rate", True, RATE),
    ),
}


def metric_tests(
    dataset: str, has_fid: bool | None = None, mode_kind: str | None = None
) -> tuple[MetricTest, ...]:
    """The tests of a dataset's comparisons. ``has_fid``: whether its runs have FID values
    (None: as the dataset registry says); ``mode_kind``: the mode metric of a dataset the
    registry does not know (results of another version)."""
    spec = registry.DATASETS.get(dataset)
    fid = (spec is not None and spec.fid is not None) if has_fid is None else has_fid
    mode_tests = MODE_TESTS.get(spec.mode_metric if spec is not None else mode_kind, ())
    return (*((FID,) if fid else mode_tests), DIVERGED)

"""What a run measures: ``METRICS``, one :class:`Metric` per number of eval.json that the study
records, mirrors, reports or tests.

An entry is everything the rest of the package needs to know about a metric: where eval.json
keeps it (``path``), its summary.csv column and MLflow name, its label and unit, its direction,
whether it is a rate (a yes/no per run, tested as a rate) or continuous (tested by ranks), the
datasets it applies to, where the report shows it, whether the per-cell comparisons test it and
whether a study may name it as a primary outcome. Summary columns
(:mod:`ganstudy.aggregate.columns`), MLflow records (:mod:`ganstudy.tracking.records`), the report's
tables and panels (:mod:`ganstudy.report.results`), the per-cell comparisons
(:mod:`ganstudy.analysis.comparisons`), the primary family's outcomes
(:mod:`ganstudy.analysis.primary`) and the study schema's outcome enum all read this table.

Most metrics are measured together with the others of their eval.json block (FID, the mode
coverage of :mod:`ganstudy.evaluate.mode_metrics`, the stability statistics of
:mod:`ganstudy.metrics.stability`). A metric of its own names its ``measure`` function, called
by ``ganstudy evaluate`` with the final generator's fixed-seed samples and the dataset; its value
goes to eval.json's ``measures`` block. Adding one is that function and its entry here.

Pure Python: the Snakefile plans the study's tests from it when it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganstudy.store import Status

CONTINUOUS, RATE = "continuous", "rate"
KINDS = (CONTINUOUS, RATE)
# Where the report draws a metric: a panel of the per-dataset metrics figure (values over
# seeds), the rates figure (share of runs where it holds), or the FID figures of their own.
VALUES, RATES, FID_FIGURES = "values", "rates", "fid"
MEASURES = "measures"  # the eval.json block of metrics measured by their own function


@dataclass(frozen=True)
class DatasetFacts:
    """What decides which metrics a dataset has: whether it has an FID and its mode metric
    (a kind of :data:`ganstudy.metrics.mode_kinds.MODE_KINDS`, or None). A
    :class:`~ganstudy.data.registry.DatasetSpec` answers the same two questions."""

    fid: Any
    mode_metric: str | None


def _every(d) -> bool:
    return True


def _has_fid(d) -> bool:
    return bool(d.fid)


def _has_modes(d) -> bool:
    return d.mode_metric is not None


def _is_mixture(d) -> bool:
    return d.mode_metric == "mixture2d"


def _modes_without_fid(d) -> bool:
    return _has_modes(d) and not _has_fid(d)


def _mixture_without_fid(d) -> bool:
    return _is_mixture(d) and not _has_fid(d)


@dataclass(frozen=True)
class Metric:
    name: str  # summary.csv column; the outcome's name in analysis.primary
    label: str  # how the report and the messages name it
    description: str  # the summary column's meaning
    dtype: str  # the summary column's type: float, int or bool
    kind: str  # RATE (bool per run) or CONTINUOUS
    # True: higher is better, False: lower is better, None: a count that is not a quality.
    higher_is_better: bool | None
    path: tuple[str, ...]  # where eval.json keeps it
    applies: Callable[[Any], bool]  # (DatasetFacts or DatasetSpec) -> measured there?
    where: str  # those datasets, in words
    unit: str = ""
    mlflow: bool = True  # mirrored to the run's MLflow run as mlflow_name
    panel: str | None = None  # VALUES, RATES, FID_FIGURES or None: not drawn per run
    table: bool = False  # a column of the report's per-dataset metric table
    # The datasets whose per-cell comparisons test it (None: never tested per cell).
    compared: Callable[[Any], bool] | None = None
    outcome: bool = False  # a study may name it as a primary outcome
    # A run that diverged enters a rate as this value; a continuous test ranks it worst.
    if_diverged: bool | None = None
    verb: str = ""  # rates: what a run with the event did ("diverged"), for plain sentences
    # The value training's metrics.json gives where eval.json has none (e.g. not evaluated yet).
    from_training: Callable[[dict], Any] | None = None
    # (samples, dataset spec) -> value, for a metric measured on its own (see the module doc).
    measure: Callable[[Any, Any], Any] | None = None
    # The name of published numbers of this metric (references.yaml) and our value's scale to it.
    published: tuple[str, float] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r}; allowed: {KINDS}")
        if self.measure is not None and self.path != (MEASURES, self.name):
            raise ValueError(
                f"metric {self.name!r} has its own measure: its path must be "
                f"{(MEASURES, self.name)}, not {self.path}"
            )

    @property
    def column(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        """Its key in its eval.json block."""
        return self.path[-1]

    def read(self, evaluation: dict | None) -> Any:
        """Its value in an eval.json document (None where absent)."""
        node: Any = evaluation
        for part in self.path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    @property
    def mlflow_name(self) -> str:
        return "eval." + ".".join(self.path)

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def in_words(self) -> str:
        direction = {True: "higher is better", False: "lower is better", None: "a count"}
        return f"{self.label}: {self.kind}, {direction[self.higher_is_better]}, on {self.where}"


def _diverged_in_training(metrics: dict) -> bool | None:
    status = metrics.get("status")
    return None if status is None else status == Status.DIVERGED


FID = Metric(
    "fid", "FID", "final FID", "float", CONTINUOUS, False, ("fid", "value"), _has_fid,
    "datasets with an FID", panel=FID_FIGURES, table=True, compared=_has_fid, outcome=True,
    published=("fid", 1.0),
)  # fmt: skip
MODES_TOTAL = Metric(
    "modes_total", "modes of the data", "modes of the data", "int", CONTINUOUS, None,
    ("modes", "modes_total"), _has_modes, "datasets with modes",
)  # fmt: skip
MODES_COVERED = Metric(
    "modes_covered", "modes covered", "modes covered", "int", CONTINUOUS, True,
    ("modes", "modes_covered"), _has_modes, "datasets with modes", panel=VALUES, table=True,
    compared=_modes_without_fid, outcome=True, published=("modes", 1.0),
)  # fmt: skip
KL_TO_UNIFORM = Metric(
    "kl_to_uniform", "KL to uniform over modes", "KL(mode histogram || U)", "float", CONTINUOUS,
    False, ("modes", "kl_to_uniform"), _has_modes, "datasets with modes", unit="nats",
    panel=VALUES, table=True, outcome=True,
)  # fmt: skip
HIGH_QUALITY_FRACTION = Metric(
    "high_quality_fraction", "high-quality fraction", "fraction of high-quality samples (2D)",
    "float", CONTINUOUS, True, ("modes", "high_quality_fraction"), _is_mixture,
    "the 2D mixtures", panel=VALUES, table=True, outcome=True,
    published=("high_quality_percent", 100.0),
)  # fmt: skip
SUCCESS = Metric(
    "success", "success rate", "2D success (see modes_rule)", "bool", RATE, True,
    ("modes", "success"), _is_mixture, "the 2D mixtures", panel=RATES,
    table=True, compared=_mixture_without_fid, outcome=True, if_diverged=False,
    verb="succeeded", published=("success_percent", 100.0),
)  # fmt: skip
FAILURE = Metric(
    "failure", "failure rate", "2D failure (see modes_rule)", "bool", RATE, False,
    ("modes", "failure"), _is_mixture, "the 2D mixtures", panel=RATES, table=True,
)  # fmt: skip
DIVERGED = Metric(
    "diverged", "diverged rate", "training diverged", "bool", RATE, False,
    ("stability", "diverged"), _every, "every dataset", compared=_every, outcome=True,
    if_diverged=True, verb="diverged", from_training=_diverged_in_training,
)  # fmt: skip
COLLAPSED = Metric(
    "collapsed", "collapse rate", "converged onto too few modes", "bool", RATE, False,
    ("stability", "collapsed"), _has_modes, "datasets with modes", outcome=True,
    if_diverged=True, verb="collapsed",
)  # fmt: skip
BEST_FID = Metric(
    "best_fid", "best FID over training", "best FID over training", "float", CONTINUOUS, False,
    ("stability", "best_fid"), _has_fid, "datasets with an FID",
)  # fmt: skip
FINAL_FID = Metric(
    "final_fid", "FID at the end of training", "FID at the end of training", "float",
    CONTINUOUS, False, ("stability", "final_fid"), _has_fid, "datasets with an FID",
)  # fmt: skip

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        FID,
        MODES_TOTAL,
        MODES_COVERED,
        KL_TO_UNIFORM,
        HIGH_QUALITY_FRACTION,
        SUCCESS,
        FAILURE,
        DIVERGED,
        COLLAPSED,
        BEST_FID,
        FINAL_FID,
    )
}


def metrics() -> tuple[Metric, ...]:
    """Every metric, in the registry's order (read at call time, so an entry added to
    ``METRICS`` is seen everywhere)."""
    return tuple(METRICS.values())


def in_block(block: str) -> tuple[Metric, ...]:
    """The metrics eval.json keeps in ``block`` (e.g. "modes")."""
    return tuple(m for m in METRICS.values() if m.path[0] == block)


def outcomes() -> dict[str, Metric]:
    """The metrics a study may name as a primary outcome (``analysis.primary[].outcome``)."""
    return {m.name: m for m in METRICS.values() if m.outcome}


def compared_on(dataset: Any) -> tuple[Metric, ...]:
    """The metrics the per-cell comparisons of a dataset test (a DatasetFacts or DatasetSpec):
    FID where it has one, else its mode metrics, and every dataset's diverged rate."""
    return tuple(m for m in METRICS.values() if m.compared is not None and m.compared(dataset))


def measured_on(dataset: Any) -> tuple[Metric, ...]:
    """The metrics measured by their own function on a dataset (eval.json's ``measures``)."""
    return tuple(m for m in METRICS.values() if m.measure is not None and m.applies(dataset))


def published(name: str) -> Metric | None:
    """The metric that published numbers named ``name`` (references.yaml) report."""
    return next((m for m in METRICS.values() if m.published and m.published[0] == name), None)


def published_names() -> tuple[str, ...]:
    return tuple(m.published[0] for m in METRICS.values() if m.published)

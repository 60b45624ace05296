"""What the study compares: which arms (:class:`Pair`, planned by the study grid and written to
``comparisons.csv``) and, per dataset, the metric tests of every baseline-vs-candidate group.

Which metrics are tested on a dataset is the metric registry's ``compared`` (FID where the dataset
has one, else its mode metric(s); every dataset's rate of diverged runs, the study's stability
question: :func:`ganstudy.metrics.registry.compared_on`). Continuous metrics are tested with
Mann-Whitney U and binary outcomes as rates with Fisher's exact test (:mod:`ganstudy.analysis.power`, :mod:`ganstudy.analysis.stats`), runs that diverged counted at
the metric's worse end as in the pooled tests, and the same test among completed runs beside.
The study plans its family of comparisons from this table before any run, and the report tests
the same family.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from ganstudy.csvfile import parse_bool, read_rows
from ganstudy.data import registry
from ganstudy.metrics import registry as metric_registry
from ganstudy.metrics.registry import DIVERGED, FID, Metric

__all__ = ["DIVERGED", "FID", "Pair", "metric_tests", "pairs_csv", "read_pairs"]


def metric_tests(
    dataset: str, has_fid: bool | None = None, mode_kind: str | None = None
) -> tuple[Metric, ...]:
    """The tests of a dataset's comparisons (:func:`ganstudy.metrics.registry.compared_on`).
    ``has_fid``: whether its runs have FID values (None: as the dataset registry says);
    ``mode_kind``: the mode metric of a dataset the registry does not know (results of another
    version)."""
    spec = registry.DATASETS.get(dataset)
    fid = (spec is not None and spec.fid is not None) if has_fid is None else has_fid
    kind = spec.mode_metric if spec is not None else mode_kind
    return metric_registry.compared_on(metric_registry.DatasetFacts(fid, kind))


@dataclass(frozen=True)
class Pair:
    """One planned comparison: the ``candidate`` arm against the ``baseline`` arm in one dataset x
    architecture x batch-norm group; ``block`` is the candidate's block."""

    block: str
    dataset: str
    arch: str
    bn_g: bool
    bn_d: bool
    baseline: str
    candidate: str


PAIR_COLUMNS = tuple(f.name for f in fields(Pair))


def pairs_csv(pairs: list[Pair]) -> str:
    """``comparisons.csv``: one row per pair (batch norm as 0/1)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAIR_COLUMNS)
    for pair in pairs:
        writer.writerow([int(v) if isinstance(v, bool) else v for v in astuple(pair)])
    return out.getvalue()


def read_pairs(path: str | Path) -> list[Pair] | None:
    """The pairs of a ``comparisons.csv`` (None: no such file, e.g. runs trained by hand)."""
    path = Path(path)
    if not path.is_file():
        return None
    pairs = []
    for where, row in read_rows(path, PAIR_COLUMNS):
        bn = [parse_bool(row[k], f"{where}, column '{k}'") for k in ("bn_g", "bn_d")]
        pairs.append(
            Pair(row["block"], row["dataset"], row["arch"], *bn, row["baseline"], row["candidate"])
        )
    return pairs

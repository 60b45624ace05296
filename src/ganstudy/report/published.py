"""Reproduction vs published: our numbers beside the literature's, with each protocol.

The published numbers live in ``references.yaml`` as data, each with its source, its place in the
paper and its protocol. Every protocol key is compared with the same setting of our runs, and each
difference is printed beside the numbers.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import yaml

from ganstudy import protocols, store
from ganstudy.data.registry import DATASETS
from ganstudy.metrics.registry import FID, published
from ganstudy.report.html import Html, fmt, join, summarize, table, tag
from ganstudy.report.inputs import ReportInputs


def _ours(published_metric: str) -> tuple[str, float]:
    """(our summary column, its scale to the published numbers) of a published metric."""
    metric = published(published_metric)
    return metric.name, metric.published[1]


FID_IMPLEMENTATION = "pytorch-fid {} (PyTorch port of the FID Inception)"


def _run_facts(study: ReportInputs, row: Any, metric: str, runs: int) -> protocols.Facts:
    """What one run recorded that the protocol fields need (metrics.json, eval.json)."""
    metrics = store.read_record(study.run_path(row, store.METRICS), missing_ok=True) or {}
    evaluation = store.read_record(study.run_path(row, store.EVAL), missing_ok=True) or {}
    modes = evaluation.get("modes") or {}
    classifier = modes.get("classifier") or {}
    column, _ = _ours(metric)
    has_metric = not _missing(getattr(row, column, None))
    is_fid = column == FID.name
    version = (metrics.get("versions") or {}).get("pytorch_fid")
    accuracy = classifier.get("test_accuracy")
    return protocols.Facts(
        n_train=(metrics.get("training_data") or {}).get("n_train"),
        steps=metrics.get("steps_planned"),
        metric=metric if has_metric else None,
        n_samples=_int(row.fid_n_generated) if is_fid else _int(row.modes_n_samples),
        min_count=None if is_fid else modes.get("min_count"),
        classifier=(
            f"ganstudy's {classifier['dataset']} classifier"
            + (f", test accuracy {accuracy:.4f}" if accuracy is not None else "")
            if classifier.get("dataset") and not is_fid
            else None
        ),
        fid_implementation=FID_IMPLEMENTATION.format(version) if is_fid and version else None,
        n_reference=_int(row.fid_n_reference) if is_fid else None,
        runs=runs,
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _run_config(study: ReportInputs, row: Any) -> dict[str, Any] | None:
    try:
        return yaml.safe_load(study.run_path(row, store.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return None


def our_values(study: ReportInputs, rows: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    """:func:`ganstudy.protocols.ours` of every run of ``rows`` whose config can be read (a run
    config of an older version fills what it can; a field it lacks is not compared)."""
    out = []
    for row in rows.itertuples():
        cfg = _run_config(study, row)
        if cfg is None:
            continue
        facts = _run_facts(study, row, metric, len(rows))
        values = {}
        for field in protocols.FIELDS:
            try:
                values[field.key] = field.ours(cfg, facts)
            except (KeyError, TypeError):
                values[field.key] = None
        out.append(values)
    return out


def protocol_differences(
    record: dict[str, Any], study: ReportInputs, rows: pd.DataFrame, metric: str
) -> list[str]:
    """Every protocol field where our runs differ from the record, then every field not
    compared."""
    diffs = protocols.differences(record, our_values(study, rows, metric))
    compared = [str(d) for d in diffs if d.compared]
    skipped = [d.key for d in diffs if not d.compared]
    if skipped:
        compared.append(
            "not compared (not published, or not recorded by our runs): " + ", ".join(skipped)
        )
    return compared


def _base(dataset: str) -> str:
    """A dataset's base (Stacked MNIST for every preparation of it); unknown names stay."""
    spec = DATASETS.get(dataset)
    return dataset if spec is None else spec.base


def _cite(source: dict[str, Any]) -> str:
    """'Lucic et al. 2018': the first author's family name and the year."""
    first_author = source["authors"].split(",")[0].split()[-1]
    return f"{first_author} et al. {source['year']}"


def _published_value(res: dict[str, Any]) -> str:
    for key, label in (("sd", ""), ("se", " (SE)")):
        if res.get(key) is not None:
            return f"{fmt(res['mean'])} ± {fmt(res[key])}{label}"
    return fmt(res["mean"])


def _protocol_cell(refs: dict[str, Any], res: dict[str, Any]) -> Html:
    """The protocol's summary, and every field of it (with the record's notes) folded below."""
    record = protocols.result_protocol(refs, res)
    fields = join(
        tag("li", f"{f.key}: {'not stated' if record[f.key] is None else record[f.key]}")
        for f in protocols.FIELDS
    )
    notes = record.get("notes")
    return join(
        [
            tag("div", record.get("text", "")),
            tag(
                "details",
                join([tag("summary", "every field"), tag("ul", fields), tag("p", notes or "")]),
            ),
        ]
    )


def _published_table(refs: dict[str, Any]) -> Html:
    sources = refs["sources"]
    rows = [
        [
            res["dataset"],
            res["label"],
            res["metric"],
            _published_value(res),
            _protocol_cell(refs, res),
            f"{_cite(sources[res['source']])}: {res['where']}",
        ]
        for res in refs["results"]
    ]
    return table(["dataset", "model", "metric", "published", "protocol", "source"], rows)


def _ours_table(study: ReportInputs) -> Html:
    refs = study.references
    rows = []
    for res in refs["results"]:
        column, scale = _ours(res["metric"])
        mine = study.runs[
            study.runs["dataset"].map(_base).eq(_base(res["dataset"]))
            & (study.runs["loss_label"] == res["loss"])
        ]
        head = [res["dataset"], f"{res['label']} ({_cite(refs['sources'][res['source']])})"]
        if mine.empty:
            rows.append([*head, res["metric"], _published_value(res), "-", "-", "not run here"])
            continue
        record = protocols.result_protocol(refs, res)
        for variant, g in mine.groupby("variant", sort=True):
            diffs = protocol_differences(record, study, g, res["metric"])
            rows.append(
                [
                    *head,
                    res["metric"],
                    _published_value(res),
                    f"{res['loss']}, {variant}",
                    summarize(g[column].astype(float), scale),
                    join(tag("div", x) for x in diffs) if diffs else "none found",
                ]
            )
    return table(
        ["dataset", "published model", "metric", "published", "our runs",
         "ours: mean ± SD [95% CI] (n)", "protocol differences"],
        rows,
        cls="published",
    )  # fmt: skip


def published_section(study: ReportInputs) -> Html:
    refs = study.references
    references = join(
        tag(
            "li",
            join(
                [
                    f'{s["authors"]}. "{s["title"]}". {s["venue"]}, {s["year"]}. ',
                    tag("a", s["url"], href=s["url"]),
                ]
            ),
        )
        for s in refs["sources"].values()
    )
    return join(
        [
            tag(
                "p",
                "Our numbers beside the literature's. The differences column lists every protocol "
                "setting where ours differs from the publication's: numbers measured with "
                "different settings are not directly comparable. In particular FIDs from "
                "pytorch-fid's port of the Inception network are not the TensorFlow Inception's "
                "FIDs, and FID depends on the number of samples.",
            ),
            tag("h3", "Published numbers and their protocols"),
            _published_table(refs),
            tag("h3", "Ours beside them"),
            _ours_table(study),
            tag("h3", "References"),
            tag("ul", references),
        ]
    )

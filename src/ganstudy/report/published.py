"""Reproduction vs published: our numbers beside the literature's, with each protocol.

The published numbers live in ``references.yaml`` as data, each with its source, its place in the
paper and its protocol. Every protocol key is compared with the same setting of our runs, and each
difference is printed beside the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ganstudy.errors import ConfigError
from ganstudy.report.html import Html, fmt, join, summarize, table, tag
from ganstudy.report.inputs import ReportInputs

OUR_METRICS: dict[str, tuple[str, float]] = {
    # published metric -> (our column, scale)
    "fid": ("fid", 1.0),
    "modes_covered": ("modes_covered", 1.0),
    "success_percent": ("success", 100.0),
    "high_quality_percent": ("high_quality_fraction", 100.0),
}


def _distinct(values: Iterable[Any]) -> list[Any]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v in out:
            continue
        out.append(v)
    return out


def _our_protocol(rows: pd.DataFrame, column: str) -> dict[str, list[Any]]:
    """Our values of the protocol keys of references.yaml, as lists of distinct values."""
    valued = rows[rows[column].notna()]
    epochs = _distinct(valued["epochs"])
    steps = _distinct(valued["steps"])
    return {
        "fid_implementation": [
            f"pytorch-fid {v} (PyTorch port of the FID Inception)"
            for v in _distinct(valued["fid_pytorch_fid_version"])
        ],
        "n_generated": _distinct(valued["fid_n_generated"]),
        "n_reference": _distinct(valued["fid_n_reference"]),
        "epochs": epochs if epochs else [f"{fmt(s)} steps" for s in steps],
        "lr": _distinct([*valued["lr_g"], *valued["lr_d"]]),
        "runs": [len(valued)],
        "selection": ["fixed settings of the study config, every seed"],
    }


def _same(published: Any, ours: Any) -> bool:
    try:
        return math.isclose(float(published), float(ours), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(published) == str(ours)


def protocol_differences(protocol: dict[str, Any], ours: dict[str, list[Any]]) -> list[str]:
    """'key: published X, ours Y' for every protocol key whose values differ (or we lack)."""
    diffs = []
    for key, published in protocol.items():
        if key == "text":
            continue
        if key not in ours:
            raise ConfigError(
                f"references.yaml: protocol key '{key}' is not known; allowed: text, "
                + ", ".join(ours)
            )
        mine = ours[key]
        if not mine:
            diffs.append(f"{key}: published {published}, ours not recorded")
        elif not all(_same(published, v) for v in mine):
            diffs.append(f"{key}: published {published}, ours {', '.join(fmt(v) for v in mine)}")
    return diffs


def _cite(source: dict[str, Any]) -> str:
    """'Lucic et al. 2018': the first author's family name and the year."""
    first_author = source["authors"].split(",")[0].split()[-1]
    return f"{first_author} et al. {source['year']}"


def _published_value(res: dict[str, Any]) -> str:
    sd = res.get("sd")
    return fmt(res["mean"]) + (f" ± {fmt(sd)}" if sd is not None else "")


def _published_table(refs: dict[str, Any]) -> Html:
    sources = refs["sources"]
    rows = [
        [
            res["dataset"],
            res["label"],
            res["metric"],
            _published_value(res),
            res["protocol"].get("text", ""),
            f"{_cite(sources[res['source']])}: {res['where']}",
        ]
        for res in refs["results"]
    ]
    return table(["dataset", "model", "metric", "published", "protocol", "source"], rows)


def _ours_table(study: ReportInputs) -> Html:
    refs = study.references
    rows = []
    for res in refs["results"]:
        column, scale = OUR_METRICS[res["metric"]]
        mine = study.runs[
            (study.runs["dataset"] == res["dataset"]) & (study.runs["loss_label"] == res["loss"])
        ]
        head = [res["dataset"], f"{res['label']} ({_cite(refs['sources'][res['source']])})"]
        if mine.empty:
            rows.append([*head, res["metric"], _published_value(res), "-", "-", "not run here"])
            continue
        for variant, g in mine.groupby("variant", sort=True):
            diffs = protocol_differences(res["protocol"], _our_protocol(g, column))
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

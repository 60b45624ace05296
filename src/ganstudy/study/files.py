"""The files the study writes and reads: design.csv, run configs, merged study config files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ganstudy import atomic, store, yamlfile
from ganstudy import config as run_config
from ganstudy.study.grid import merge


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it onto ``path``."""
    atomic.write_text(path, text)


def design_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, store.DESIGN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run_config_yaml(data: dict) -> str:
    """The resolved YAML of a run config mapping, checked by ``ganstudy.config.from_dict``."""
    return run_config.from_dict(data).to_yaml()


def load_configs(paths: list[str | Path]) -> dict:
    """Study config files merged in order, as ``snakemake --configfile`` merges them."""
    merged: dict = {}
    for path in paths:
        merged = merge(merged, yamlfile.load_mapping(path, "study config"))
    return merged

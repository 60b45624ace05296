"""The files the study writes and reads: design.csv, run configs, merged study config files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from ganstudy import atomic, layout
from ganstudy import config as run_config
from ganstudy.errors import ConfigError
from ganstudy.study.grid import merge


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it onto ``path``."""
    atomic.write_text(path, text)


def design_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, layout.DESIGN_COLUMNS, lineterminator="\n")
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
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"study config {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"study config {path}: expected a mapping at the top level")
        merged = merge(merged, data)
    return merged

"""The project's small CSV tables (``design.csv``, ``comparisons.csv``) read back with errors that
name the file, the line and the column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganstudy.errors import ConfigError

BOOLEANS = {"0": False, "1": True, "false": False, "true": True}


def read_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """``(where, row)`` for every data row of ``path`` (``where``: "<path> line <n>"), after
    checking that the header has every ``required`` column."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"required columns: {', '.join(required)}"
            )
        for line, row in enumerate(reader, start=2):
            yield f"{path} line {line}", row


def parse_bool(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    if text not in BOOLEANS:
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed: 0, 1, true, false")
    return BOOLEANS[text]


def parse_int(value: Any, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an integer") from None

"""The one checked way to read a YAML file given by a user (run and study configs).

A missing file, a file that is not text, a syntax error and a top level that is not a mapping
each end in a :class:`~ganstudy.errors.ConfigError` naming the file (and, for a syntax error, the
line and column where YAML found it), never in a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ganstudy.errors import ConfigError


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(err: yaml.YAMLError) -> str:
    parts = [getattr(err, "context", None), getattr(err, "problem", None)]
    text = "; ".join(p for p in parts if p)
    return text or str(err).splitlines()[0]


def parse(text: str, source: str) -> Any:
    """YAML ``text`` read from ``source`` (a file's name, for messages)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}{_where(err)}: not valid YAML: {_problem(err)}") from None


def read_text(path: str | Path, what: str = "config file") -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path} is not a text file: {err}") from None
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be read: {err}") from None


def load_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping at the top level of YAML file ``path`` ({} for an empty file); ``what``
    names the kind of file in messages ("config file", "study config", ...)."""
    data = parse(read_text(path, what), f"{what} {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} {path}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return data

"""The study config checked against its JSON schema, with defaults filled in and readable errors.

The schema (``config.schema.yaml``, package data of :mod:`ganstudy.study`) gives every key a type, a description and a
default and rejects unknown keys. :func:`validate` fills the defaults into the config in place,
then reports the first violation as a :class:`~ganstudy.errors.ConfigError` that names the key
by its dotted path and says what is allowed, e.g.
``key 'gpus.jobs_per_gpu': 0 is not allowed; allowed: an integer >= 1``.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ganstudy import yamlfile
from ganstudy.errors import ConfigError
from ganstudy.metrics import registry as metric_registry

SCHEMA_FILE = "config.schema.yaml"


def default_schema_path() -> Path:
    """The study config schema shipped with the package."""
    return Path(str(resources.files("ganstudy.study").joinpath(SCHEMA_FILE)))


def load_schema(path: str | Path | None = None) -> dict:
    """The schema at ``path`` (default: the packaged one), the primary outcomes' enum filled in
    from the metric registry, so the two cannot disagree."""
    path = default_schema_path() if path is None else Path(path)
    schema = yamlfile.load_mapping(path, "study config schema")
    outcome = schema.get("$defs", {}).get("hypothesis", {}).get("properties", {}).get("outcome")
    if isinstance(outcome, dict):
        outcome["enum"] = list(metric_registry.outcomes())
    return schema


def _resolve(schema: dict, root: dict) -> dict:
    """Follow local ``$ref`` pointers (``#/$defs/name``); sibling keys override the target's."""
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(
                f"study config schema: only local $ref pointers are supported, got {ref}"
            )
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(data: Any, schema: dict, root: dict | None = None) -> Any:
    """Add the schema's defaults for missing keys, recursively (in place; returns ``data``).

    Objects whose schema has ``properties`` get each missing property's ``default``; values of
    named entries (``additionalProperties`` given as a schema) and array items are filled with
    their own schema's defaults.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(data, list):
        if isinstance(schema.get("items"), dict):
            for item in data:
                fill_defaults(item, schema["items"], root)
        return data
    if not isinstance(data, dict):
        return data
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if key in data:
            fill_defaults(data[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in data.items():
            if key not in properties:
                fill_defaults(value, extra, root)
    return data


def _show(value: Any) -> str:
    """A value as YAML writes it (null, true, 'text')."""
    if value is None or isinstance(value, bool):
        return yaml.safe_dump(value).split("\n")[0]
    return repr(value)


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "the top level"


def _allowed(schema: dict) -> str:
    """What a schema accepts, in words."""
    if "enum" in schema:
        return ", ".join(_show(v) for v in schema["enum"])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
        "object": "a mapping",
        "array": "a list",
        "null": "null",
    }
    text = " or ".join(words.get(k, k) for k in kinds) or "see the schema"
    bounds = []
    if "minimum" in schema:
        bounds.append(f">= {schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    if "maximum" in schema:
        bounds.append(f"<= {schema['maximum']}")
    if "minProperties" in schema:
        bounds.append(f"with at least {schema['minProperties']} entry(ies)")
    if "minItems" in schema:
        bounds.append(f"with at least {schema['minItems']} item(s)")
    if "pattern" in schema:
        bounds.append(f"matching {schema['pattern']}")
    return " ".join([text, *bounds])


def _message(error) -> str:
    """One violation as 'key ...: value ... allowed ...'."""
    where = list(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        key = _path([*where, unknown[0]]) if unknown else _path(where)
        return f"unknown key '{key}'; allowed keys in {_path(where)}: {', '.join(allowed)}"
    if "propertyNames" in error.schema_path:
        name = _path([*where, error.instance])
        return f"key '{name}': the name is not allowed; allowed: names matching {schema['pattern']}"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"key '{_path([*where, missing[0]])}' is missing; it is required"
    if error.validator in ("oneOf", "anyOf"):
        options = " | ".join(_allowed(s) for s in error.validator_value)
        return f"key '{_path(where)}': {error.instance!r} is not allowed; allowed: {options}"
    if error.validator == "uniqueItems":
        return f"key '{_path(where)}': {error.instance!r} repeats an item; allowed: unique items"
    return f"key '{_path(where)}': {error.instance!r} is not allowed; allowed: {_allowed(schema)}"


def _check_names(data: Any, where: list) -> None:
    """Every mapping key must be a string: YAML reads on/off/yes/no/true/false keys as booleans."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"key '{_path([*where, key])}': the name {key!r} is not a string; allowed: "
                    "text names (quote names such as on, off, yes, no, which YAML reads as booleans)"
                )
            _check_names(value, [*where, key])
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _check_names(item, [*where, i])


def validate(config: dict, schema: dict | str | Path) -> dict:
    """Fill defaults into ``config`` (in place) and check it; ConfigError on the first violation."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if not isinstance(schema, dict):
        schema = load_schema(schema)
    if not isinstance(config, dict):
        raise ConfigError(f"the study config must be a mapping, got {config!r}")
    _check_names(config, [])
    fill_defaults(config, schema)
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ConfigError(_message(error))
    return config

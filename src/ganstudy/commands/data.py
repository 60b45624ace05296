"""``ganstudy data fetch|prepare|list``: the raw files and prepared tensors of the datasets."""

from __future__ import annotations

import argparse
import json

import yaml

from ganstudy.errors import ConfigError


def add_location(parser: argparse.ArgumentParser, mirror: bool = True) -> None:
    parser.add_argument("--data-root", default="data", help="data root (default: data)")
    if mirror:
        parser.add_argument(
            "--mirror",
            default=None,
            help="directory laid out as <mirror>/<source>/<file>, looked up before downloading "
            "(default: $GANSTUDY_MIRROR)",
        )


def _parse_params(items: list[str]) -> dict:
    """``key=value`` pairs, values read as YAML scalars (``n_train=50000`` is an integer)."""
    params = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} is not of the form key=value")
        params[key] = yaml.safe_load(raw)
    return params


def _cmd_fetch(args) -> int:
    from ganstudy.data.fetch import fetch

    raw = fetch(args.name, args.data_root, args.mirror, timeout=args.timeout)
    print(f"{args.name}: nothing to fetch (sampled directly)" if raw is None else str(raw))
    return 0


def _cmd_prepare(args) -> int:
    from ganstudy.data import registry
    from ganstudy.data.prepare import prepare

    if registry.dataset(args.name).preparation is None:
        print(f"{args.name}: nothing to prepare (sampled directly)")
        return 0

    out = prepare(
        args.name, args.data_root, args.mirror, params=_parse_params(args.param), force=args.force
    )
    print(out)
    return 0


def _dataset_rows(data_root: str) -> list[dict]:
    from ganstudy.data.fetch import fetched_files
    from ganstudy.data.prepare import is_prepared
    from ganstudy.data.registry import DATASETS
    from ganstudy.data.sources import SOURCES

    rows = []
    for name, spec in DATASETS.items():
        key = spec.source
        have, total = fetched_files(name, data_root) if key is not None else (0, 0)
        rows.append(
            {
                "name": name,
                "shape": "x".join(map(str, spec.shape)),
                "source": "sampled" if key is None else key,
                "checksums": "-" if key is None else _pinning(SOURCES[key]),
                "fetched": "-" if key is None else f"{have}/{total}",
                "prepared": "-" if spec.preparation is None else is_prepared(name, data_root),
                "description": spec.description,
            }
        )
    return rows


def _pinning(source) -> str:
    return "pinned" if source.pinned else "unpinned"


def _cmd_list(args) -> int:
    rows = _dataset_rows(args.data_root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("name", "shape", "source", "checksums", "fetched", "prepared", "description")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = sub.add_parser("fetch", help="fetch and verify the raw files of a dataset")
    p.add_argument("name")
    add_location(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per connection (60)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("prepare", help="fetch if needed, then build the prepared tensors")
    p.add_argument("name")
    add_location(p)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="preparation parameter, e.g. n_train=128000 for stacked_mnist (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("list", help="datasets with their shape, source and state")
    add_location(p, mirror=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_list)

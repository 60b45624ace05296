"""Command line of the data stage: ``ganstudy data fetch|prepare|list`` and ``ganstudy classifier``."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from ganstudy.config import ConfigError


def _add_location(parser: argparse.ArgumentParser, mirror: bool = True) -> None:
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
    from ganstudy.fetch import fetch

    raw = fetch(args.name, args.data_root, args.mirror, timeout=args.timeout)
    print(f"{args.name}: nothing to fetch (sampled directly)" if raw is None else str(raw))
    return 0


def _cmd_prepare(args) -> int:
    from ganstudy.prepare import prepare
    from ganstudy.sources import source_for

    if source_for(args.name) is None:
        print(f"{args.name}: nothing to prepare (sampled directly)")
        return 0

    out = prepare(
        args.name, args.data_root, args.mirror, params=_parse_params(args.param), force=args.force
    )
    print(out)
    return 0


def _dataset_rows(data_root: str) -> list[dict]:
    from ganstudy.data import DATASETS
    from ganstudy.fetch import fetched_files
    from ganstudy.prepare import RECIPES, is_prepared
    from ganstudy.sources import DATASET_SOURCES, SOURCES

    rows = []
    for name, spec in DATASETS.items():
        key = DATASET_SOURCES.get(name)
        have, total = fetched_files(name, data_root) if key is not None else (0, 0)
        rows.append(
            {
                "name": name,
                "shape": "x".join(map(str, spec.shape)),
                "source": "sampled" if key is None else key,
                "checksums": "-" if key is None else _pinning(SOURCES[key]),
                "fetched": "-" if key is None else f"{have}/{total}",
                "prepared": "-" if name not in RECIPES else is_prepared(name, data_root),
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


def _cmd_classifier_train(args) -> int:
    from ganstudy.classifiers import train_classifier

    _, info = train_classifier(
        args.dataset,
        args.data_root,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        mirror=args.mirror,
        train_limit=args.train_limit,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(
        f"{info['dataset']}: test accuracy {info['test_accuracy']:.4f} "
        f"({info['epochs']} epochs, {info['train_time_s']:.0f} s on {info['device']})"
    )
    return 0


def _cmd_classifier_show(args) -> int:
    from ganstudy.classifiers import load_classifier

    _, info = load_classifier(args.data_root, args.dataset)
    print(json.dumps(info, indent=2, default=str))
    return 0


def register_cli(subparsers) -> None:
    data = subparsers.add_parser("data", help="fetch, prepare and list datasets")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = sub.add_parser("fetch", help="fetch and verify the raw files of a dataset")
    p.add_argument("name")
    _add_location(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per connection (60)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("prepare", help="fetch if needed, then build the prepared tensors")
    p.add_argument("name")
    _add_location(p)
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
    _add_location(p, mirror=False)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_list)

    clf = subparsers.add_parser("classifier", help="evaluation classifiers for mode coverage")
    sub = clf.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train and cache the classifier of a dataset")
    p.add_argument("--dataset", required=True)
    _add_location(p)
    p.add_argument("--epochs", type=int, default=None, help="default: the dataset's setting")
    p.add_argument(
        "--train-limit", type=int, metavar="N", help="train on the first N images only (quick runs)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_classifier_train)
    p = sub.add_parser("show", help="print the stored info of a trained classifier")
    p.add_argument("--dataset", required=True)
    _add_location(p, mirror=False)
    p.set_defaults(func=_cmd_classifier_show)

"""``ganstudy track sync``: copy run directories into an MLflow store (idempotent)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganstudy import store
from ganstudy.errors import ConfigError


def _sync(args) -> int:
    from ganstudy.tracking import backend
    from ganstudy.tracking import sync as track_sync

    skipped: list[tuple[Path, str]] = []
    if args.run:
        paths = [Path(p) for p in args.run]
        missing = [str(p) for p in paths if not (p / store.CONFIG).is_file()]
        if missing:
            raise ConfigError(f"--run {missing[0]}: no {store.CONFIG}; is it a run directory?")
    else:
        paths, skipped = track_sync.find(Path(args.results))
    uri = backend.resolve_uri(args.uri)
    try:
        done = track_sync.sync(paths, uri, args.experiment)
    except Exception as err:  # noqa: BLE001 - an unreachable store is the user's to fix
        if isinstance(err, ConfigError):
            raise
        print(
            f"ganstudy: MLflow store {uri} cannot be reached or written: "
            f"{backend.describe_error(err)}",
            file=sys.stderr,
        )
        return 2
    created = sum(s.created for s in done)
    points = sum(s.metric_points for s in done)
    print(
        f"{uri}: {len(done)} runs synced ({created} created, {len(done) - created} existing); "
        f"{points} metric points, {sum(s.params for s in done)} params and "
        f"{sum(len(s.artifacts) for s in done)} artifacts added"
    )
    for path, reason in skipped:
        print(f"ganstudy: skipped {path}: {reason}", file=sys.stderr)
    if skipped and not args.allow_strays:
        print(
            f"ganstudy: {len(skipped)} directories under {Path(args.results) / store.RUNS} are "
            "not run directories and were not synced (move them out, or --allow-strays)",
            file=sys.stderr,
        )
        return 1
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="track_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "sync",
        help="copy run directories (params, tags, metric history, eval, files) into MLflow",
        description="Make an MLflow store mirror run directories: find each run's MLflow run by "
        "its run_dir tag or create it, and add what the store lacks (params, tags, the metric "
        "history of log.csv with its steps and times, eval.json, artifacts, status). An artifact "
        "is uploaded again when its content changed (a digest per artifact): a run synced while "
        "training, then finished, evaluated or resumed, is brought level; running it twice "
        "adds nothing. A store that refuses or never answers fails within about 20 s (exit 2); "
        "directories under RESULTS/runs that are not runs are named, and make the exit 1. For "
        "runs whose tracking failed, runs trained with tracking off, or a study moved to another "
        "store.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--results", help=f"results directory: every run under RESULTS/{store.RUNS}")
    where.add_argument("--run", nargs="+", metavar="DIR", help="these run directories")
    p.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite)")
    p.add_argument("--experiment", help="experiment (default: each run's tracking.experiment)")
    p.add_argument(
        "--allow-strays",
        action="store_true",
        help="exit 0 even when --results holds directories that are not runs (still named)",
    )
    p.set_defaults(func=_sync)

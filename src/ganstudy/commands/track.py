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

    if args.run:
        paths = [Path(p) for p in args.run]
        missing = [str(p) for p in paths if not (p / store.CONFIG).is_file()]
        if missing:
            raise ConfigError(f"--run {missing[0]}: no {store.CONFIG}; is it a run directory?")
    else:
        paths = track_sync.run_dirs(Path(args.results))
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
        f"{points} metric points and {sum(s.params for s in done)} params added"
    )
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="track_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "sync",
        help="copy run directories (params, tags, metric history, eval, files) into MLflow",
        description="Make an MLflow store mirror run directories: find each run's MLflow run by "
        "its run_dir tag or create it, and add what the store lacks (params, tags, the metric "
        "history of log.csv with its steps and times, eval.json, artifacts, status). Running it "
        "twice adds nothing. For runs whose tracking failed, runs trained with tracking off, or "
        "a study moved to another store.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--results", help="results directory: every run under RESULTS/runs")
    where.add_argument("--run", nargs="+", metavar="DIR", help="these run directories")
    p.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite)")
    p.add_argument("--experiment", help="experiment (default: each run's tracking.experiment)")
    p.set_defaults(func=_sync)

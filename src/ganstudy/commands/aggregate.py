"""``ganstudy aggregate``: the run directories of a results directory as one tidy summary.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganstudy import store
from ganstudy.aggregate.columns import STATES


def _cli(args) -> int:
    from ganstudy.aggregate.summary import collect, write_summary

    results = Path(args.results)
    out = Path(args.out) if args.out else results / store.SUMMARY
    df = collect(results)
    write_summary(df, out)
    counts = df["state"].value_counts()
    states = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES)
    print(f"wrote {out}: {len(df)} runs ({states})", file=sys.stderr)
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Collect config.yaml, metrics.json and eval.json of every run of a results dir into one "
        "CSV row per run (state: " + ", ".join(STATES) + ")."
    )
    parser.add_argument("--results", required=True, help="results directory (holds runs/)")
    parser.add_argument("--out", help="output CSV (default: RESULTS/summary.csv)")
    parser.set_defaults(func=_cli)

"""``ganstudy report``: the self-contained HTML report of a results directory."""

from __future__ import annotations

import argparse
import sys


def _cli(args) -> int:
    from ganstudy.report.build import build_report

    out = build_report(args.results, args.out, args.config)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render one self-contained HTML file (figures embedded) from the results on disk; "
        "rebuilds summary.csv first when it is missing or older than the runs."
    )
    parser.add_argument("--results", required=True, help="results directory (holds runs/)")
    parser.add_argument("--out", required=True, help="HTML file to write, e.g. reports/report.html")
    parser.add_argument("--config", help="the study config, shown in the provenance section")
    parser.set_defaults(func=_cli)

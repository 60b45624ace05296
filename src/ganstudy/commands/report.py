"""``ganstudy report``: the self-contained HTML report of a results directory."""

from __future__ import annotations

import argparse
import sys


def _cli(args) -> int:
    from ganstudy.report.build import build_report

    out = build_report(args.results, args.out, args.config, args.figures, args.samples)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render one self-contained HTML file (figures embedded) from the results on disk; "
        "rebuilds summary.csv first when it is missing or older than the runs; with --figures "
        "and --samples also the figures and every run's samples as PNG files."
    )
    parser.add_argument("--results", required=True, help="results directory (holds runs/)")
    parser.add_argument("--out", required=True, help="HTML file to write, e.g. reports/report.html")
    parser.add_argument("--config", help="the study config, shown in the provenance section")
    parser.add_argument(
        "--figures",
        help="folder to write the report's figures to as PNG files (forest.png: the forest plots)",
    )
    parser.add_argument(
        "--samples",
        help="folder to write every run's samples to, one PNG per run named after it "
        "(<dataset>/<arch>/<loss>/<bn>/seed<S>.png): the image grid, or the 2D points drawn",
    )
    parser.set_defaults(func=_cli)

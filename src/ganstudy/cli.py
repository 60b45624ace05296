"""The ``ganstudy`` command line: one subcommand per stage of the study.

Each module listed in ``COMMAND_MODULES`` exposes ``register_cli(subparsers)``, which adds its
subcommand(s) and sets ``func`` on the parser; ``main`` dispatches to it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "ganstudy.train",
    "ganstudy.sample",
    "ganstudy.aggregate",
    "ganstudy.report",
    "ganstudy.evaluate",
    "ganstudy.data_cli",
    "ganstudy.study",
)


def build_parser() -> argparse.ArgumentParser:
    from ganstudy import __version__

    parser = argparse.ArgumentParser(
        prog="ganstudy",
        description="LSGAN vs standard GAN: train, evaluate and report a reproducible study.",
    )
    parser.add_argument("--version", action="version", version=f"ganstudy {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ganstudy.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"ganstudy: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

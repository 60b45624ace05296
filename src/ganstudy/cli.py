"""The ``ganstudy`` command line: one subcommand per stage of the study.

``COMMANDS`` lists every command with its help line and the module of :mod:`ganstudy.commands`
that implements it. ``ganstudy --help`` reads only this table; ``ganstudy <cmd> ...`` imports the
one module of the chosen command, whose ``configure(parser)`` adds its options and sets ``func``.
Command modules import the heavy libraries (torch, pandas, pytorch-fid) inside ``func`` only, so
``ganstudy <cmd> --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from ganstudy.allocator import keep_freed_memory
from ganstudy.atomic import STORAGE_ERRNOS, storage_message
from ganstudy.errors import ConfigError


@dataclass(frozen=True)
class Command:
    help: str
    module: str


COMMANDS: dict[str, Command] = {
    "data": Command("fetch, prepare and list datasets", "ganstudy.commands.data"),
    "classifier": Command(
        "evaluation classifiers for mode coverage", "ganstudy.commands.classifier"
    ),
    "train": Command(
        "train one run (or several seeds of one variant as one batched ensemble)",
        "ganstudy.commands.train",
    ),
    "sample": Command("draw samples from a trained run", "ganstudy.commands.sample"),
    "fid-reference": Command(
        "compute and cache a dataset's FID reference statistics", "ganstudy.commands.fid"
    ),
    "evaluate": Command(
        "FID, mode coverage and stability statistics of a finished run -> eval.json",
        "ganstudy.commands.evaluate",
    ),
    "aggregate": Command(
        "tidy the run dirs of a results dir into summary.csv", "ganstudy.commands.aggregate"
    ),
    "report": Command(
        "render the self-contained HTML comparison report of a results dir",
        "ganstudy.commands.report",
    ),
    "track": Command(
        "MLflow from the run directories: `track sync` backfills a store",
        "ganstudy.commands.track",
    ),
    "study": Command(
        "study-level steps of the workflow: design, run configs, tracking store, cost",
        "ganstudy.commands.study",
    ),
    "gpu-run": Command(
        "run a command on a free GPU slot (sets CUDA_VISIBLE_DEVICES)", "ganstudy.commands.gpu"
    ),
}


def _chosen(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is one), if any."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; only the chosen command's options are added
    (``argv=None``: every command's, for documentation and tests)."""
    from ganstudy import __version__

    parser = argparse.ArgumentParser(
        prog="ganstudy",
        description="LSGAN vs standard GAN: train, evaluate and report a reproducible study.",
    )
    parser.add_argument("--version", action="version", version=f"ganstudy {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        if argv is None or name == chosen:
            importlib.import_module(command.module).configure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"ganstudy: {err.label}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        print(f"ganstudy: storage error: {storage_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``ganstudy gpu-run``: run a command on a free GPU slot of this machine."""

from __future__ import annotations

import argparse

from ganstudy.study import gpu_slots


def _cli(args) -> int:
    return gpu_slots.run(args)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Claim a free slot (GPU x jobs_per_gpu) under file locks, expose only that GPU to the "
        "command and run it in place of this process; the slot is freed when the command exits. "
        "Without GPUs the command runs on the CPU."
    )
    gpu_slots.add_arguments(parser)
    parser.set_defaults(func=_cli)

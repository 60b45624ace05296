"""GPU slots: every job sees exactly one GPU, and at most ``jobs_per_gpu`` jobs share a GPU.

A slot is a GPU id and an index below ``jobs_per_gpu``, with a lock file
``<lock_dir>/<host>-<scope>/gpu<id>-slot<j>.lock``. A job claims the first free slot with an
exclusive, non-blocking ``fcntl.flock``, trying slot 0 of every GPU before slot 1 of any, so jobs
spread over the GPUs before they double up; while every slot is taken it waits. The lock belongs
to the open file, which the job's command inherits when it replaces the launcher (``exec``): the
slot is held exactly as long as the command runs and is freed by the kernel however the command
ends, ``kill -9`` included.

``scope`` is ``$SLURM_JOB_ID`` inside a SLURM job, else ``local``: jobs of one allocation share
its GPUs, while jobs that SLURM placed separately never wait for each other.

Light imports only, so ``ganstudy gpu-run -- CMD`` (what the workflow's GPU rules call) and
``python -m ganstudy.study.gpu_slots -- CMD`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ganstudy.errors import SlotError

GPUS_ENV = "GANSTUDY_GPUS"
JOBS_PER_GPU_ENV = "GANSTUDY_JOBS_PER_GPU"
LOCK_DIR_ENV = "GANSTUDY_GPU_LOCK_DIR"
SLOT_ENV = "GANSTUDY_GPU_SLOT"


def detected_gpu_count() -> int:
    """GPUs on this machine: ``nvidia-smi -L`` lines, 0 when there is no driver."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _count(value, where: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise SlotError(f"{where}: {value!r} is not allowed; allowed: a GPU count >= 0") from None
    if count < 0:
        raise SlotError(f"{where}: {value!r} is not allowed; allowed: a GPU count >= 0")
    return count


def visible_gpus(count=None, environ=None) -> list[str]:
    """The GPU ids jobs may use, as CUDA_VISIBLE_DEVICES entries.

    ``count`` (an int, or None/"auto" to look it up; ``$GANSTUDY_GPUS`` stands in for it, e.g. to
    simulate GPUs) takes the first ``count`` ids of ``$CUDA_VISIBLE_DEVICES`` when that is set,
    else ids 0..count-1. Without a count: the ids of ``$CUDA_VISIBLE_DEVICES`` (empty: none),
    else every GPU ``nvidia-smi`` lists.
    """
    environ = os.environ if environ is None else environ
    where = "GPU count"
    if count is None or str(count) == "auto":
        count, where = environ.get(GPUS_ENV) or None, f"${GPUS_ENV}"
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    ids = None if visible is None else [g.strip() for g in visible.split(",") if g.strip()]
    if count is None:
        return ids if ids is not None else [str(i) for i in range(detected_gpu_count())]
    count = _count(count, where)
    if ids is None:
        return [str(i) for i in range(count)]
    if count > len(ids):
        raise SlotError(
            f"{where}: {count} GPUs asked, but CUDA_VISIBLE_DEVICES={visible!r} shows "
            f"{len(ids)}; allowed: at most {len(ids)}"
        )
    return ids[:count]


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"ganstudy-gpu-slots-{os.getuid()}"


def lock_scope(environ=None) -> str:
    environ = os.environ if environ is None else environ
    return f"{socket.gethostname()}-{environ.get('SLURM_JOB_ID') or 'local'}"


@dataclass
class Slot:
    gpu: str
    index: int
    fd: int
    path: Path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def try_claim(lock_dir: Path, gpus: list[str], jobs_per_gpu: int) -> Slot | None:
    """The first free slot, locked, or None when every slot is taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(jobs_per_gpu):
        for gpu in gpus:
            path = lock_dir / f"gpu{gpu}-slot{index}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # Who holds it, for a person looking at the lock directory.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return Slot(gpu, index, fd, path)
    return None


def claim(
    lock_dir: str | Path,
    gpus: list[str],
    jobs_per_gpu: int,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
) -> Slot:
    """Claim a free slot, waiting while all are taken (TimeoutError after ``timeout_s``)."""
    if jobs_per_gpu < 1:
        raise SlotError(f"jobs_per_gpu: {jobs_per_gpu!r} is not allowed; allowed: an integer >= 1")
    if not gpus:
        raise SlotError("no GPU to claim a slot on")
    lock_dir = Path(lock_dir)
    start = time.monotonic()
    while True:
        slot = try_claim(lock_dir, gpus, jobs_per_gpu)
        if slot is not None:
            return slot
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU slot in {lock_dir} after {timeout_s} s")
        time.sleep(poll_s)


def run_on_slot(
    command: list[str],
    gpus: list[str],
    jobs_per_gpu: int = 1,
    lock_dir: str | Path | None = None,
    environ=None,
) -> None:
    """Replace this process by ``command`` seeing one claimed GPU (or none, on the CPU)."""
    env = dict(os.environ if environ is None else environ)
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env[SLOT_ENV] = "cpu"
        print("gpu-run: no GPU; running on the CPU", file=sys.stderr, flush=True)
        os.execvpe(command[0], command, env)
    base = Path(lock_dir) if lock_dir else default_lock_dir()
    slot = claim(base / lock_scope(env), gpus, jobs_per_gpu)
    # The command inherits the locked descriptor: the slot lives exactly as long as it does.
    os.set_inheritable(slot.fd, True)
    env["CUDA_VISIBLE_DEVICES"] = slot.gpu
    env[SLOT_ENV] = f"{slot.gpu}:{slot.index}"
    print(
        f"gpu-run: GPU {slot.gpu} (slot {slot.index} of {jobs_per_gpu}) for {' '.join(command)}",
        file=sys.stderr,
        flush=True,
    )
    os.execvpe(command[0], command, env)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", help=f"GPU count (default: ${GPUS_ENV}, else detected)")
    parser.add_argument(
        "--jobs-per-gpu",
        type=int,
        default=int(os.environ.get(JOBS_PER_GPU_ENV) or 1),
        help=f"jobs sharing one GPU (default: ${JOBS_PER_GPU_ENV}, else 1)",
    )
    parser.add_argument(
        "--lock-dir",
        default=os.environ.get(LOCK_DIR_ENV) or None,
        help=f"slot lock directory (default: ${LOCK_DIR_ENV}, else in the temp directory)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def run(args) -> int:
    """Run ``args.command`` on a slot; returns only on bad settings (the command replaces us)."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SlotError("give the command to run after '--'")
    run_on_slot(command, visible_gpus(args.gpus), args.jobs_per_gpu, args.lock_dir)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ganstudy.study.gpu_slots",
        description="Run a command on a free GPU slot (the same as `ganstudy gpu-run`).",
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except SlotError as err:
        print(f"gpu-run: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

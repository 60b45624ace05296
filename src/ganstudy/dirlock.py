"""One writer per directory: an advisory lock a process holds while it writes a directory.

The lock is flock(2) on a lock file inside the directory: the operating system releases it when
its holder exits or dies, so a killed writer never leaves a stale lock. The file records the
holder (purpose, PID, host, since) for the refusal a second writer gets. Where flock fails
outright (ENOLCK, EOPNOTSUPP, ENOSYS, EINVAL: some NFS set-ups, Lustre mounted with
``noflock``), or where it is shared only within one host (Lustre with ``localflock``: set
``GANSTUDY_RUN_LOCK=file``), the lock is the lock file itself, created exclusively (O_EXCL) and
removed on release; one left by a dead process of this host is taken over, one of another host
cannot be checked from here and is removed by hand, as the refusal says.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ganstudy.errors import ConfigError

# GANSTUDY_RUN_LOCK chooses how: "flock" (the default: released by the OS when the holder dies)
# or "file" (an exclusively created file, for file systems that do not share flock locks
# between hosts, e.g. Lustre mounted with localflock).
LOCK_KINDS = ("flock", "file")
# flock(2) fails with these where the file system does not support it (some NFS set-ups,
# Lustre mounted with noflock): the exclusive-file lock is used instead.
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


class Busy(ConfigError):
    """Another process is writing the directory."""

    label = "run directory in use"


def _holder_record(purpose: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "purpose": purpose,
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _describe_holder(path: Path) -> str:
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        return f"{held['purpose']} by PID {held['pid']} on {held['host']} since {held['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its record is not written yet)"


def _lock_kind() -> str:
    kind = os.environ.get("GANSTUDY_RUN_LOCK", "flock") or "flock"
    if kind not in LOCK_KINDS:
        raise ConfigError(
            f"GANSTUDY_RUN_LOCK={kind!r} is not allowed; allowed: {', '.join(LOCK_KINDS)}"
        )
    return kind


class _HeldLock:
    """One directory's writer lock, held until :meth:`release`."""

    def __init__(self, run_dir: Path, name: str, purpose: str, kind: str):
        self.path = run_dir / name
        self.kind = kind
        self.handle: IO[str] | None = None
        if kind == "flock":
            try:
                self._flock(purpose)
                return
            except OSError as err:
                if err.errno not in _NO_FLOCK:
                    raise
                self.kind = "file"
        self._exclusive_file(purpose)

    def _refuse(self, run_dir: Path) -> Busy:
        return Busy(
            f"{run_dir} is being written ({_describe_holder(self.path)}); a run directory "
            "has one writer at a time: wait for it, or choose another --out"
        )

    def _flock(self, purpose: str) -> None:
        existed = self.path.exists()
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held past this call
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.close()
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self._refuse(self.path.parent) from None
            if not existed:  # the exclusive-file lock that follows creates it
                self.path.unlink(missing_ok=True)
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder_record(purpose)) + "\n")
        handle.flush()
        self.handle = handle

    def _exclusive_file(self, purpose: str) -> None:
        record = json.dumps(_holder_record(purpose)) + "\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale():
                    raise self._refuse(self.path.parent) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(record)
            return
        raise self._refuse(self.path.parent)

    def _stale(self) -> bool:
        """An exclusive-file lock left by a process of this host that no longer runs (a lock
        of another host cannot be checked from here: it is removed by hand)."""
        try:
            held = json.loads(self.path.read_text(encoding="utf-8"))
            if held["host"] != socket.gethostname():
                return False
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return False

    def release(self) -> None:
        if self.handle is not None:
            # The file stays (removing it would let a third process lock a file no one else
            # sees); its record is only read while it is locked.
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        elif self.kind == "file":
            self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def holding(
    run_dirs: list[str | Path], name: str, purpose: str, create: bool = True
) -> Iterator[None]:
    """Hold the lock file ``name`` of every directory of ``run_dirs`` (created where missing,
    or skipped with ``create=False``, for the caller to refuse) while the block writes into
    them; ``purpose`` ("training", "evaluation") names the holder.

    A directory another process holds is refused at once with :class:`Busy`, naming it
    and the holder's PID and host, and nothing is left behind: directories this call created
    are removed again. The default lock is flock(2): the OS releases it when its holder dies,
    so a killed run never leaves a stale lock."""
    kind = _lock_kind()
    wanted = sorted({Path(d).absolute() for d in run_dirs})
    created: list[Path] = []
    held: list[_HeldLock] = []
    try:
        # Directories that exist first: a refusal there creates nothing.
        for run_dir in sorted(wanted, key=lambda d: not d.is_dir()):
            if not run_dir.is_dir():
                if not create:
                    continue
                missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
                run_dir.mkdir(parents=True, exist_ok=True)
                created.extend(reversed(missing))
            held.append(_HeldLock(run_dir, name, purpose, kind))
    except BaseException:
        for lock in held:
            lock.release()
        for path in reversed(created):
            (path / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    try:
        yield
    finally:
        for lock in held:
            lock.release()

"""Atomic writes: a file is written under a temporary name next to its target, then renamed.

A reader sees the old file or the complete new one, never a half-written one, and a failure
(or a kill) leaves the previous result in place. A write that fails for lack of space or
permission is a :class:`~ganstudy.errors.StorageError` naming the path, the error, the size the
write needed and the space left; no temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganstudy.errors import StorageError

# Errors of the filesystem a user can fix (space, quota, permissions, a read-only mount).
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
)


def free_bytes(path: str | Path) -> int | None:
    """Free space of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def storage_message(err: OSError, path: str | Path | None = None, needed: int | None = None) -> str:
    """One line for a failed write: the path, the error, the size needed and the space left."""
    path = Path(path or err.filename or ".")
    parts = [f"cannot write {path}: {err.strerror or err}"]
    if needed is not None:
        parts.append(f"the write needs {_mb(needed)}")
    free = free_bytes(path.parent)
    if free is not None:
        parts.append(f"{_mb(free)} free on the filesystem of {path.parent}")
    return "; ".join(parts)


@contextlib.contextmanager
def replacing(path: str | Path, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    ``needed`` (bytes) is quoted when the write fails for lack of space or permission.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in STORAGE_ERRNOS:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # the space it held is free again
            raise StorageError(storage_message(err, path, needed)) from err
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path, len(data)) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def torch_bytes(obj: Any) -> bytes:
    """``obj`` serialised by ``torch.save``, in memory."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically. torch reports a full disk as a RuntimeError
    ("unexpected pos"); it is then named as a StorageError when the space left is below the
    size of the serialised object."""
    import torch

    path = Path(path)
    with replacing(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:
            needed = len(torch_bytes(obj))
            tmp.unlink(missing_ok=True)
            free = free_bytes(path.parent)
            if free is not None and free < needed:
                full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                raise StorageError(storage_message(full, path, needed)) from err
            raise

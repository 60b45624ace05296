"""The C heap of a ganstudy process: freed memory kept for the next step instead of handed back.

PyTorch's CPU tensors come from the C library's ``malloc``, which has no cache of its own for
large blocks. With glibc's defaults a block over the mmap threshold is mapped for each tensor
and unmapped when it is freed, and the top of the heap is trimmed back to the kernel, so every
training step faults its activations' and gradients' pages in again. Here blocks up to
``MMAP_MAX_BYTES`` (glibc's largest threshold on 64-bit, ``M_MMAP_THRESHOLD``) come from the heap,
up to ``KEEP_BYTES`` of free heap is kept (``M_TRIM_THRESHOLD``) and the heap grows by
``PAD_BYTES`` at a time (``M_TOP_PAD``). Measured on a 2-core VM (tests/train/test_ensemble.py's
dcgan28 solo run and 2-member ensemble, 200 steps each, one thread): 87 s user and 31 s system
time, 119 s wall, with glibc's defaults; 81 s, 12 s and 93 s with these. Tensors larger than
32 MiB are still mapped each time.

Numbers are unchanged (only where the bytes live differs); the process's resident memory stays
near its peak instead of shrinking between steps. Where the C library has no ``mallopt`` (musl,
macOS) nothing changes. A user's own settings win: with any of ``USER_SETTINGS`` in the
environment, nothing is set here.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # the parameter numbers of glibc's malloc.h
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_MAX_BYTES = 32 << 20
KEEP_BYTES = 1 << 30
PAD_BYTES = 1 << 28
SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_MAX_BYTES),
    (M_TRIM_THRESHOLD, KEEP_BYTES),
    (M_TOP_PAD, PAD_BYTES),
)
USER_SETTINGS = (
    "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"
)  # fmt: skip


def keep_freed_memory() -> bool:
    """Set this process's heap as the module's docstring says; True where it was set, False
    where the C library has no ``mallopt`` or the environment already says how."""
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = [mallopt(parameter, value) for parameter, value in SETTINGS]  # every one is tried
    return all(applied)

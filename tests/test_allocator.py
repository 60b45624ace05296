"""The heap settings of a ganstudy process (ganstudy.allocator): freed blocks are reused."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from ganstudy.allocator import USER_SETTINGS

# Allocates and frees 20 MB blocks as a training step's tensors do; prints whether the settings
# were applied and the minor page faults of the loop (each fresh mapping faults its pages in).
LOOP = """
import json, resource, sys
from ganstudy.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    blocks = [bytearray(20_000_000) for _ in range(3)]
    del blocks
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def run_loop(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", LOOP, mode], env={**clean, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallopt"), reason="the C library has no mallopt (not glibc)"
)
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default = run_loop("default")
    kept = run_loop("keep")
    assert kept["applied"] and not default["applied"]
    # 40 x 3 blocks of 20 MB: ~585,000 pages faulted in with the defaults, the first three
    # blocks' worth (~15,000) once they are kept.
    assert default["faults"] > 200_000, default
    assert kept["faults"] < default["faults"] / 10, (kept, default)


def test_a_users_malloc_settings_win():
    assert run_loop("keep", MALLOC_TRIM_THRESHOLD_="131072")["applied"] is False
    assert run_loop("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")["applied"] is False

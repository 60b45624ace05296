"""What produced a result: library versions, hardware and the package's git revision."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from pathlib import Path

import torch

import ganstudy


@functools.cache
def git_revision() -> dict[str, str | bool | None]:
    """Revision of the checkout the package runs from (None outside a git checkout)."""
    here = Path(ganstudy.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    dirty = None
    if revision is not None:
        status = git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"git_revision": revision, "git_dirty": dirty}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | bool | None]:
    """Versions of everything a number depends on."""
    info: dict[str, str | bool | None] = {
        "ganstudy": ganstudy.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version())
        if torch.backends.cudnn.is_available()
        else None,
        "platform": platform.platform(),
    }
    for module in ("torchvision", "numpy", "mlflow", "pytorch_fid"):
        try:
            from importlib.metadata import version

            info[module] = version(module.replace("_", "-"))
        except Exception:  # noqa: BLE001 - a missing optional package is simply not listed
            info[module] = None
    info.update(git_revision())
    return info

"""The numerical settings of a training process, set explicitly and recorded in metrics.json.

* ``train.deterministic``: deterministic algorithms everywhere (``torch.use_deterministic_algorithms``,
  cuDNN's deterministic kernels, cuBLAS's fixed workspace ``CUBLAS_WORKSPACE_CONFIG=:4096:8``);
  an operation without a deterministic kernel then raises instead of varying silently. Off:
  cuDNN autotuning picks the fastest kernels on CUDA (``cudnn.benchmark``), run to run
  differences of rounding allowed.
* ``train.tf32``: TensorFloat-32 for matrix products and convolutions on Ampere and newer GPUs
  (10-bit mantissa inputs, fp32 accumulation). PyTorch's own defaults differ between matmul
  (off) and cuDNN (on); both follow this key. It has no effect on the CPU.
* ``train.compile``: the networks' forward and backward compiled by ``torch.compile``
  (``default``) or with CUDA graphs as well (``reduce-overhead``, on CUDA; on the CPU it is
  ``default``); or the whole training step, both networks' forward, backward and optimizer
  updates, captured once as one CUDA graph and replayed (``cudagraph``, see
  :mod:`ganstudy.train.graph`; on a device without CUDA: eager, with a warning). Inductor generates C++ on the CPU and needs a C++ compiler (``$CXX`` or ``g++``);
  without one the run trains eagerly and says so.

FID features are always computed in full fp32 (:func:`full_fp32`), whatever ``train.tf32`` says,
so that an FID measured on a GPU can be compared with one from the CPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator

COMPILE_MODES = ("none", "default", "reduce-overhead", "cudagraph")
CUBLAS_WORKSPACE = ":4096:8"


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name, key: str = "--device"):
    """The torch device ``name`` names (auto: cuda where a CUDA device is, else cpu); a name
    that is not a device, or cuda where none is, is a ConfigError naming ``key``."""
    import torch

    from ganstudy.errors import ConfigError

    text = str(name)
    if text != "auto" and text.split(":")[0] not in DEVICES[1:]:
        raise ConfigError(f"{key} {text!r} is not allowed; allowed: {', '.join(DEVICES)}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key} {text!r}: no CUDA device is available here; allowed: auto, cpu")
    return torch.device(text)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def apply(train, device) -> dict:
    """Set the process-wide flags for ``train`` (a TrainConfig) on ``device``; returns the record
    written to metrics.json."""
    import torch

    deterministic = bool(train.deterministic)
    if deterministic:
        # cuBLAS reads it when its first handle is created; a value set by the user is kept.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cuda.matmul.allow_tf32 = bool(train.tf32)
    torch.backends.cudnn.allow_tf32 = bool(train.tf32)
    return {
        "deterministic": deterministic,
        "tf32": bool(train.tf32),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "compile": compile_mode(train.compile, device),
    }


def compile_mode(requested: str, device) -> str:
    """The compile mode a run gets: ``requested``, CPU's ``default`` for ``reduce-overhead``
    (CUDA graphs need CUDA), ``none`` where the CPU has no C++ compiler (with a warning)."""
    if requested == "none":
        return "none"
    if requested == "cudagraph" and device.type != "cuda":
        print(
            f"warning: train.compile='cudagraph' needs a CUDA device, and this run trains on "
            f"{device.type}; training eagerly (recorded as compile 'none' in metrics.json)",
            file=sys.stderr,
            flush=True,
        )
        return "none"
    if device.type == "cpu":
        if cxx_compiler() is None:
            print(
                f"warning: train.compile={requested!r} needs a C++ compiler on the CPU (set $CXX "
                "or install g++, e.g. apt-get install g++); training without compiling",
                file=sys.stderr,
                flush=True,
            )
            return "none"
        return "default"
    return requested


def compiled(module, mode: str):
    """``module`` compiled for ``mode`` (the module itself for ``none``); parameters and buffers
    stay the module's, so checkpoints and sampling use the eager module unchanged."""
    if mode in ("none", "cudagraph"):  # the trainer captures its whole step itself
        return module
    import torch

    return torch.compile(module, mode=mode, dynamic=False)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for matrix products and convolutions inside the block, restored after."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

"""Checkpoints: one file per member, written atomically, read with ``weights_only=True``.

Every tensor of a model or of its optimizer's state has a leading member dimension, so member k's state
is the slice ``[k:k+1]`` of each tensor: a member checkpoint is exactly the checkpoint of a solo
run, and an ensemble is resumed by concatenating its members' checkpoints.

Each checkpoint ``X.pt`` has its sha256 recorded beside it in ``X.pt.sha256`` (written first), so
a truncated or altered file is recognised before it is used; :func:`load` raises
:class:`~ganstudy.errors.CheckpointError` for any file that cannot be used, and
:func:`move_aside` keeps such a file as ``X.pt.corrupt`` for inspection. A finished run keeps
its final.pt and, by :func:`finish`, no periodic checkpoint that takes space of its own.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from ganstudy import atomic, store
from ganstudy.errors import CheckpointError

FORMAT = "ganstudy-ckpt-1"
CHECKSUM_SUFFIX = ".sha256"
CORRUPT_SUFFIX = ".corrupt"


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def atomic_save(obj: Any, path: Path) -> None:
    """Write the checkpoint and, before it, its checksum record."""
    data = atomic.torch_bytes(obj)
    digest = hashlib.sha256(data).hexdigest()
    record = checksum_path(path)
    previous = record.read_text() if record.is_file() else None
    atomic.write_text(record, f"{digest}  {path.name}\n")
    try:
        atomic.write_bytes(path, data)
    except BaseException:
        # The record must keep describing what is on disk: the old file, or none.
        if path.exists() and previous is not None:
            atomic.write_text(record, previous)
        else:
            record.unlink(missing_ok=True)
        raise


def save_same_as(source: Path, path: Path) -> None:
    """``path`` as the checkpoint ``source`` holds, with its own checksum record: a hard link
    (no second serialisation or write), or a copy where the filesystem has no links. Files
    are only ever replaced by renaming, never written in place, so the two names never go
    apart by a later write of either."""
    import shutil

    digest = recorded_sha256(source)
    if digest is None:
        raise CheckpointError(f"{source} has no checksum record to give {path.name}")
    atomic.write_text(checksum_path(path), f"{digest}  {path.name}\n")
    with atomic.replacing(path, source.stat().st_size) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded when ``path`` was written (None: no record, e.g. an older run)."""
    record = checksum_path(Path(path))
    if not record.is_file():
        return None
    digest, _, name = record.read_text().strip().partition("  ")
    return digest if name == Path(path).name else None


def load(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint, verified against its recorded checksum; CheckpointError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err.strerror or err}", path) from err
    expected = recorded_sha256(path)
    if expected is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise CheckpointError(
                f"{path} is corrupt: its sha256 {actual[:16]}... differs from the "
                f"{expected[:16]}... recorded when it was written ({len(data):,} bytes now)",
                path,
            )
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unreadable file means the same to a user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason})", path) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganstudy checkpoint (format {FORMAT})", path)
    return ckpt


def move_aside(path: Path) -> Path:
    """Rename an unusable checkpoint (and its checksum record) to ``*.corrupt``; returns the new
    name. Nothing is deleted: the file stays for inspection."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")
    path.replace(target)
    record = checksum_path(path)
    if record.exists():
        record.replace(target.with_name(target.name + CHECKSUM_SUFFIX))
    return target


def member_module_state(module: torch.nn.Module, k: int) -> dict[str, torch.Tensor]:
    return {name: t[k : k + 1].detach().clone().cpu() for name, t in module.state_dict().items()}


def stack_module_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.cat([s[name] for s in states]) for name in states[0]}


def member_optimizer_state(optimizer: torch.optim.Optimizer, k: int) -> dict:
    """The optimizer state of member k: per-parameter tensors (Adam's moments, RMSProp's square
    average and momentum buffer) sliced, the shared step kept."""
    full = optimizer.state_dict()
    state = {}
    for idx, entry in full["state"].items():
        state[idx] = {
            key: (value.clone().cpu() if key == "step" else value[k : k + 1].clone().cpu())
            for key, value in entry.items()
        }
    return {"state": state, "param_groups": full["param_groups"]}


def stack_optimizer_states(states: list[dict]) -> dict:
    first = states[0]
    stacked = {}
    for idx, entry in first["state"].items():
        steps = {float(s["state"][idx]["step"]) for s in states}
        if len(steps) != 1:
            raise ValueError(f"members were checkpointed at different optimizer steps: {steps}")
        stacked[idx] = {
            key: (value if key == "step" else torch.cat([s["state"][idx][key] for s in states]))
            for key, value in entry.items()
        }
    return {"state": stacked, "param_groups": first["param_groups"]}


def member_checkpoint(
    k: int, modules: dict[str, torch.nn.Module], optimizers: dict[str, Any], **fields: Any
) -> dict:
    """Member k's checkpoint: ``fields`` (config, seed, step, ...) with the member's slice of
    every module and optimizer state, under their names."""
    state = {"format": FORMAT, **fields}
    state.update({name: member_module_state(m, k) for name, m in modules.items()})
    state.update({name: member_optimizer_state(o, k) for name, o in optimizers.items()})
    return state


def load_members(
    paths: list[Path], modules: dict[str, torch.nn.Module], optimizers: dict[str, Any]
) -> list[dict]:
    """Load the member checkpoints ``paths`` into an ensemble's modules and optimizers (by name);
    returns the checkpoints for their other fields."""
    members = [load(p) for p in paths]
    for name, module in modules.items():
        module.load_state_dict(stack_module_states([m[name] for m in members]))
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(stack_optimizer_states([m[name] for m in members]))
    return members


def common_steps(run_dirs: list[Path]) -> list[int]:
    """The periodic checkpoint steps every one of ``run_dirs`` holds, ascending."""
    common = set(available_steps(run_dirs[0]))
    for run_dir in run_dirs[1:]:
        common &= set(available_steps(run_dir))
    return sorted(common)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return store.RunDir(run_dir).checkpoint(step)


def available_steps(run_dir: Path) -> list[int]:
    folder = store.RunDir(run_dir).checkpoints
    if not folder.is_dir():
        return []
    steps = (store.step_of(p.name, store.CHECKPOINT_SUFFIX) for p in folder.iterdir())
    return sorted(step for step in steps if step is not None)


def _remove(run_dir: Path, step: int) -> None:
    path = checkpoint_path(run_dir, step)
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def prune(run_dir: Path, keep: int = 2) -> None:
    """Keep the newest ``keep`` periodic checkpoints: two, so that a kill during a write of
    one member's file still leaves a step that every member has."""
    for step in available_steps(run_dir)[:-keep]:
        _remove(run_dir, step)


def make_durable(path: Path) -> None:
    """CheckpointError unless ``path`` reads back with the sha256 recorded when it was written;
    then its data and its name are flushed to the disk (fsync of the file and its folder), so
    that a crash cannot take it back after the files that could rebuild it are gone."""
    data = path.read_bytes()
    expected = recorded_sha256(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointError(
            f"{path} does not read back as it was written (sha256 {actual[:16]}..., recorded "
            f"{(expected or 'none')[:16]}...); the run's periodic checkpoints are kept",
            path,
        )
    for target in (path, path.parent):
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as err:
            # Some filesystems cannot sync a folder; the file itself must be synced.
            if target == path or err.errno not in (errno.EINVAL, errno.ENOTSUP):
                raise
        finally:
            os.close(fd)


def finish(run_dir: Path) -> None:
    """The periodic checkpoints of a finished run whose ``final.pt`` is written, once that is
    verified and on disk: all but the newest, which is final.pt under a second name (a hard
    link, no space of its own) and stays, so that a run whose final.pt was removed (Snakemake
    removes a job's outputs before it runs the job again) resumes at its last step and trains
    nothing. Where the filesystem has no hard links the newest is a copy, and goes too."""
    steps = available_steps(run_dir)
    final = store.RunDir(run_dir).final
    if not steps:
        return
    newest = checkpoint_path(run_dir, steps[-1])
    linked = os.path.samefile(newest, final)
    if linked and len(steps) == 1:
        return
    make_durable(final)
    for step in steps if not linked else steps[:-1]:
        _remove(run_dir, step)

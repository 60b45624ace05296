"""Samples of a generator: noise, sampling mode, sample files, and drawing from a trained run.

Generators are sampled as they were trained, with batch statistics in batch norm (batches of the
run's training batch size), and their running statistics are left untouched. The training
engine, ``ganstudy evaluate`` and ``ganstudy sample`` all draw through this module.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import Tensor

from ganstudy import atomic, store
from ganstudy import checkpoint as ckpt
from ganstudy import config as config_mod
from ganstudy.data import registry, streams
from ganstudy.nets.bodies import build_pair
from ganstudy.nets.layers import BatchNorm


@contextlib.contextmanager
def sampling(generator: torch.nn.Module):
    """Draw from G as it trains (batch statistics) without touching its running statistics."""
    layers = [m for m in generator.modules() if isinstance(m, BatchNorm)]
    for layer in layers:
        layer.update_stats = False
    try:
        with torch.no_grad():
            yield
    finally:
        for layer in layers:
            layer.update_stats = True


# arch.z_dist -> the kind of number drawn ahead for training (ganstudy.data.draws.Part).
NOISE_KINDS = {"normal": "normal", "uniform": "uniform_pm1"}


def draw_noise(out: Tensor, generators: list[torch.Generator], dist: str) -> Tensor:
    """Fill out[k] from member k's generator: N(0, 1) or U(-1, 1) (``NOISE_KINDS``)."""
    for k, gen in enumerate(generators):
        if dist == "normal":
            out[k].normal_(generator=gen)
        else:
            out[k].uniform_(-1.0, 1.0, generator=gen)
    return out


def save_samples(samples: Tensor, spec, path: Path) -> None:
    """A sample grid (images) or a scatter over the true modes (2D), written atomically."""
    save_member_samples([samples], spec, [path])


def save_member_samples(samples: list[Tensor] | Tensor, spec, paths: list[Path]) -> None:
    """:func:`save_samples` of ``samples[i]`` to ``paths[i]`` for every member.

    The 2D scatters share one figure, axes and modes, and only the points change between
    members: drawing the axes' ticks is most of a scatter's cost, and the files are byte for
    byte those of separate figures.
    """
    if spec.kind == "image":
        from torchvision.utils import save_image

        for member, path in zip(samples, paths):
            with atomic.replacing(path) as tmp:
                save_image(member.clamp(-1, 1) * 0.5 + 0.5, tmp, nrow=8, format="png")
        return
    # A bare Figure (no pyplot state) with a fixed layout: a third faster than pyplot with
    # tight_layout, and this runs for every member at every sample step.
    from matplotlib.figure import Figure

    means = streams.mixture_means(spec.name)
    fig = Figure(figsize=(3, 3), dpi=100)
    ax = fig.add_axes((0.16, 0.1, 0.8, 0.86))
    ax.scatter(means[:, 0], means[:, 1], c="red", s=20, marker="x", label="modes")
    points = ax.scatter([], [], s=4, alpha=0.6)
    lim = float(means.abs().max()) * 1.5
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    for member, path in zip(samples, paths):
        points.set_offsets(member.numpy())
        with atomic.replacing(path) as tmp:
            fig.savefig(tmp, format="png")


def checkpoint_file(path: str | Path) -> Path:
    """A run directory's final checkpoint (else its newest periodic one), or the file itself."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / store.FINAL).is_file():
        return path / store.FINAL
    steps = ckpt.available_steps(path)
    if steps:
        return ckpt.checkpoint_path(path, steps[-1])
    raise FileNotFoundError(f"{path} holds no checkpoint (final.pt or checkpoints/step_*.pt)")


def load_generator(path: str | Path, device="cpu"):
    """(generator, config) of a run directory or checkpoint file."""
    state = ckpt.load(checkpoint_file(path))
    cfg = config_mod.from_dict(state["config"])
    generator, _ = build_pair(cfg, 1, registry.dataset(cfg.dataset.name).shape)
    generator.load_state_dict(state["generator"])
    return generator.to(device).train(), cfg


def generate(
    generator, cfg, n: int, seed: int = 0, device="cpu", batch_size: int | None = None
) -> Tensor:
    """n samples in [-1, 1] on the CPU: (n, C, H, W) images or (n, 2) points."""
    batch = batch_size or cfg.train.batch_size
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    with sampling(generator):
        for start in range(0, n, batch):
            z = torch.empty(1, batch, cfg.arch.z_dim, device=device)
            draw_noise(z, [gen], cfg.arch.z_dist)
            out.append(generator(z)[0, : n - start].float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def generate_members(generator, cfg, seeds: list[int], n: int, device) -> Tensor:
    """n samples of every member of an ensemble generator, (K, n, *sample_shape) on the CPU;
    member k's noise comes from a generator seeded with ``seeds[k]``."""
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    batch = cfg.train.batch_size
    out = []
    with sampling(generator):
        for start in range(0, n, batch):
            z = torch.empty(len(seeds), batch, cfg.arch.z_dim, device=device)
            draw_noise(z, gens, cfg.arch.z_dist)
            out.append(generator(z)[:, : n - start].float().cpu())
    return torch.cat(out, dim=1)

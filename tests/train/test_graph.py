"""The whole training step as one CUDA graph (``train.compile: cudagraph``).

On a GPU (marked ``gpu``, skipped without one): graph replay equals the eager step bitwise when
both use the same kernels (the capturable optimizers'); against PyTorch's default eager
optimizers the largest difference is printed; a SIGTERM and resume under the graph is bitwise;
a member that diverges is caught at its step, as eagerly. On the CPU: the key trains eagerly,
says so, and records it.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch
from conftest import env_without_tracking_uri
from helpers import ring_config, stop_and_finish

from ganstudy import checkpoint as ckpt
from ganstudy import config, store
from ganstudy.train import updates
from ganstudy.train.trainer import Trainer

STEPS = 200


def _config(device: str, compile_mode: str, steps: int = STEPS, **train) -> config.RunConfig:
    data = ring_config(steps=steps, log_every=20, checkpoint_every=1000).to_dict()
    data["train"].update(device=device, compile=compile_mode, deterministic=True, **train)
    data["loss"] = {"name": "lsgan"}
    return config.from_dict(data)


def _final(run_dir):
    state = ckpt.load(run_dir / store.FINAL)
    return {part: state[part] for part in ("generator", "discriminator", "opt_g", "opt_d")}


def _tensors(state: dict):
    for part in ("generator", "discriminator"):
        for name, tensor in state[part].items():
            yield (part, name), tensor
    for part in ("opt_g", "opt_d"):
        for idx, entry in state[part]["state"].items():
            for key, tensor in entry.items():
                yield (part, idx, key), tensor


def _log(run_dir) -> list[list[str]]:
    keys = ["step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d", "lr_d"]
    with (run_dir / store.LOG).open() as handle:
        return [[row[k] for k in keys] for row in csv.DictReader(handle)]


def _largest_difference(a: dict, b: dict) -> float:
    other = dict(_tensors(b))
    return max((t.double() - other[key].double()).abs().max().item() for key, t in _tensors(a))


def test_cudagraph_on_the_cpu_trains_eagerly_and_says_so(tmp_path, capfd):
    cfg = _config("cpu", "cudagraph", steps=30)
    metrics = Trainer(cfg, [3], [tmp_path / "graph"], progress=False).run()[0]
    assert "needs a CUDA device" in capfd.readouterr().err
    assert metrics["status"] == "completed"
    assert metrics["numerics"]["compile"] == "none"
    Trainer(_config("cpu", "none", steps=30), [3], [tmp_path / "eager"], progress=False).run()
    a, b = _final(tmp_path / "graph"), _final(tmp_path / "eager")
    assert _largest_difference(a, b) == 0.0


gpu = pytest.mark.gpu


def _eager_capturable(cfg, seeds, dirs) -> Trainer:
    """An eager trainer whose optimizers are the graph's (capturable): the same kernels."""
    trainer = Trainer(cfg, seeds, dirs, progress=False)
    t = cfg.train
    state = trainer.state
    state.opt_g = updates.build_optimizer(state.G.parameters(), t.lr_g, t, capturable=True)
    state.opt_d = updates.build_optimizer(state.D.parameters(), t.lr_d, t, capturable=True)
    return trainer


@gpu
@pytest.mark.parametrize("factor", [{}, {"d_lr_schedule": "gap_aware"}], ids=["plain", "gap"])
def test_graph_replay_equals_the_eager_step(tmp_path, factor):
    seeds = [0, 1, 2, 3]
    graphed = Trainer(
        _config("cuda", "cudagraph", **factor), seeds, [tmp_path / f"g{s}" for s in seeds],
        progress=False,
    )  # fmt: skip
    graphed.run()
    assert graphed.graph is not None and graphed.graph.graph is not None
    _eager_capturable(
        _config("cuda", "none", **factor), seeds, [tmp_path / f"e{s}" for s in seeds]
    ).run()
    Trainer(
        _config("cuda", "none", **factor), seeds, [tmp_path / f"d{s}" for s in seeds],
        progress=False,
    ).run()  # fmt: skip
    for s in seeds:
        a, same_kernels = _final(tmp_path / f"g{s}"), _final(tmp_path / f"e{s}")
        assert _largest_difference(a, same_kernels) == 0.0, s
        default = _largest_difference(a, _final(tmp_path / f"d{s}"))
        print(f"seed {s}: graph vs eager with PyTorch's default optimizer: {default:.3g}")
        assert _log(tmp_path / f"g{s}") == _log(tmp_path / f"e{s}"), s


class _Poisoning(Trainer):
    """Sets member 1's discriminator weights to NaN before step ``at``."""

    at = 50

    def train_step(self, step, frozen, want_stats):
        if step == self.at:
            with torch.no_grad():
                next(self.D.parameters())[1].fill_(math.nan)
        return super().train_step(step, frozen, want_stats)


@gpu
def test_a_member_diverging_under_the_graph_is_caught_at_its_step(tmp_path):
    seeds = [0, 1, 2]
    found = {}
    for mode in ("cudagraph", "none"):
        dirs = [tmp_path / f"{mode}{s}" for s in seeds]
        metrics = _Poisoning(_config("cuda", mode), seeds, dirs, progress=False).run()
        found[mode] = [(m["status"], m["diverged_step"]) for m in metrics]
    assert found["cudagraph"] == found["none"], found
    assert found["cudagraph"][1] == ("diverged", _Poisoning.at + 1)
    assert [status for status, _ in found["cudagraph"]] == ["completed", "diverged", "completed"]


@gpu
def test_a_graphed_run_stopped_by_sigterm_resumes_bitwise(tmp_path):
    cfg = _config("cuda", "cudagraph", steps=600, checkpoint_every=500)
    stopped, straight, step = stop_and_finish(cfg, tmp_path, env_without_tracking_uri())
    assert 0 < step < 600
    assert _largest_difference(_final(stopped), _final(straight)) == 0.0

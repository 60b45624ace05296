"""Training, resuming, FID and GPU slots on a CUDA device (marked ``gpu``: skipped without one).

Tolerances, stated once:
* member vs solo on CUDA, deterministic mode: the losses and discriminator outputs of the first
  3 steps within 1e-5 (as compiled vs eager steps). cuBLAS may pick other kernels for a batched
  product than for a single one, so the CPU's bitwise equality is not promised, and no bound on
  later parameters is: Adam turns rounding differences into updates of the size of the learning
  rate where a gradient is near zero, and GAN training amplifies them. Measured: on an H200,
  members differed from their solo runs by up to 0.084 after 60 steps (a discriminator
  batch-norm running mean); on the CPU, moving every initial generator weight by one ulp gives
  0.0845 at the same parameter after 60 steps (3.5e-4 after one step). The 60-step differences
  are printed beside that one-ulp reference measured on the same device.
* a run stopped by SIGTERM and resumed on CUDA in deterministic mode: bitwise equal to one
  trained straight through (the same kernels, in the same order, on the same device).
* FID of the same images on CUDA and on the CPU: within 1e-3 relative (features in full fp32),
  with the published Inception weights where they are at hand, and always with seeded random
  weights of the same network (the same arithmetic; it keeps the check where the 92 MB weights
  file cannot be brought).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import env_without_tracking_uri
from helpers import ring_config, stop_and_finish

from ganstudy import checkpoint as ckpt
from ganstudy import config, store
from ganstudy.train.trainer import Trainer, train

pytestmark = pytest.mark.gpu

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "fid-inception"
    / "pt_inception-2015-12-05-6726825d.pth"
)


def _cuda_config(steps: int, **train_settings) -> config.RunConfig:
    data = ring_config(steps=steps, log_every=20, checkpoint_every=1000).to_dict()
    data["train"].update(device="cuda", deterministic=True, **train_settings)
    return config.from_dict(data)


def _states(run_dir: Path) -> dict:
    state = ckpt.load(run_dir / store.FINAL)
    return {part: state[part] for part in ("generator", "discriminator")}


def _log(run_dir: Path) -> list[dict]:
    with (run_dir / store.LOG).open() as handle:
        return list(csv.DictReader(handle))


def _largest_difference(a: dict, b: dict) -> tuple[float, tuple]:
    differences = {
        (part, name): (tensor.double() - b[part][name].double()).abs().max().item()
        for part in a
        for name, tensor in a[part].items()
    }
    worst = max(differences, key=differences.get)
    return differences[worst], worst


def test_a_solo_run_and_an_ensemble_train_on_cuda_and_members_follow_solo_runs(tmp_path):
    cfg = _cuda_config(steps=60, log_every=1)
    solo = [train(cfg, [s], [tmp_path / f"solo{s}"], progress=False)[0] for s in (0, 2)]
    members = train(cfg, [0, 1, 2], [tmp_path / f"m{s}" for s in (0, 1, 2)], progress=False)
    for metrics in solo + members:
        seen = {k: metrics.get(k) for k in ("status", "device", "device_name", "numerics")}
        assert metrics["status"] == "completed" and metrics["device"].startswith("cuda"), seen
        assert metrics["numerics"]["deterministic"] is True, seen
        assert metrics["numerics"]["cublas_workspace_config"] == ":4096:8", seen
    for seed in (0, 2):
        solo_log, member_log = _log(tmp_path / f"solo{seed}"), _log(tmp_path / f"m{seed}")
        for a, b in zip(solo_log[:3], member_log[:3]):
            for key in ("loss_d", "loss_g", "d_real", "d_fake"):
                assert abs(float(a[key]) - float(b[key])) <= 1e-5, (seed, a["step"], key, a, b)
        largest, where = _largest_difference(
            _states(tmp_path / f"solo{seed}"), _states(tmp_path / f"m{seed}")
        )
        print(
            f"seed {seed}: member vs solo after 60 steps, largest difference {largest:.3g} at {where}"
        )

    # The reference: the same solo run with every initial generator weight moved by one ulp.
    trainer = Trainer(cfg, [0], [tmp_path / "ulp"], progress=False)
    with torch.no_grad():
        for parameter in trainer.G.parameters():
            parameter.copy_(torch.nextafter(parameter, torch.full_like(parameter, math.inf)))
    trainer.run()
    largest, where = _largest_difference(_states(tmp_path / "solo0"), _states(tmp_path / "ulp"))
    print(f"one ulp in G's initial weights, solo after 60 steps: {largest:.3g} at {where}")


def test_a_run_stopped_on_cuda_resumes_bitwise(tmp_path):
    cfg = _cuda_config(steps=600, checkpoint_every=500)
    stopped, straight, step = stop_and_finish(cfg, tmp_path, env_without_tracking_uri())
    assert 0 < step < 600
    a, b = _states(stopped), _states(straight)
    for part in a:
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)


def _random_fid_weights(path: Path) -> Path:
    """pytorch-fid's FID Inception network with torchvision's seeded random initialisation,
    saved as a weights file (loading the published weights is switched off while it is built)."""
    from unittest import mock

    from pytorch_fid import inception as pt_inception

    torch.manual_seed(0)
    with (
        mock.patch.object(pt_inception, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None),
    ):
        network = pt_inception.fid_inception_v3()
    # Batch-norm statistics of one batch, so that features keep their scale through the layers
    # (with the initial running statistics they shrink to about 1e-9 by the pool3 block).
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    network.train()
    with torch.no_grad():
        network(torch.rand(32, 3, 299, 299) * 2 - 1)
    torch.save(network.state_dict(), path)
    return path


@pytest.mark.parametrize("weights_kind", ["published", "seeded random"])
def test_fid_on_cuda_matches_the_cpu(tmp_path, weights_kind):
    from ganstudy.metrics import fid

    if weights_kind == "published":
        path = os.environ.get("GANSTUDY_FID_WEIGHTS") or str(SHARED_WEIGHTS)
        if not Path(path).is_file():
            pytest.skip(f"no FID Inception weights at {path}")
    else:
        path = _random_fid_weights(tmp_path / "random-inception.pth")
    weights = fid.resolve_weights(path, download=False)
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (200, 3, 32, 32), generator=gen, dtype=torch.uint8)
    fake = (real.float() * 0.8 + 20).round().clamp(0, 255).to(torch.uint8)
    values = {}
    # TF32 on for training must not leak into FID features.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        for device in ("cpu", "cuda"):
            for dims in (64, 2048):
                model = fid.load_inception(dims, weights, device)
                stats = [
                    fid.statistics(fid.activations(x, model, 100, device)) for x in (real, fake)
                ]
                values[device, dims] = fid.frechet_distance(*stats)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print(f"FID ({weights_kind} weights): {values}")
    for dims in (64, 2048):
        cpu, cuda = values["cpu", dims], values["cuda", dims]
        assert cpu > 0
        assert abs(cuda - cpu) <= 1e-3 * cpu, (dims, values)


def test_the_gpu_slot_launcher_sees_every_gpu_of_the_machine():
    from ganstudy.study import gpu_slots

    env = {
        k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GANSTUDY_GPUS")
    }
    assert gpu_slots.detected_gpu_count() == torch.cuda.device_count()
    assert gpu_slots.visible_gpus(None, env) == [str(i) for i in range(torch.cuda.device_count())]
    script = (
        "import os, torch; print(os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count())"
    )
    result = subprocess.run(
        [sys.executable, "-m", "ganstudy.study.gpu_slots", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    gpu, count = result.stdout.split()
    assert gpu in gpu_slots.visible_gpus(None, env) and count == "1"


@pytest.mark.parametrize(
    ("dataset", "arch", "members", "batch_size"),
    [("ring8", "mlp2d", 24, 256), ("fashion_mnist", "dcgan28", 8, 64)],
)
def test_the_memory_estimate_bounds_a_training_job_on_cuda(
    tmp_path, dataset, arch, members, batch_size
):
    """ganstudy.study.memory's estimate of a training job (without the CUDA context, which the
    allocator does not count) is at least the peak memory the job allocates; the ratio is
    printed, the first measurement of the estimate on a GPU."""
    from helpers import write_fake_prepared

    from ganstudy.study import memory

    n_train = 0
    if dataset == "fashion_mnist":
        n_train = 60_000
        write_fake_prepared(tmp_path, dataset, n_train, (1, 28, 28))
    data = {
        "dataset": {"name": dataset, "data_root": str(tmp_path)},
        "arch": {"name": arch},
        "train": {"steps": 100, "batch_size": batch_size, "device": "cuda", "log_every": 50,
                  "checkpoint_every": 100, "sample_every": 100},
        "tracking": {"enabled": False},
    }  # fmt: skip
    cfg = config.from_dict(data)
    estimate = memory.training_memory(cfg.to_dict(), members, n_train or None)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seeds = list(range(members))
    train(cfg, seeds, [tmp_path / f"seed{s}" for s in seeds], progress=False)
    peak = torch.cuda.max_memory_allocated()
    bound = estimate.total - estimate.context
    print(
        f"{dataset}/{arch} K={members} B={batch_size}: peak allocated {peak / 2**20:,.0f} MiB, "
        f"estimate without the context {bound / 2**20:,.0f} MiB ({bound / peak:.2f}x); "
        f"{estimate.describe()}"
    )
    assert peak <= bound

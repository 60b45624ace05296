"""Optimizers and the gap-aware schedule of D's learning rate, against values worked by hand."""

import math

import pytest
import torch

from ganstudy import config
from ganstudy.losses import build_loss, ideal_d_loss
from ganstudy.train import updates
from ganstudy.train.step import apply_update


def run_config(loss: dict, **train) -> config.RunConfig:
    return config.from_dict(
        {
            "dataset": {"name": "ring8"},
            "loss": loss,
            "train": {"steps": 10, "d_lr_schedule": "gap_aware", **train},
            "tracking": {"enabled": False},
        }
    )


def test_gap_aware_factor_by_hand():
    cfg = run_config({"name": "gan"})
    schedule = updates.build_schedule(cfg, 3, "cpu")
    ideal = math.log(4)
    assert schedule.ema.tolist() == pytest.approx([ideal] * 3)  # starts at the ideal loss
    # One update: ema = 0.95 V* + 0.05 loss. Member 0 loses (loss 2 V*: ema = 1.05 V*, gap
    # 0.05 V* = x_max / 2: factor 2^(1/2)); member 1 wins (loss 0: gap x_min / 2: factor
    # 0.1^(1/2)); member 2 is at the ideal (factor 1).
    factor = schedule.factor(torch.tensor([2 * ideal, 0.0, ideal]))
    assert schedule.ema.tolist() == pytest.approx([1.05 * ideal, 0.95 * ideal, ideal], rel=1e-6)
    assert factor.tolist() == pytest.approx([math.sqrt(2), math.sqrt(0.1), 1.0], rel=1e-5)
    # Far from the ideal the factor is capped: f_max above, h_min below.
    for _ in range(200):
        factor = schedule.factor(torch.tensor([10 * ideal, 0.0, ideal]))
    assert factor.tolist() == pytest.approx([2.0, 0.1, 1.0], rel=1e-5)


def test_gap_aware_settings_change_the_factor():
    cfg = run_config(
        {"name": "lsgan"}, gap_ema=0.5, gap_h_min=0.5, gap_f_max=4.0, gap_x_min=0.2, gap_x_max=0.4
    )
    schedule = updates.build_schedule(cfg, 2, "cpu")
    # V* = 0.25; ema = (0.25 + loss) / 2; x_max = 0.1, x_min = 0.05.
    factor = schedule.factor(torch.tensor([0.35, 0.20]))
    # member 0: ema 0.3, gap 0.05 = x_max / 2 -> 4^(1/2) = 2; member 1: ema 0.225, gap 0.025 =
    # x_min / 2 -> 0.5^(1/2)
    assert factor.tolist() == pytest.approx([2.0, math.sqrt(0.5)], rel=1e-5)


EQUILIBRIUM_D = [
    ({"name": "gan"}, 0.0),
    ({"name": "lsgan"}, 0.5),
    ({"name": "lsgan_chi2"}, 0.0),
    ({"name": "lsgan_sigmoid"}, 0.0),
    ({"name": "alpha", "alpha_d": 0.5, "alpha_g": 1.2}, 0.0),
    ({"name": "alpha", "alpha_d": math.inf}, 0.0),
    ({"name": "hinge"}, 0.0),
]


@pytest.mark.parametrize(("loss", "output"), EQUILIBRIUM_D)
def test_a_d_at_the_equilibrium_keeps_its_learning_rate(loss, output):
    # D outputs the equilibrium value on reals and fakes alike: its loss is the ideal one, the
    # moving average stays there and the factor stays 1.
    cfg = run_config(loss)
    d_loss, _, _ = build_loss(cfg.loss)
    same = torch.full((2, 32), output)
    schedule = updates.build_schedule(cfg, 2, "cpu")
    for _ in range(20):
        factor = schedule.factor(d_loss(same, same))
    assert factor.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert schedule.ema.tolist() == pytest.approx([ideal_d_loss(cfg.loss)] * 2, rel=1e-6)


def test_no_schedule_means_a_constant_learning_rate():
    cfg = config.from_dict({"dataset": {"name": "ring8"}, "train": {"steps": 10}})
    assert updates.build_schedule(cfg, 2, "cpu") is None


def _params_and_grads(members: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    param = torch.randn(members, 4, 3, generator=gen).requires_grad_(True)
    grads = [torch.randn(members, 4, 3, generator=gen) for _ in range(4)]
    return param, grads


@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "adam"},
        {"optimizer": "rmsprop", "rmsprop_momentum": 0.9, "rmsprop_alpha": 0.9},
    ],
)
def test_scaling_a_members_step_is_scaling_its_learning_rate(train):
    t = run_config({"name": "gan"}, **train).train
    scale = torch.tensor([0.5, 2.0])
    param, grads = _params_and_grads(2)
    start = param.detach().clone()
    opt = updates.build_optimizer([param], 1e-3, t)
    for g in grads:
        apply_update([param], (g,), opt, None, scale)
    # Each member alone, with its own learning rate 1e-3 x its factor.
    for k, s in enumerate(scale.tolist()):
        alone = start[k : k + 1].clone().requires_grad_(True)
        opt_k = updates.build_optimizer([alone], 1e-3 * s, t)
        for g in grads:
            alone.grad = g[k : k + 1]
            opt_k.step()
        assert torch.allclose(param.detach()[k : k + 1], alone.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("train", "direction"),
    [
        ({"optimizer": "adam"}, "exp_avg"),
        ({"optimizer": "rmsprop", "rmsprop_momentum": 0.9}, "momentum_buffer"),
    ],
)
def test_a_frozen_member_keeps_its_parameters(train, direction):
    t = run_config({"name": "gan"}, **train).train
    param, grads = _params_and_grads(2)
    opt = updates.build_optimizer([param], 1e-2, t)
    for g in grads[:3]:  # build up momentum
        apply_update([param], (g,), opt, None, None, updates.direction_state(t))
    before = param.detach().clone()
    nan_grad = grads[3].clone()
    nan_grad[1] = math.nan
    frozen = torch.tensor([False, True])
    scale = torch.tensor([1.5, math.nan])  # a diverged member's factor may be NaN
    for _ in range(3):
        apply_update([param], (nan_grad,), opt, frozen, scale, updates.direction_state(t))
    assert torch.equal(param.detach()[1], before[1])
    assert torch.count_nonzero(opt.state[param][direction][1]) == 0
    assert torch.isfinite(param).all() and not torch.equal(param.detach()[0], before[0])


def test_adam_runs_foreach_on_the_cpu_and_follows_the_for_loop_implementation_to_rounding():
    # The engine's Adam is PyTorch's foreach implementation on the CPU (its fused kernel rounds
    # a tensor's SIMD part and its tail differently: updates.FUSED_DEVICES); the update is the
    # same maths as the for-loop implementation (PyTorch's CPU default), to float rounding.
    train = run_config({"name": "gan"}, optimizer="adam").train
    torch.manual_seed(0)
    start = [torch.randn(3, 40, 7), torch.randn(3, 7)]
    ours = [torch.nn.Parameter(p.clone()) for p in start]
    theirs = [torch.nn.Parameter(p.clone()) for p in start]
    opt = updates.build_optimizer(ours, 1e-3, train)
    reference = torch.optim.Adam(theirs, lr=1e-3, betas=(train.beta1, train.beta2), foreach=False)
    assert (
        updates.implementation(opt) == "foreach" and updates.implementation(reference) == "for-loop"
    )
    for _ in range(50):
        grads = [torch.randn_like(p) for p in start]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Every step moved the parameters lr-sized steps: the comparison is not of two still tensors.
    assert (ours[0] - start[0]).abs().max() > 1e-2


def test_rmsprop_has_no_fused_kernel_and_says_so():
    train = run_config({"name": "gan"}, optimizer="rmsprop").train
    opt = updates.build_optimizer([torch.nn.Parameter(torch.zeros(2, 3))], 1e-3, train)
    assert updates.implementation(opt) == "for-loop"


def test_a_run_resumed_from_a_for_loop_adam_checkpoint_keeps_it_and_says_so(tmp_path, monkeypatch):
    # Checkpoints of older versions name the for-loop (or fused) Adam in their settings;
    # the resumed run continues with it, and metrics.json records what ran, not the default.
    import time

    from ganstudy.train.trainer import Trainer

    cfg = run_config({"name": "gan"}, steps=4, checkpoint_every=2, d_lr_schedule="none")
    run_dir = tmp_path / "run"

    def for_loop_adam(params, lr, train, capturable=False):
        return torch.optim.Adam(list(params), lr=lr, betas=(train.beta1, train.beta2))

    monkeypatch.setattr(updates, "adam", for_loop_adam)
    older = Trainer(cfg, [0], [run_dir], progress=False)
    run_dir.mkdir(parents=True)
    older.state.t_start = time.monotonic()
    for step in range(2):
        older.train_step(step, torch.zeros(1, dtype=torch.bool), False)
    older.state.step = 2
    older.outputs.save_checkpoint()
    monkeypatch.undo()
    (resumed,) = Trainer(cfg, [0], [run_dir], progress=False).run()
    assert resumed["steps"] == 4 and resumed["status"] == "completed"
    assert resumed["numerics"]["optimizer_implementation"] == "for-loop"
    (fresh,) = Trainer(cfg, [0], [tmp_path / "fresh"], progress=False).run()
    assert fresh["numerics"]["optimizer_implementation"] == "foreach"

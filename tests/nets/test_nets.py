"""Shapes, batch-norm switches, initialisation and member independence of every architecture."""

import itertools

import pytest
import torch

from ganstudy.config import ArchConfig, BatchNormConfig, DataConfig, RunConfig, TrainConfig
from ganstudy.data.registry import DATASETS
from ganstudy.nets import ARCHS
from ganstudy.nets.layers import BatchNorm, Linear
from ganstudy.train.step import init_networks

CASES = [
    ("mlp2d", "ring8"),
    ("mlp2d_lrelu", "ring8"),
    ("dcgan28", "fashion_mnist"),
    ("dcgan28", "stacked_mnist"),
    ("dcgan28_small", "fashion_mnist"),
    ("dcgan28_small", "stacked_mnist"),
    ("mlp_g", "fashion_mnist"),
    ("mlp_g", "cat_faces64"),
    ("dcgan64", "cat_faces64"),
    ("dcgan128", "cat128"),
]


def config(arch, dataset, bn_g=True, bn_d=True, z_dim=16, width=8):
    return RunConfig(
        dataset=DataConfig(name=dataset),
        arch=ArchConfig(name=arch, z_dim=z_dim, width=width, bn=BatchNormConfig(bn_g, bn_d)),
        train=TrainConfig(steps=1),
    )


@pytest.mark.parametrize("arch,dataset", CASES)
@pytest.mark.parametrize("bn_g,bn_d", list(itertools.product([True, False], repeat=2)))
def test_shapes_and_bn_switches(arch, dataset, bn_g, bn_d):
    members, batch = 2, 3
    shape = DATASETS[dataset].shape
    cfg = config(arch, dataset, bn_g, bn_d)
    g, d = init_networks(cfg, [0, 1], torch.device("cpu"))
    z = torch.randn(members, batch, cfg.arch.z_dim)
    x = g(z)
    assert x.shape == (members, batch, *shape)
    if len(shape) == 3:
        assert x.min() >= -1 and x.max() <= 1  # tanh output
    out = d(x)
    assert out.shape == (members, batch)
    assert any(isinstance(m, BatchNorm) for m in g.modules()) == bn_g
    assert any(isinstance(m, BatchNorm) for m in d.modules()) == bn_d
    # The discriminator ends in a linear layer: raw, unbounded outputs.
    assert isinstance(list(d.modules())[-1], Linear)


def test_every_arch_is_covered():
    assert {a for a, _ in CASES} == set(ARCHS)


def test_discriminator_output_is_unbounded():
    cfg = config("dcgan28", "fashion_mnist", bn_d=False)
    _, d = init_networks(cfg, [0], torch.device("cpu"))
    with torch.no_grad():
        d.body[-1].bias.fill_(5.0)
        out = d(torch.zeros(1, 4, 1, 28, 28))
    assert (out > 1).all()


def test_dcgan_initialisation_statistics():
    cfg = config("dcgan28", "fashion_mnist")
    g, _ = init_networks(cfg, [0], torch.device("cpu"))
    weight = g.body[0].weight
    assert abs(weight.mean().item()) < 1e-3
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    bn = next(m for m in g.modules() if isinstance(m, BatchNorm))
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("arch,dataset", [("mlp2d", "ring8"), ("dcgan28", "stacked_mnist")])
def test_ensemble_member_equals_solo_network(arch, dataset):
    cfg = config(arch, dataset)
    solo_g, solo_d = init_networks(cfg, [7], torch.device("cpu"))
    ens_g, ens_d = init_networks(cfg, [3, 7, 11], torch.device("cpu"))
    for solo, ens in ((solo_g, ens_g), (solo_d, ens_d)):
        for (name, a), (_, b) in zip(solo.state_dict().items(), ens.state_dict().items()):
            assert torch.equal(a[0], b[1]), name
    z = torch.randn(1, 5, cfg.arch.z_dim)
    z3 = torch.cat([torch.randn(1, 5, cfg.arch.z_dim), z, torch.randn(1, 5, cfg.arch.z_dim)])
    torch.testing.assert_close(ens_g(z3)[1], solo_g(z)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,dataset", [("mlp2d", "ring8"), ("dcgan28", "fashion_mnist")])
def test_members_never_interact(arch, dataset):
    cfg = config(arch, dataset)
    g, d = init_networks(cfg, [0, 1, 2], torch.device("cpu"))
    z = torch.randn(3, 6, cfg.arch.z_dim)
    base = g(z).detach()
    z2 = z.clone()
    z2[1] = torch.randn(6, cfg.arch.z_dim) * 100
    moved = g(z2).detach()
    assert torch.equal(base[0], moved[0]) and torch.equal(base[2], moved[2])
    assert not torch.equal(base[1], moved[1])
    # Gradients of member 0's output reach only member 0's parameters.
    g.zero_grad()
    d(g(z))[0].sum().backward()
    for p in g.parameters():
        assert p.grad[1:].abs().sum() == 0


def test_the_alpha_gan_ring_nets_match_the_reference_code():
    """Welfert et al.'s experiments/2D.py: G Linear(2, 400) + 3 x Linear(400, 400) + Linear(400,
    2) with ReLU; D Linear(2, 200) + 3 x Linear(200, 200) + Linear(200, 1) with LeakyReLU(0.2);
    no batch norm, PyTorch's default initialisation."""
    cfg = RunConfig(
        dataset=DataConfig(name="ring8"),
        arch=ArchConfig(
            name="mlp2d_lrelu", z_dim=2, init="pytorch", bn=BatchNormConfig(False, False)
        ),
        train=TrainConfig(steps=1),
    )
    g, d = init_networks(cfg, [0], torch.device("cpu"))
    assert sum(p.numel() for p in g.parameters()) == 1200 + 3 * 160_400 + 802
    assert sum(p.numel() for p in d.parameters()) == 600 + 3 * 40_200 + 201
    assert [type(m).__name__ for m in d.body][:2] == ["Linear", "LeakyReLU"]
    assert d.body[1].negative_slope == 0.2
    assert [type(m).__name__ for m in g.body][:2] == ["Linear", "ReLU"]
    hidden = g.body[2]  # Linear(400, 400): U(-1/20, 1/20), weights and biases
    for param in (hidden.weight, hidden.bias):
        assert param.abs().max() <= 1 / 20
        assert param.abs().max() > 0.9 / 20
        assert abs(param.std().item() - (1 / 20) / 3**0.5) < 0.002

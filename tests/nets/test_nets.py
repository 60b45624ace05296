"""Shapes, batch-norm switches, initialisation and member independence of every architecture."""

import itertools

import pytest
import torch
from torch import nn

from ganstudy.config import ArchConfig, BatchNormConfig, DataConfig, RunConfig, TrainConfig
from ganstudy.data.registry import DATASETS
from ganstudy.nets import ARCHS
from ganstudy.nets.bodies import MAXOUT_PIECES
from ganstudy.nets.layers import BatchNorm, ConvTranspose2d, Linear, LinearMaxout, Maxout
from ganstudy.train.step import init_networks

CASES = [
    ("mlp2d", "ring8"),
    ("mlp2d_lrelu", "ring8"),
    ("mlp2d_maxout", "ring8"),
    ("mlp2d_maxout", "grid25"),
    ("dcgan28", "fashion_mnist"),
    ("dcgan28", "stacked_mnist"),
    ("dcgan28_small", "fashion_mnist"),
    ("dcgan28_small", "stacked_mnist"),
    ("dcgan28_tiny", "fashion_mnist"),
    ("dcgan28_tiny", "stacked_mnist"),
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


@pytest.mark.parametrize(
    "arch,dataset",
    [
        ("mlp2d", "ring8"),
        ("dcgan28", "stacked_mnist"),
        ("mlp2d_maxout", "ring8"),
        ("dcgan28_tiny", "stacked_mnist"),
    ],
)
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


@pytest.mark.parametrize(
    "arch,dataset",
    [
        ("mlp2d", "ring8"),
        ("dcgan28", "fashion_mnist"),
        ("mlp2d_maxout", "ring8"),
        ("dcgan28_tiny", "fashion_mnist"),
    ],
)
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


def _n_params(module):
    """Parameters of one member (every parameter has a leading member dimension)."""
    return sum(p[0].numel() for p in module.parameters())


def _members_bn(arch, dataset, bn_g, bn_d, **arch_keys):
    cfg = RunConfig(
        dataset=DataConfig(name=dataset),
        arch=ArchConfig(name=arch, bn=BatchNormConfig(bn_g, bn_d), **arch_keys),
        train=TrainConfig(steps=1),
    )
    return cfg, *init_networks(cfg, [0, 1], torch.device("cpu"))


def test_the_pacgan_2d_nets_match_the_reference_code():
    """fjxmlzn/PacGAN, synthetic_data_experiments/2DRing_GAN&PacGAN/pacgan_task.py (the 2DGrid
    file is the same) and config.py, at packing 1: G is a blocks MLP [2, 400, 400, 400, 400, 2]
    with use_bias=False but for the output layer, each hidden layer followed by
    BatchNormalization (scale and shift) and a Rectifier; D is 3 LinearMaxout(200 units, 5
    pieces, with biases) and a Linear(200, 1), no batch norm, raw logits (softplus losses in
    pacgan/bricks.py)."""
    _, g, d = _members_bn("mlp2d_maxout", "ring8", True, False, z_dim=2)
    g_weights = 2 * 400 + 3 * 400 * 400 + 400 * 2  # hidden layers without bias
    g_bn = 4 * (400 + 400)  # scale and shift
    g_out_bias = 2
    assert _n_params(g) == g_weights + g_bn + g_out_bias == 484_802
    d_maxout = (2 * 1000 + 1000) + 2 * (200 * 1000 + 1000)  # 200 units x 5 pieces, biases
    d_out = 200 + 1
    assert _n_params(d) == d_maxout + d_out == 405_201
    assert not any(isinstance(m, BatchNorm) for m in d.modules())
    assert [type(m).__name__ for m in d.body] == ["LinearMaxout"] * 3 + ["Linear"]
    assert all(m.maxout.pieces == MAXOUT_PIECES == 5 for m in d.body[:3])
    assert [type(m).__name__ for m in g.body][:3] == ["Linear", "BatchNorm", "ReLU"]
    assert g.body[0].bias is None and g.body[-1].bias is not None

    # D by hand from member 1's weights: blocks' Maxout reshapes (B, 1000) to (B, 200, 5) and
    # takes the max over the last axis; the output layer is linear.
    x = torch.randn(2, 7, 2)
    h = x[1]
    for layer in d.body[:3]:
        pre = h @ layer.linear.weight[1] + layer.linear.bias[1]
        h = pre.reshape(7, 200, 5).max(dim=-1).values
    expected = (h @ d.body[3].weight[1] + d.body[3].bias[1]).squeeze(-1)
    torch.testing.assert_close(d(x)[1], expected, rtol=1e-5, atol=1e-6)


def test_the_pacgan_2d_nets_keep_biases_where_no_batch_norm_follows():
    _, g, d = _members_bn("mlp2d_maxout", "grid25", False, True, z_dim=2)
    # G without BN: every Linear has its bias; D with BN: Linear -> BN -> max, bias dropped.
    assert _n_params(g) == (2 * 400 + 400) + 3 * (400 * 400 + 400) + (400 * 2 + 2)
    assert [type(m).__name__ for m in d.body[:3]] == ["Linear", "BatchNorm", "Maxout"]
    assert _n_params(d) == (2 * 1000 + 2000) + 2 * (200 * 1000 + 2000) + 201


def test_maxout_takes_the_max_over_consecutive_pieces():
    x = torch.tensor([[[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]]])  # (K, B, F * P) with F = 2, P = 3
    assert Maxout(3)(x).tolist() == [[[5.0, -1.0]]]
    layer = LinearMaxout(2, 4, 3, 5)
    assert layer.linear.weight.shape == (2, 4, 15) and layer.linear.bias.shape == (2, 15)
    assert layer(torch.randn(2, 6, 4)).shape == (2, 6, 3)


class _ReferenceGenerator(nn.Module):
    """experiments/stacked_mnist.py's Generator, model_width 1."""

    def __init__(self, noise_dim, channels):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(noise_dim, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32), nn.ReLU(True),
            nn.ConvTranspose2d(32, 16, 3, stride=2, bias=False),
            nn.BatchNorm2d(16), nn.ReLU(True),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(8), nn.ReLU(True),
            nn.ConvTranspose2d(8, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.Tanh(),
        )  # fmt: skip

    def forward(self, x):
        return self.main(x.reshape(x.shape[0], x.shape[1], 1, 1))


class _ReferenceDiscriminator(nn.Module):
    """experiments/stacked_mnist.py's Discriminator, model_width 1."""

    def __init__(self, channels):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, 8, 3, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(32, 1, 3, stride=2, bias=False),
        )  # fmt: skip

    def forward(self, x):
        return self.main(x).reshape(-1, 1)


def _copy_member(ours, reference, k):
    """Member k's weights into the reference modules, in module order (D's last Linear(288, 1)
    weight, flattened in (channel, row, column) order, reshapes to the (1, 32, 3, 3) kernel)."""
    mine, theirs = list(ours.parameters()), list(reference.parameters())
    assert len(mine) == len(theirs)
    with torch.no_grad():
        for a, b in zip(mine, theirs):
            b.copy_(a[k].reshape(b.shape))


def test_the_alpha_gan_stacked_mnist_nets_match_the_reference_code():
    """SankarLab/AlphaGan-Papers-Results, experiments/stacked_mnist.py (model_width 1, noise_dim
    100): 3x3 kernels, bias=False everywhere, BN with scale and shift."""
    _, g, d = _members_bn("dcgan28_tiny", "stacked_mnist", True, True, z_dim=100)
    g_conv = (
        100 * 32 * 9 + 32 * 16 * 9 + 16 * 8 * 9 + 8 * 3 * 9
    )  # ConvT weights (c_in, c_out, 3, 3)
    g_bn = 2 * (32 + 16 + 8)
    assert _n_params(g) == g_conv + g_bn == 34_888
    d_conv = 3 * 8 * 9 + 8 * 16 * 9 + 16 * 32 * 9 + 32 * 1 * 9
    d_bn = 2 * (16 + 32)
    assert _n_params(d) == d_conv + d_bn == 6_360
    convt = [m for m in g.modules() if isinstance(m, ConvTranspose2d)]
    assert [(m.padding, m.output_padding) for m in convt] == [(0, 0), (0, 0), (1, 1), (1, 1)]
    assert not isinstance(d.body[1], BatchNorm)  # no BN after D's first convolution

    # Same function as the reference modules given member 1's weights (training mode: BN
    # normalises with the batch statistics in both).
    ref_g, ref_d = _ReferenceGenerator(100, 3), _ReferenceDiscriminator(3)
    _copy_member(g, ref_g, 1)
    _copy_member(d, ref_d, 1)
    z = torch.randn(2, 6, 100)
    x = g(z)
    torch.testing.assert_close(x[1], ref_g(z[1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d(x)[1], ref_d(x[1]).squeeze(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bn_g,bn_d", [(True, True), (False, False)])
@pytest.mark.parametrize("dataset", ["fashion_mnist", "stacked_mnist"])
def test_dcgan28_tiny_has_no_bias_parameters(dataset, bn_g, bn_d):
    _, g, d = _members_bn("dcgan28_tiny", dataset, bn_g, bn_d)
    for net in (g, d):
        for module in net.modules():
            if not isinstance(module, BatchNorm):  # BN's shift is the reference's too
                assert "bias" not in dict(module.named_parameters(recurse=False))
        if not (bn_g or bn_d):
            assert not any(name.endswith("bias") for name, _ in net.named_parameters())


def test_a_layer_without_bias_initialises_with_the_same_fan_in():
    for init in ("dcgan", "pytorch"):
        cfg = RunConfig(
            dataset=DataConfig(name="stacked_mnist"),
            arch=ArchConfig(name="dcgan28_tiny", z_dim=100, init=init),
            train=TrainConfig(steps=1),
        )
        g, d = init_networks(cfg, [0], torch.device("cpu"))
        last = d.body[-1]  # Linear(288, 1) without bias: PyTorch's bound 1/sqrt(32 * 3 * 3)
        assert last.bias is None and last.fan_in() == 288
        if init == "pytorch":
            assert 0.9 / 288**0.5 < last.weight.abs().max() <= 1 / 288**0.5
        first = g.body[1]  # ConvTranspose2d(100, 32, 3): PyTorch's fan-in 32 * 3 * 3
        assert first.bias is None and first.fan_in() == 288
        assert torch.isfinite(g(torch.randn(1, 4, 100))).all()

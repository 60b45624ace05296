"""Every loss against values computed by hand."""

import math

import pytest
import torch

from ganstudy.config import LossConfig
from ganstudy.errors import ConfigError
from ganstudy.loss_functions import gradient_penalty
from ganstudy.losses import LOSSES, build_loss, resolve_coding

D_REAL = torch.tensor([2.0, -1.0])
D_FAKE = torch.tensor([0.5, 3.0])


def softplus(x):
    return math.log1p(math.exp(x))


def test_gan_losses_by_hand():
    d, g, gp = build_loss(LossConfig(name="gan"))
    expected_d = (softplus(-2) + softplus(1)) / 2 + (softplus(0.5) + softplus(3)) / 2
    assert d(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    # non-saturating: -log sigmoid(D(G(z)))
    expected_g = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(-3)))) / 2
    assert g(D_FAKE).item() == pytest.approx(expected_g, rel=1e-6)
    assert not gp


def test_gan_minimax_generator_by_hand():
    _, g, _ = build_loss(LossConfig(name="gan_minimax"))
    expected = (math.log(1 - 1 / (1 + math.exp(-0.5))) + math.log(1 - 1 / (1 + math.exp(-3)))) / 2
    assert g(D_FAKE).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name,abc", [("lsgan", (0.0, 1.0, 1.0)), ("lsgan_chi2", (-1.0, 1.0, 0.0))])
def test_lsgan_codings_by_hand(name, abc):
    a, b, c = abc
    d, g, _ = build_loss(LossConfig(name=name))
    expected_d = (
        0.5 * ((2 - b) ** 2 + (-1 - b) ** 2) / 2 + 0.5 * ((0.5 - a) ** 2 + (3 - a) ** 2) / 2
    )
    expected_g = 0.5 * ((0.5 - c) ** 2 + (3 - c) ** 2) / 2
    assert d(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert g(D_FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_lsgan_works_on_the_raw_unbounded_output():
    # With a sigmoid anywhere, an output of 3 for a fake would cost at most 0.5 * 1^2 = 0.5.
    d, g, _ = build_loss(LossConfig(name="lsgan"))
    assert d(torch.tensor([1.0]), torch.tensor([3.0])).item() == pytest.approx(4.5)
    assert g(torch.tensor([-2.0])).item() == pytest.approx(4.5)


def test_chi2_preset_satisfies_the_pearson_conditions():
    a, b, c = LOSSES["lsgan_chi2"].coding
    assert b - c == 1 and b - a == 2


def test_explicit_coding_overrides_preset():
    assert resolve_coding(LossConfig(name="lsgan", a=-1.0)) == (-1.0, 1.0, 1.0)
    d, _, _ = build_loss(LossConfig(name="lsgan", a=-1.0, b=1.0, c=0.0))
    assert d(torch.tensor([1.0]), torch.tensor([-1.0])).item() == 0.0


def test_coding_refused_for_non_lsgan_losses():
    with pytest.raises(ConfigError, match="loss.a/b/c"):
        resolve_coding(LossConfig(name="gan", a=0.0))


def test_l1_wgan_hinge_by_hand():
    d, g, _ = build_loss(LossConfig(name="l1"))
    assert d(D_REAL, D_FAKE).item() == pytest.approx((1 + 2) / 2 + (0.5 + 3) / 2)
    assert g(D_FAKE).item() == pytest.approx((0.5 + 2) / 2)
    d, g, gp = build_loss(LossConfig(name="wgan_gp"))
    assert d(D_REAL, D_FAKE).item() == pytest.approx(1.75 - 0.5)
    assert g(D_FAKE).item() == pytest.approx(-1.75)
    assert gp
    d, g, _ = build_loss(LossConfig(name="hinge"))
    assert d(D_REAL, D_FAKE).item() == pytest.approx((0 + 2) / 2 + (1.5 + 4) / 2)
    assert g(D_FAKE).item() == pytest.approx(-1.75)


def test_losses_are_per_member():
    d, g, _ = build_loss(LossConfig(name="lsgan"))
    real = torch.stack([D_REAL, D_REAL + 1])
    fake = torch.stack([D_FAKE, D_FAKE - 1])
    out = d(real, fake)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(d(D_REAL, D_FAKE).item())
    assert out[1].item() == pytest.approx(d(D_REAL + 1, D_FAKE - 1).item())


def test_gradient_penalty_by_hand():
    # Two members, batch of two 2-d gradients: norms 5, 1 | 0, 2.
    grad = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])
    assert gradient_penalty(grad, 1).tolist() == pytest.approx([(16 + 0) / 2, (1 + 1) / 2])


def test_gradient_penalty_over_image_dims():
    grad = torch.full((1, 3, 2, 2, 2), 0.5)  # norm of 8 entries of 0.5 = sqrt(2)
    expected = (math.sqrt(2) - 1) ** 2
    assert gradient_penalty(grad, 3).tolist() == pytest.approx([expected])

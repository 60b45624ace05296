"""Every loss against values computed by hand."""

import math

import pytest
import torch

from ganstudy.config import LossConfig
from ganstudy.errors import ConfigError
from ganstudy.loss_functions import gradient_penalty
from ganstudy.losses import LOSSES, build_loss, ideal_d_loss, resolve_alphas, resolve_coding

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


def test_lsgan_sigmoid_by_hand():
    """compare_gan's (v1) LSGAN: d_loss = 0.5 * (mean((s_real - 1)^2) + mean(s_fake^2)),
    g_loss = 0.5 * mean((s_fake - 1)^2), s = sigmoid(logit)."""
    d, g, gp = build_loss(LossConfig(name="lsgan_sigmoid"))
    # sigmoid(2) = 0.8807970780, sigmoid(-1) = 0.2689414214 (reals);
    # sigmoid(0.5) = 0.6224593312, sigmoid(3) = 0.9525741268 (fakes).
    real_terms = (0.8807970780 - 1) ** 2 + (0.2689414214 - 1) ** 2  # 0.0142093 + 0.5344466
    fake_terms = 0.6224593312**2 + 0.9525741268**2  # 0.3874556 + 0.9073975
    expected_d = 0.5 * (real_terms / 2 + fake_terms / 2)
    assert expected_d == pytest.approx(0.4608772670, rel=1e-9)
    assert d(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    expected_g = 0.5 * ((0.6224593312 - 1) ** 2 + (0.9525741268 - 1) ** 2) / 2
    assert expected_g == pytest.approx(0.0361965425, rel=1e-9)
    assert g(D_FAKE).item() == pytest.approx(expected_g, rel=1e-6)
    assert not gp


def test_lsgan_sigmoid_is_bounded_and_takes_no_coding():
    # Unlike the raw-output LSGAN, a certain and wrong D costs at most 1/2 per term...
    d, g, _ = build_loss(LossConfig(name="lsgan_sigmoid"))
    assert d(torch.tensor([-30.0]), torch.tensor([30.0])).item() == pytest.approx(0.5 + 0.5)
    assert g(torch.tensor([-30.0])).item() == pytest.approx(0.5)
    # ...and a certain and right one almost nothing: 1/2 (1 - sigmoid(30))^2 = 1/2 e^-60 to
    # first order, kept rather than rounded to 0 (1 - sigmoid(t) is computed as sigmoid(-t)).
    assert 0 < g(torch.tensor([30.0])).item() == pytest.approx(0.5 * math.exp(-60), rel=1e-6)
    assert LOSSES["lsgan_sigmoid"].role is None
    assert "least squares on sigmoid(D)" in LOSSES["lsgan_sigmoid"].description
    with pytest.raises(ConfigError, match="loss.a/b/c"):
        resolve_coding(LossConfig(name="lsgan_sigmoid", a=0.0))


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


# ---------------------------------------------------------------------------------------------
# (alpha_D, alpha_G)-GAN

# D outputs whose sigmoid is 3/4 and 1/4 for reals; 3/4 and 1/2 for fakes (so the probability
# of the correct class "fake", 1 - sigmoid, is 1/4 and 1/2).
LOG3 = math.log(3.0)
ALPHA_REAL = torch.tensor([LOG3, -LOG3])
ALPHA_FAKE = torch.tensor([LOG3, 0.0])


def alpha_config(alpha_d, alpha_g):
    return LossConfig(name="alpha", alpha_d=alpha_d, alpha_g=alpha_g)


def test_alpha_one_is_the_standard_gan_to_float_precision():
    gen = torch.Generator().manual_seed(0)
    real, fake = 4 * torch.randn(3, 256, generator=gen), 4 * torch.randn(3, 256, generator=gen)
    gan_d, gan_g, _ = build_loss(LossConfig(name="gan"))
    alpha_d, alpha_g, gp = build_loss(LossConfig(name="alpha"))  # defaults (1, 1)
    assert torch.equal(alpha_d(real, fake), gan_d(real, fake))
    assert torch.equal(alpha_g(fake), gan_g(fake))
    assert not gp
    # ...and the general formula tends to it (its first-order term in alpha - 1 is below 1e-4)
    near_d, near_g, _ = build_loss(alpha_config(1 + 1e-6, 1 - 1e-6))
    assert torch.allclose(near_d(real, fake), gan_d(real, fake), rtol=1e-4)
    assert torch.allclose(near_g(fake), gan_g(fake), rtol=1e-4)


@pytest.mark.parametrize(
    ("alpha", "d_expected", "g_expected"),
    [
        # l_alpha(p) = alpha/(alpha-1) (1 - p^((alpha-1)/alpha)); at 1/2: l(p) = 1/p - 1
        (0.5, (1 / 3 + 3) / 2 + (3 + 1) / 2, (1 / 3 + 1) / 2),
        # at 2: l(p) = 2 (1 - sqrt(p))
        (
            2.0,
            (2 * (1 - math.sqrt(0.75)) + 1) / 2 + (1 + 2 * (1 - math.sqrt(0.5))) / 2,
            (2 * (1 - math.sqrt(0.75)) + 2 * (1 - math.sqrt(0.5))) / 2,
        ),
        # at infinity: l(p) = 1 - p
        (math.inf, (0.25 + 0.75) / 2 + (0.75 + 0.5) / 2, (0.25 + 0.5) / 2),
    ],
)
def test_alpha_losses_by_hand(alpha, d_expected, g_expected):
    d, g, _ = build_loss(alpha_config(alpha, alpha))
    assert d(ALPHA_REAL, ALPHA_FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    # non-saturating G: the fakes scored as if labelled real
    assert g(ALPHA_FAKE).item() == pytest.approx(g_expected, rel=1e-6)


def test_alpha_d_and_alpha_g_act_on_their_own_player():
    d, g, _ = build_loss(alpha_config(0.5, math.inf))
    assert d(ALPHA_REAL, ALPHA_FAKE).item() == pytest.approx((1 / 3 + 3) / 2 + (3 + 1) / 2)
    assert g(ALPHA_FAKE).item() == pytest.approx((0.25 + 0.5) / 2)


def test_alpha_below_one_stays_finite_where_d_is_certain_and_wrong():
    # p = sigmoid(-100) underflows; the reference clamps p at 1e-7, so l_0.5 = 1/p - 1 <= 1e7.
    d, g, _ = build_loss(alpha_config(0.5, 0.5))
    value = g(torch.tensor([-100.0])).item()
    assert math.isfinite(value) and value == pytest.approx(1e7 - 1, rel=1e-3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alpha_d": 0.0}, "key 'loss.alpha_d': 0.0 is not allowed; allowed: a number in (0, inf]"),
        ({"alpha_g": -1.0}, "key 'loss.alpha_g': -1.0 is not allowed"),
        ({"alpha_d": math.nan}, "key 'loss.alpha_d': nan is not allowed"),
    ],
)
def test_alpha_outside_its_range_is_refused(changes, message):
    with pytest.raises(ConfigError) as err:
        resolve_alphas(LossConfig(name="alpha", **changes))
    assert message in str(err.value)


def test_alpha_refused_for_other_losses():
    with pytest.raises(ConfigError, match="loss.alpha_d/alpha_g.*allowed only for: alpha"):
        resolve_alphas(LossConfig(name="lsgan", alpha_g=2.0))


# ---------------------------------------------------------------------------------------------
# ideal discriminator losses (the gap-aware schedule's target)

EQUILIBRIUM = [
    # loss config, the constant D output that is the best response at p_g = p_d, V* by hand
    (LossConfig(name="gan"), 0.0, math.log(4)),
    (LossConfig(name="gan_minimax"), 0.0, math.log(4)),
    (LossConfig(name="lsgan", a=0.0, b=1.0, c=1.0), 0.5, 0.25),
    (LossConfig(name="lsgan_chi2", a=-1.0, b=1.0, c=0.0), 0.0, 1.0),
    (LossConfig(name="lsgan", a=-1.0, b=3.0, c=1.0), 1.0, 4.0),
    # least squares on sigmoid(D): sigmoid(0) = 1/2, 1/2 (1/4 + 1/4)
    (LossConfig(name="lsgan_sigmoid"), 0.0, 0.25),
    (alpha_config(1.0, 1.0), 0.0, math.log(4)),
    (alpha_config(0.5, 1.2), 0.0, 2.0),
    (alpha_config(2.0, 2.0), 0.0, 4 - 2 * math.sqrt(2)),
    (alpha_config(math.inf, 1.0), 0.0, 1.0),
    (LossConfig(name="hinge"), 0.0, 2.0),
    (LossConfig(name="l1"), 0.5, 1.0),
]


@pytest.mark.parametrize(("loss_cfg", "output", "ideal"), EQUILIBRIUM)
def test_ideal_d_loss_is_the_loss_of_the_best_d_at_equilibrium(loss_cfg, output, ideal):
    assert ideal_d_loss(loss_cfg) == pytest.approx(ideal, rel=1e-12)
    d, _, _ = build_loss(loss_cfg)
    # At p_g = p_d, D sees the same samples as real and as fake: a constant output is all it
    # can do, and the equilibrium value is the best one.
    same = torch.full((64,), output)
    assert d(same, same).item() == pytest.approx(ideal, rel=1e-6)
    for shift in (-0.7, -0.1, 0.1, 0.7):
        assert d(same + shift, same + shift).item() >= ideal - 1e-6


def test_a_loss_without_a_known_ideal_says_so():
    assert ideal_d_loss(LossConfig(name="wgan_gp")) is None

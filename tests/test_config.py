"""Bad configs fail before any work, naming the key, the value and what is allowed."""

import subprocess
import sys

import pytest
import yaml

from ganstudy import config
from ganstudy.errors import ConfigError

BASE = {"dataset": {"name": "ring8"}, "arch": {"name": "mlp2d"}, "train": {"steps": 10}}


def build(**changes):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        node = data
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config.from_dict(data)


def test_defaults_fill_every_key():
    cfg = build()
    assert cfg.loss.name == "gan" and cfg.train.lr_g == 2e-4 and cfg.train.beta1 == 0.5
    assert cfg.arch.bn.g and cfg.arch.bn.d


def test_lsgan_coding_is_resolved():
    cfg = build(loss__name="lsgan_chi2")
    assert (cfg.loss.a, cfg.loss.b, cfg.loss.c) == (-1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    "changes,pattern",
    [
        ({"train__stpes": 5}, r"unknown key 'train.stpes'.*allowed keys: steps"),
        ({"colour": "red"}, r"unknown key 'colour'"),
        (
            {"loss__name": "lsgam"},
            r"'loss.name': 'lsgam' is not allowed; allowed: gan, gan_minimax, lsgan",
        ),
        ({"dataset__name": "cifar"}, r"'dataset.name': 'cifar'.*fashion_mnist"),
        ({"arch__name": "resnet"}, r"'arch.name': 'resnet'.*dcgan28"),
        ({"train__batch_size": "big"}, r"'train.batch_size': 'big' is not an integer"),
        ({"train__batch_size": 0}, r"'train.batch_size': 0 is not allowed"),
        ({"arch__bn": {"g": "yes"}}, r"'arch.bn.g': 'yes' is not a boolean"),
        ({"train__beta1": 1.5}, r"'train.beta1'"),
        ({"arch__z_dist": "cauchy"}, r"'arch.z_dist'.*normal, uniform"),
        ({"train__epochs": 3}, r"set exactly one"),
        ({"loss__a": 0.5}, r"loss.a/b/c"),
    ],
)
def test_bad_values_are_named(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build(**changes)


def test_impossible_combination_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"'arch.name': 'dcgan64' is not allowed; allowed: an architecture for fashion_mnist .*: dcgan28",
    ):
        build(dataset__name="fashion_mnist", arch__name="dcgan64")
    with pytest.raises(ConfigError, match=r"'arch.name': 'dcgan28'"):
        build(arch__name="dcgan28")  # ring8 has no images
    with pytest.raises(ConfigError, match=r"train.epochs.*sampled without end.*dataset.n_train"):
        config.from_dict({"dataset": {"name": "ring8"}, "train": {"epochs": 2}})
    with pytest.raises(ConfigError, match=r"'dataset.n_train'.*data.prepare.fashion_mnist"):
        build(dataset__name="fashion_mnist", arch__name="dcgan28", dataset__n_train=1000)
    with pytest.raises(ConfigError, match=r"'arch.g_layers'.*dcgan28 has no such setting"):
        build(dataset__name="fashion_mnist", arch__name="dcgan28", arch__g_layers=3)
    with pytest.raises(ConfigError, match=r"'arch.init': 'xavier'.*allowed: dcgan, pytorch"):
        build(arch__init="xavier")


def test_mlp_depth_and_width_resolve_to_the_architecture_defaults():
    ring = config.from_dict({"arch": {"name": "mlp2d_lrelu", "d_layers": 2}, "train": {"steps": 1}})
    assert (ring.arch.g_layers, ring.arch.g_width) == (4, 400)
    assert (ring.arch.d_layers, ring.arch.d_width) == (2, 200)
    finite = config.from_dict(
        {"dataset": {"name": "ring8", "n_train": 1000}, "train": {"epochs": 2, "batch_size": 100}}
    )
    assert finite.dataset.n_train == 1000


def test_overrides():
    data = config.override(BASE, ["train.steps=7", "loss.name=lsgan", "arch.bn.g=false"])
    cfg = config.from_dict(data)
    assert cfg.train.steps == 7 and cfg.loss.name == "lsgan" and not cfg.arch.bn.g
    assert BASE["train"]["steps"] == 10  # the input is not modified


def test_cli_reports_config_errors_before_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "loss": {"name": "wgan"}}))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ganstudy.cli", "train", "--config", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "'loss.name': 'wgan' is not allowed" in proc.stderr
    assert not out.exists()


def test_roundtrip_of_resolved_config():
    cfg = build(loss__name="lsgan")
    assert config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


# ---------------------------------------------------------------------------------------------
# optimizer, D learning-rate schedule, alpha loss


def test_the_chosen_optimizer_and_schedule_take_their_defaults_and_the_others_stay_unset():
    adam = build()
    assert (adam.train.optimizer, adam.train.beta1, adam.train.beta2) == ("adam", 0.5, 0.999)
    assert adam.train.rmsprop_alpha is None and adam.train.rmsprop_momentum is None
    assert adam.train.d_lr_schedule == "none" and adam.train.gap_ema is None
    rms = build(train__optimizer="rmsprop", train__d_lr_schedule="gap_aware")
    t = rms.train
    assert (t.rmsprop_alpha, t.rmsprop_eps, t.rmsprop_momentum) == (0.99, 1e-8, 0.0)
    assert t.beta1 is None and t.beta2 is None
    assert (t.gap_ema, t.gap_h_min, t.gap_f_max, t.gap_x_min, t.gap_x_max) == (
        0.95, 0.1, 2.0, 0.1, 0.1
    )  # fmt: skip
    assert (
        build(train__optimizer="rmsprop", train__rmsprop_momentum=0.9).train.rmsprop_momentum == 0.9
    )


def test_alpha_is_resolved_and_infinity_is_written_as_yaml_inf():
    assert (build(loss__name="alpha").loss.alpha_d, build(loss__name="alpha").loss.alpha_g) == (
        1.0, 1.0
    )  # fmt: skip
    cfg = config.from_dict(yaml.safe_load(
        "dataset: {name: ring8}\ntrain: {steps: 5}\nloss: {name: alpha, alpha_d: 0.5, alpha_g: .inf}"
    ))  # fmt: skip
    assert cfg.loss.alpha_d == 0.5 and cfg.loss.alpha_g == float("inf")
    assert "alpha_g: .inf" in cfg.to_yaml()
    assert config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    data = config.override(BASE, ["loss.name=alpha", "loss.alpha_d=.inf"])
    assert config.from_dict(data).loss.alpha_d == float("inf")


@pytest.mark.parametrize(
    "changes,pattern",
    [
        (
            {"train__optimizer": "sgd"},
            r"key 'train.optimizer': 'sgd' is not allowed; allowed: adam, rmsprop",
        ),
        (
            {"train__d_lr_schedule": "cosine"},
            r"key 'train.d_lr_schedule': 'cosine' is not allowed; allowed: none, gap_aware",
        ),
        (
            {"train__rmsprop_alpha": 0.9},
            r"key 'train.rmsprop_alpha': 0.9 is not allowed; allowed: null: it is a key of "
            r"optimizer 'rmsprop', and train.optimizer is 'adam'",
        ),
        (
            {"train__optimizer": "rmsprop", "train__beta1": 0.5},
            r"key 'train.beta1': 0.5 is not allowed; allowed: null: it is a key of optimizer 'adam'",
        ),
        (
            {"train__gap_ema": 0.9},
            r"key 'train.gap_ema': 0.9 is not allowed; allowed: null: it is a key of "
            r"d_lr_schedule 'gap_aware', and train.d_lr_schedule is 'none'",
        ),
        (
            {"train__optimizer": "rmsprop", "train__rmsprop_momentum": 1.0},
            r"key 'train.rmsprop_momentum': 1.0 is not allowed; allowed: a number in \[0, 1\)",
        ),
        (
            {"train__optimizer": "rmsprop", "train__rmsprop_eps": 0},
            r"key 'train.rmsprop_eps': 0.0 is not allowed; allowed: a positive number",
        ),
        (
            {"train__d_lr_schedule": "gap_aware", "train__gap_h_min": 0.0},
            r"key 'train.gap_h_min': 0.0 is not allowed; allowed: a number in \(0, 1\]",
        ),
        (
            {"train__d_lr_schedule": "gap_aware", "train__gap_f_max": 0.5},
            r"key 'train.gap_f_max': 0.5 is not allowed; allowed: a number >= 1",
        ),
        (
            {"train__d_lr_schedule": "gap_aware", "train__gap_x_max": -0.1},
            r"key 'train.gap_x_max': -0.1 is not allowed; allowed: a positive number",
        ),
        (
            {"train__beta2": 1.0},
            r"key 'train.beta2': 1.0 is not allowed; allowed: a number in \[0, 1\)",
        ),
        (
            {"loss__name": "wgan_gp", "train__d_lr_schedule": "gap_aware"},
            r"key 'train.d_lr_schedule': 'gap_aware' is not allowed; allowed: none for loss "
            r"'wgan_gp', which has no known ideal D loss; gap_aware needs one of: gan, ",
        ),
        (
            {"loss__name": "lsgan", "loss__a": 1.0, "train__d_lr_schedule": "gap_aware"},
            r"'train.d_lr_schedule': 'gap_aware' is not allowed; allowed: none for loss 'lsgan' "
            r"with an ideal D loss of 0",
        ),
        ({"loss__name": "alpha", "loss__alpha_d": 0}, r"key 'loss.alpha_d': 0.0 is not allowed"),
        ({"loss__name": "alpha", "loss__alpha_g": -2}, r"key 'loss.alpha_g': -2.0 is not allowed"),
        ({"loss__alpha_d": 0.5}, r"keys 'loss.alpha_d/alpha_g'.*'gan', which has no alpha"),
        ({"loss__name": "alpha", "loss__alpha_d": "inf"}, r"'loss.alpha_d': 'inf' is not a float"),
        ({"arm": "Gan-RMS"}, r"key 'arm': 'Gan-RMS' is not allowed; allowed: a name of lowercase"),
        ({"arm": "lsgan"}, r"key 'arm': 'lsgan' is not allowed; .*not another loss's name"),
    ],
)
def test_bad_optimizer_schedule_alpha_and_arm_values_are_named(changes, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build(**changes)


def test_a_schedule_works_with_every_loss_that_has_an_ideal_value():
    for name in (
        "gan",
        "gan_minimax",
        "lsgan",
        "lsgan_chi2",
        "lsgan_sigmoid",
        "alpha",
        "hinge",
        "l1",
    ):
        assert build(loss__name=name, train__d_lr_schedule="gap_aware").train.gap_ema == 0.95

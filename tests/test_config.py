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
    with pytest.raises(ConfigError, match=r"train.epochs.*only for image datasets"):
        config.from_dict({"dataset": {"name": "ring8"}, "train": {"epochs": 2}})


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

"""Run directories are formatted and parsed in one place."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import ring_config

from ganstudy import layout
from ganstudy.layout import RunKey


def test_run_key_formats_and_parses_its_directory():
    key = RunKey("stacked_mnist", "dcgan28", "lsgan_chi2", True, False, 12)
    assert key.run_dir == "runs/stacked_mnist/dcgan28/lsgan_chi2/bn-g1-d0/seed12"
    assert key.variant.path == "stacked_mnist/dcgan28/lsgan_chi2/bn-g1-d0"
    assert RunKey.parse(key.run_dir) == key
    assert RunKey.parse(f"/abs/results/{key.run_dir}") == key
    assert key.design_row() == {
        "dataset": "stacked_mnist",
        "arch": "dcgan28",
        "loss": "lsgan_chi2",
        "bn_g": 1,
        "bn_d": 0,
        "seed": 12,
        "run_dir": key.run_dir,
    }
    assert list(key.design_row()) == list(layout.DESIGN_COLUMNS)


@pytest.mark.parametrize(
    "bad",
    ["runs/ring8/mlp2d/gan/bn-g2-d0/seed0", "runs/ring8/mlp2d/gan/seed0", "ring8/mlp2d/gan"],
)
def test_a_path_that_is_not_a_run_directory_is_named(bad):
    with pytest.raises(ValueError, match="is not a run directory"):
        RunKey.parse(bad)


def test_the_key_of_a_config_and_of_snakemake_wildcards():
    cfg = ring_config().with_seed(3)
    key = RunKey.of_config(cfg)
    assert key == RunKey("ring8", "mlp2d", "lsgan", True, True, 3)
    wildcards = SimpleNamespace(dataset="ring8", arch="mlp2d", loss="lsgan", g="1", d="1", seed="3")
    assert RunKey.from_wildcards(wildcards) == key
    filled = layout.WILDCARD_RUN_DIR.format(**vars(wildcards))
    assert filled == key.run_dir

"""Every fact another module looks up about a dataset resolves from its registry entry."""

from __future__ import annotations

import pytest
from pytorch_fid.inception import InceptionV3

from ganstudy import loss_functions
from ganstudy.data.builders import BUILDERS
from ganstudy.data.registry import DATASETS, KINDS, Mixture, nominal_train_size
from ganstudy.data.sources import SOURCES
from ganstudy.errors import ConfigError
from ganstudy.evaluate.mode_metrics import MODE_METRICS
from ganstudy.losses import LOSSES
from ganstudy.metrics import fid_protocol
from ganstudy.metrics.classifiers import CLASSIFIER_ARCHS
from ganstudy.nets import ARCHS, bodies


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_reference_of_a_dataset_resolves(name):
    spec = DATASETS[name]
    assert spec.name == name and spec.kind in KINDS and spec.description
    assert (spec.source is None) == (spec.preparation is None)
    if spec.source is not None:
        assert spec.source in SOURCES
        assert spec.preparation.builder in BUILDERS
    if spec.kind == "mixture2d":
        assert spec.mixture is not None and len(spec.mixture.means) == spec.n_classes
    if spec.fid is not None:
        assert spec.fid.split in spec.splits
    if spec.classifier is not None:
        owner = DATASETS[spec.classifier].classifier_training
        assert owner is not None and owner.arch in CLASSIFIER_ARCHS
        assert "test" in DATASETS[spec.classifier].splits
    if spec.mode_metric is not None:
        metric = MODE_METRICS[spec.mode_metric]
        assert not metric.classifier or spec.classifier is not None
    if spec.kind == "image":
        assert nominal_train_size(name) > 0
    assert any(arch.supports(spec) for arch in ARCHS.values()), name


def test_mixture_means_by_formula():
    ring = Mixture.ring(8, 1.0, sigma=0.01)
    assert ring.means[0] == (1.0, 0.0) and ring.means[2] == pytest.approx((0.0, 1.0), abs=1e-15)
    assert len(set(ring.means)) == 8
    grid = Mixture.grid((-1.0, 1.0), sigma=0.1)
    assert grid.means == ((-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0))


def test_preparation_sizes_follow_their_parameters():
    assert nominal_train_size("stacked_mnist") == 128_000
    assert nominal_train_size("stacked_mnist", {"n_train": 5000}) == 5000
    assert nominal_train_size("ring8") is None
    with pytest.raises(ConfigError, match="unknown dataset 'nope'; allowed: .*ring8"):
        nominal_train_size("nope")


def test_arch_and_loss_registries_name_functions_that_exist():
    for arch in ARCHS.values():
        assert callable(getattr(bodies, arch.bodies)), arch.name
    for loss in LOSSES.values():
        d_loss, g_loss = loss.functions()
        assert d_loss is getattr(loss_functions, loss.d_loss), loss.name
        assert g_loss is getattr(loss_functions, loss.g_loss), loss.name


def test_fid_constants_agree_with_pytorch_fid():
    from pytorch_fid import inception

    assert tuple(InceptionV3.BLOCK_INDEX_BY_DIM) == fid_protocol.DIMS
    assert inception.FID_WEIGHTS_URL.endswith("/" + fid_protocol.WEIGHTS_FILE)

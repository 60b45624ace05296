"""FID: the Frechet distance against closed forms, the in-memory path against pytorch-fid's own
file path, the protocol's refusals, the weights lookup and the reference-statistics cache."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ganstudy import store
from ganstudy.errors import FIDError
from ganstudy.metrics import fid, fid_protocol

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WEIGHTS = SHARED / "fid-inception" / fid_protocol.WEIGHTS_FILE


@pytest.fixture(scope="module")
def weights() -> fid.InceptionWeights:
    if not WEIGHTS.is_file():
        pytest.skip(f"FID Inception weights not found at {WEIGHTS}")
    return fid.resolve_weights(WEIGHTS)


@pytest.fixture
def torch_home_with_weights(tmp_path, monkeypatch, weights) -> Path:
    """A $TORCH_HOME whose hub cache holds the weights, where pytorch-fid looks for them."""
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    os.symlink(weights.path, home / "hub" / "checkpoints" / fid_protocol.WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _stats(mu, sigma, n=100):
    return fid.Statistics(np.asarray(mu, float), np.asarray(sigma, float), n)


# -- the Frechet distance --------------------------------------------------------------------


def test_equal_covariances_give_the_squared_mean_difference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    sigma = a @ a.T + 0.5 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    value, note = fid.frechet_distance(_stats(mu1, sigma), _stats(mu2, sigma))
    assert value == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-6, abs=1e-8)
    assert note is None


def test_identical_feature_sets_give_zero():
    features = np.random.default_rng(1).normal(size=(300, 8))
    s = fid.statistics(features)
    value, _ = fid.frechet_distance(s, s)
    assert abs(value) < 1e-8


def test_diagonal_covariances_match_the_hand_computed_value():
    # mu: (0, 0) vs (1, 2) -> 1 + 4 = 5; diag (1, 4) vs (4, 9): (1 - 2)^2 + (2 - 3)^2 = 2
    value, _ = fid.frechet_distance(
        _stats([0, 0], np.diag([1.0, 4.0])), _stats([1, 2], np.diag([4.0, 9.0]))
    )
    assert value == pytest.approx(7.0, abs=1e-9)


def test_statistics_use_the_unbiased_covariance():
    features = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    s = fid.statistics(features)
    np.testing.assert_allclose(s.mu, [2.0, 2.0])
    np.testing.assert_allclose(s.sigma, np.cov(features.T, ddof=1))
    assert s.count == 3
    with pytest.raises(FIDError, match="at least 2"):
        fid.statistics(features[:1])


# -- inputs ----------------------------------------------------------------------------------


def test_inception_input_quantises_to_8_bit_and_repeats_gray():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    from_float = fid.inception_input(u.float() / 127.5 - 1)
    from_uint8 = fid.inception_input(u)
    assert from_float.shape == (1, 3, 16, 16)
    assert torch.equal(from_float, from_uint8)
    assert torch.equal(from_float[:, 0], from_float[:, 2])
    nudged = fid.inception_input(u.float() / 127.5 - 1 + 0.001)
    assert torch.equal(nudged, from_uint8)
    with pytest.raises(FIDError, match="shape"):
        fid.inception_input(torch.zeros(2, 2, 8, 8))


# -- the protocol ----------------------------------------------------------------------------


def test_protocol_defaults_follow_the_literature():
    p = fid.protocol_for("fashion_mnist")
    assert (p.n_generated, p.n_reference, p.reference_split, p.dims, p.name) == (
        10_000, 10_000, "test", 2048, "full",
    )  # fmt: skip
    cats = fid.protocol_for("cat_faces64")
    assert (cats.reference_split, cats.n_reference) == ("train", None)
    quick = fid.protocol_for("stacked_mnist", "quick")
    assert (quick.name, quick.dims, quick.n_generated) == ("quick", 192, 1000)
    assert fid.protocol_for("mnist", n_samples=10_000, dims=2048).name == "full"
    assert fid.protocol_for("mnist", n_samples=5000).name == "custom-2048d-5000"


def test_fewer_samples_than_dims_is_refused_or_flagged():
    with pytest.raises(FIDError, match=r"n_generated=1000, n_reference=1000 <= dims=2048"):
        fid.protocol_for("fashion_mnist", n_samples=1000)
    with pytest.raises(FIDError, match="dims=2048"):
        fid.TrainingFID("fashion_mnist", "unused-root", 500, 2048)
    allowed = fid.protocol_for("fashion_mnist", n_samples=1000, allow_singular=True)
    assert allowed.allow_singular
    assert "singular covariance" in fid.singular_flag(1000, 10_000, 2048)
    assert fid.singular_flag(2049, 2049, 2048) is None
    assert fid.singular_flag(2048, None, 2048) is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dataset": "ring8"}, "datasets with FID"),
        ({"dataset": "mnist", "dims": 100}, "allowed: 64, 192, 768, 2048"),
        ({"dataset": "mnist", "preset": "fast"}, "allowed: full, quick"),
        ({"dataset": "mnist", "n_samples": 1, "dims": 64}, "n_generated"),
    ],
)
def test_bad_protocol_settings_are_named(kwargs, match):
    with pytest.raises(FIDError, match=match):
        fid.protocol_for(**kwargs)


# -- weights ---------------------------------------------------------------------------------


def test_missing_weights_offline_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv(fid_protocol.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FIDError, match="--fid-weights") as err:
        fid.resolve_weights()
    assert fid_protocol.WEIGHTS_ENV in str(err.value) and "no route to host" in str(err.value)
    with pytest.raises(FIDError, match="does not exist"):
        fid.resolve_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv(fid_protocol.WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FIDError, match=fid_protocol.WEIGHTS_ENV):
        fid.resolve_weights()


def test_weights_from_the_environment_and_their_identity(tmp_path, monkeypatch):
    fake = tmp_path / "w.pth"
    fake.write_bytes(b"abc")
    monkeypatch.setenv(fid_protocol.WEIGHTS_ENV, str(fake))
    w = fid.resolve_weights()
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (w.path, w.source, w.sha256) == (fake, fid_protocol.WEIGHTS_ENV, sha)
    assert w.identity == f"w.pth sha256:{sha}"
    with pytest.raises(FIDError, match="cannot be read"):
        fid.load_inception(64, w, "cpu")


def test_a_file_with_other_tensors_is_rejected(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(FIDError, match="does not hold the FID Inception network"):
        fid.load_inception(64, fid.resolve_weights(other), "cpu")


# -- against pytorch-fid's own path ------------------------------------------------------------


def _write_pngs(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir()
    for i, img in enumerate(images):
        array = img.permute(1, 2, 0).numpy()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(
            folder / f"{i:04d}.png"
        )


@pytest.mark.slow(seconds=14)
def test_fid_equals_pytorch_fid_on_the_same_images_written_as_png(
    tmp_path, weights, torch_home_with_weights
):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    gen = torch.Generator().manual_seed(0)
    n, dims = 66, 64  # n > dims: non-singular covariances
    # uint8 levels, so the PNG files hold exactly the pixels the tensors do
    gray = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    rgb = (torch.rand(n, 3, 28, 28, generator=gen) ** 2 * 255).round().to(torch.uint8)
    _write_pngs(gray, tmp_path / "gray")
    _write_pngs(rgb, tmp_path / "rgb")
    theirs = calculate_fid_given_paths(
        [str(tmp_path / "gray"), str(tmp_path / "rgb")], 33, "cpu", dims, num_workers=0
    )

    model = fid.load_inception(dims, weights, "cpu")
    ours_gray = fid.statistics(fid.activations(gray.float() / 127.5 - 1, model, 33, "cpu"))
    ours_rgb = fid.statistics(fid.activations(rgb.float() / 127.5 - 1, model, 33, "cpu"))
    ours, note = fid.frechet_distance(ours_gray, ours_rgb)
    assert theirs > 1.0
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert note is None


# -- reference statistics and the training-time FID ----------------------------------------------


def _fake_fashion(data_root: Path, n: int) -> torch.Tensor:
    root = store.DataRoot(data_root)
    root.prepared("fashion_mnist").mkdir(parents=True)
    gen = torch.Generator().manual_seed(3)
    images = (torch.rand(n, 1, 28, 28, generator=gen) * 255).round().to(torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    for split in ("train", "test"):
        torch.save(
            {"images": images, "labels": labels}, root.prepared_split("fashion_mnist", split)
        )
    return images


def test_reference_statistics_are_cached_with_their_settings(tmp_path, weights, monkeypatch):
    images = _fake_fashion(tmp_path, 70)
    protocol = fid.protocol_for("fashion_mnist", n_samples=70, dims=64)
    stats, settings = fid.reference_statistics("fashion_mnist", tmp_path, protocol, weights, "cpu")
    path = store.DataRoot(tmp_path).fid_statistics("fashion_mnist", "test", 64, 70, weights.sha256)
    assert path.is_file() and stats.count == 70
    with np.load(path) as stored:
        assert json.loads(str(stored["settings"])) == settings
    assert settings["weights"] == weights.identity and settings["reference_split"] == "test"

    def no_inception(*args, **kwargs):
        raise AssertionError("cached statistics must not be recomputed")

    monkeypatch.setattr(fid, "activations", no_inception)
    again, _ = fid.reference_statistics("fashion_mnist", tmp_path, protocol, weights, "cpu")
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    monkeypatch.undo()

    # the training-time FID of the reference images themselves is 0
    training_fid = fid.TrainingFID("fashion_mnist", tmp_path, 70, 64, weights.path, "cpu")
    assert training_fid.settings["n_generated"] == 70 and training_fid.settings["dims"] == 64
    assert abs(training_fid(images.float() / 127.5 - 1)) < 1e-3
    shifted = (images.float() / 127.5 - 1) * 0.5
    assert training_fid(shifted) > 1.0
    assert np.isnan(training_fid(torch.full_like(shifted, float("nan"))))
    assert training_fid.last_flag == "generated samples are not finite"
    with pytest.raises(FIDError, match="compares 70 generated images, got 69"):
        training_fid(shifted[:69])
    with pytest.raises(FIDError, match="has 70; allowed: at most 70"):
        fid.TrainingFID("fashion_mnist", tmp_path, 80, 64, weights.path, "cpu")


# -- SciPy without sqrtm's ``disp`` -------------------------------------------------------------


def _spd_product(seed: int, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 2 * n)), rng.normal(size=(n, 2 * n))
    return (a @ a.T / n) @ (b @ b.T / n)


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_the_sqrtm_given_to_pytorch_fid_returns_what_scipy_disp_false_returned():
    import inspect

    from scipy import linalg

    if "disp" not in inspect.signature(linalg.sqrtm).parameters:
        pytest.skip("this SciPy has no sqrtm(disp=...) to compare with")
    product = _spd_product(0)
    root, error = fid._LinalgForPytorchFid.sqrtm(product, disp=False)
    scipy_root, scipy_error = linalg.sqrtm(product, disp=False)
    np.testing.assert_allclose(root, scipy_root, rtol=1e-10, atol=1e-12)
    assert error == pytest.approx(scipy_error, rel=1e-6, abs=1e-14)


def test_fid_works_with_a_scipy_whose_sqrtm_has_no_disp(monkeypatch):
    from scipy import linalg

    def sqrtm_without_disp(matrix):  # SciPy 1.18's signature
        return linalg.sqrtm(matrix)

    monkeypatch.setattr(fid, "scipy_linalg", SimpleNamespace(sqrtm=sqrtm_without_disp))
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(200, 8)) + shift for shift in (0.0, 0.5)]
    stats = [fid.Statistics(f.mean(0), np.cov(f, rowvar=False), len(f)) for f in feats]
    value, note = fid.frechet_distance(*stats)
    # closed form with the same covariances: the squared distance of the means plus the trace
    # term, computed here with an eigen-decomposition instead of sqrtm
    a, b = stats[0].sigma, stats[1].sigma
    w, v = np.linalg.eigh(a)
    half = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.linalg.eigvalsh(half @ b @ half)
    expected = (
        np.sum((stats[0].mu - stats[1].mu) ** 2) + np.trace(a + b) - 2 * np.sum(np.sqrt(cross))
    )
    assert value == pytest.approx(expected, rel=1e-9)
    assert note is None

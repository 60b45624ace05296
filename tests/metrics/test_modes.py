"""Mode coverage on constructed inputs (all, one, half of the modes), on real mixture samples and
on real Stacked MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ganstudy.data.registry import DATASETS
from ganstudy.data.streams import MixtureStream, mixture_means
from ganstudy.metrics import modes

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MNIST_MIRROR = SHARED / "datasets"


def _at_means(name: str, mode_index: np.ndarray, spread: float = 0.5) -> np.ndarray:
    """Points placed on the given modes, jittered within ``spread`` sigma."""
    means = mixture_means(name).numpy()
    rng = np.random.default_rng(0)
    jitter = (
        rng.uniform(-1, 1, size=(len(mode_index), 2)) * spread * DATASETS[name].mixture.sigma / 2
    )
    return means[mode_index] + jitter


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_all_one_and_half_of_the_modes(name):
    m = len(mixture_means(name))
    n = 2500
    means, sigma = mixture_means(name).numpy(), DATASETS[name].mixture.sigma

    every = modes.mixture_modes(_at_means(name, np.arange(n) % m), means, sigma)
    assert (every.modes_covered, every.modes_total) == (m, m)
    assert every.success is True and every.failure is False
    assert every.high_quality_fraction == 1.0
    assert every.kl_to_uniform == pytest.approx(0.0, abs=2e-3)

    one = modes.mixture_modes(_at_means(name, np.zeros(n, int)), means, sigma)
    assert one.modes_covered == 1 and one.success is False and one.failure is False
    assert one.kl_to_uniform == pytest.approx(math.log(m))

    half = modes.mixture_modes(_at_means(name, np.arange(n) % (m // 2)), means, sigma)
    assert half.modes_covered == m // 2
    assert half.kl_to_uniform == pytest.approx(math.log(m / (m // 2)), abs=2e-3)

    nowhere = modes.mixture_modes(np.full((n, 2), 10.0), means, sigma)
    assert nowhere.modes_covered == 0 and nowhere.failure is True
    assert nowhere.high_quality_fraction == 0.0 and nowhere.kl_to_uniform is None


def test_mixture_rule_counts_samples_within_3_sigma_and_a_minimum_per_mode():
    means, sigma = mixture_means("grid25").numpy(), DATASETS["grid25"].mixture.sigma
    n = 2500  # 20 high-quality samples make a mode covered (0.2 x 2500 / 25)
    points = np.full((n, 2), 100.0)
    points[:20] = means[0] + [2.9 * sigma, 0]  # inside 3 sigma: counts
    points[20:39] = means[1]  # 19: one short
    points[39:100] = means[2] + [3.1 * sigma, 0]  # outside 3 sigma: low quality
    points[100] = np.nan
    result = modes.mixture_modes(points, means, sigma)
    assert result.counts[:3] == [20, 19, 0]
    assert result.modes_covered == 1
    assert result.high_quality_fraction == pytest.approx(39 / n)
    assert "3 sigma" in result.rule and "at least 20" in result.rule
    # The published rule (VEEGAN, PacGAN, (alpha_D, alpha_G)-GAN): one high-quality sample.
    published = modes.mixture_modes(points, means, sigma, min_count=1)
    assert published.modes_covered == 2
    assert "at least 1 high-quality samples (a fixed count)" in published.rule
    ring, ring_sigma = mixture_means("ring8").numpy(), DATASETS["ring8"].mixture.sigma
    one_each = np.repeat(ring, [1] * 8, axis=0) + [2.9 * ring_sigma, 0]
    lone = modes.mixture_modes(
        np.concatenate([one_each, np.full((92, 2), 9.0)]), ring, ring_sigma, min_count=1
    )
    assert (lone.modes_covered, lone.success, lone.failure) == (8, True, False)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_real_mixture_samples_cover_every_mode(name):
    stream = MixtureStream(name, [torch.Generator().manual_seed(1)], 2500, "cpu")
    points = stream.batch(0)[0].numpy()
    result = modes.mixture_modes(points, mixture_means(name).numpy(), DATASETS[name].mixture.sigma)
    assert result.success
    # P(|N(0, sigma^2 I_2)| <= 3 sigma) = 1 - exp(-4.5) = 0.989
    assert result.high_quality_fraction == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert result.kl_to_uniform < 0.02


def test_stacked_mnist_all_one_and_half_of_the_modes():
    triples = np.array([[i // 100, (i // 10) % 10, i % 10] for i in range(1000)])
    every = modes.stacked_mnist_modes(np.tile(triples, (26, 1)))
    assert (every.modes_covered, every.modes_total, every.n_samples) == (1000, 1000, 26_000)
    assert every.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    assert every.success is None and every.failure is None

    one = modes.stacked_mnist_modes(np.tile([[3, 1, 4]], (26_000, 1)))
    assert one.modes_covered == 1 and one.counts[314] == 26_000
    assert one.kl_to_uniform == pytest.approx(math.log(1000))

    half = modes.stacked_mnist_modes(np.tile(triples[::2], (52, 1)))
    assert half.modes_covered == 500
    assert half.kl_to_uniform == pytest.approx(math.log(2))

    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        modes.stacked_mnist_modes(np.zeros((5, 2), int))
    with pytest.raises(ValueError, match="0..9"):
        modes.stacked_mnist_modes(np.full((5, 3), 10))


def test_class_histogram_coverage():
    labels = np.repeat(np.arange(10), 100)
    every = modes.class_modes(labels, 10)
    assert every.modes_covered == 10 and every.kl_to_uniform == pytest.approx(0.0)
    # a collapsed generator with a few misclassified samples in other classes
    skewed = np.concatenate([np.zeros(990, int), np.arange(1, 10).repeat(1), [0]])
    result = modes.class_modes(skewed, 10)
    assert result.modes_covered == 1  # 1 sample is below the 20 needed (0.2 x 1000 / 10)
    assert "at least 20" in result.rule


def test_kl_to_uniform_formula():
    assert modes.kl_to_uniform(np.array([1, 1, 0, 0])) == pytest.approx(math.log(2))
    assert modes.kl_to_uniform(np.array([3, 1])) == pytest.approx(
        0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    )
    assert modes.kl_to_uniform(np.zeros(4)) is None


def _stacked_mnist_test(tmp_path) -> tuple[torch.Tensor, torch.Tensor]:
    if not (MNIST_MIRROR / "mnist").is_dir():
        pytest.skip(f"no MNIST files in the shared mirror {MNIST_MIRROR}")
    from ganstudy.data import prepare

    prepare.prepare(
        "stacked_mnist", tmp_path, mirror=MNIST_MIRROR, params={"n_train": 1000, "n_test": 26_000}
    )
    return prepare.load_split("stacked_mnist", tmp_path, "test")


def test_real_stacked_mnist_labels_give_about_1000_modes(tmp_path):
    _, labels = _stacked_mnist_test(tmp_path)
    digits = torch.stack([labels // 100, labels // 10 % 10, labels % 10], dim=1).numpy()
    result = modes.stacked_mnist_modes(digits)
    assert result.modes_covered >= 995
    # an empirical histogram of N draws over M equal modes: KL ~ (M - 1) / (2N) = 0.019
    assert result.kl_to_uniform < 0.04


@pytest.mark.slow(seconds=28)
def test_real_stacked_mnist_through_the_classifier_gives_about_1000_modes(tmp_path):
    from ganstudy.evaluate.mode_metrics import MODE_METRICS
    from ganstudy.metrics.classifiers import train_classifier

    images, labels = _stacked_mnist_test(tmp_path)
    classifier, info = train_classifier(
        "mnist", tmp_path, epochs=1, train_limit=20_000, mirror=MNIST_MIRROR, save=False
    )
    assert info["test_accuracy"] > 0.95
    spec = type("Spec", (), {"name": "stacked_mnist", "n_classes": 1000})
    result = MODE_METRICS["stacked_mnist"].measure(
        images.float() / 127.5 - 1, {"classifier": classifier, "spec": spec}
    )
    assert result.modes_covered >= 990
    assert result.kl_to_uniform < 0.1


# -- collapsed vs not converged, KL's minimum count --------------------------------------------


def _ring_points(mode_index: np.ndarray, spread: float, seed: int = 0) -> np.ndarray:
    means = mixture_means("ring8").numpy()
    rng = np.random.default_rng(seed)
    return means[mode_index] + rng.normal(size=(len(mode_index), 2)) * spread


def test_all_samples_on_one_mode_is_collapsed_not_unconverged():
    from ganstudy.metrics import stability

    sigma = DATASETS["ring8"].mixture.sigma
    points = _ring_points(np.zeros(2500, dtype=int), sigma / 2)
    coverage = modes.mixture_modes(points, mixture_means("ring8").numpy(), sigma).to_dict()
    assert coverage["modes_covered"] == 1 and coverage["high_quality_fraction"] > 0.99
    assert stability.collapsed(coverage) is True and stability.not_converged(coverage) is False


def test_samples_far_from_every_mode_are_not_converged_not_collapsed():
    from ganstudy.metrics import stability

    sigma = DATASETS["ring8"].mixture.sigma
    rng = np.random.default_rng(1)
    angles = rng.uniform(0, 2 * np.pi, 2500)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 0.5  # a circle of radius 0.5
    coverage = modes.mixture_modes(points, mixture_means("ring8").numpy(), sigma).to_dict()
    assert coverage["modes_covered"] == 0 and coverage["high_quality_fraction"] < 0.01
    assert stability.not_converged(coverage) is True and stability.collapsed(coverage) is False
    assert stability.not_converged({"modes_covered": 3, "modes_total": 1000}) is None  # no quality


def test_kl_is_undefined_below_its_minimum_count():
    sigma = DATASETS["ring8"].mixture.sigma
    far = np.full((2496, 2), 5.0)  # nowhere near a mode
    near = _ring_points(np.array([0, 1, 2, 3]), sigma / 10)
    coverage = modes.mixture_modes(np.vstack([far, near]), mixture_means("ring8").numpy(), sigma)
    assert sum(coverage.counts) == 4 and coverage.kl_to_uniform is None  # ln 8 before
    assert "KL undefined (null) below 40 counted samples" in coverage.rule
    assert modes.kl_to_uniform([5, 5, 5, 5, 5, 5, 5, 5], min_total=40) == pytest.approx(0.0)
    assert modes.kl_to_uniform([39, 0, 0, 0, 0, 0, 0, 0], min_total=40) is None

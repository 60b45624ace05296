"""Mode coverage of generated samples: pure functions on points and predicted labels.

Every measure reduces the samples to counts c_1..c_M over the M modes of the data and reports

    modes covered = #{m : c_m >= min_count}
    KL(p || U)    = sum_{m : p_m > 0} p_m log(p_m M),   p_m = c_m / sum_m c_m

(natural log; 0 for a uniform histogram, log M when every sample falls into one mode), with the
rule that decided "covered" written out in text next to the numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ganstudy.metrics.mode_kinds import MODE_KINDS

# A 2D mode counts as covered when it receives at least this fraction of the samples a perfect
# generator would give it (N / M): a few stray points near a mode do not make it covered.
MIXTURE_MIN_SHARE = 0.2
MIXTURE_RADIUS_SIGMAS = 3.0
STACKED_MNIST_MODES = 1000
# KL to uniform needs samples to spread: below this many counted samples per mode it is
# undefined (null), e.g. 40 high-quality samples for 8 modes.
KL_MIN_PER_MODE = 5


@dataclass(frozen=True)
class ModeCoverage:
    kind: str
    n_samples: int
    modes_total: int
    modes_covered: int
    kl_to_uniform: float | None
    high_quality_fraction: float | None
    success: bool | None
    failure: bool | None
    rule: str
    counts: list[int]
    # The count that made a mode covered.
    min_count: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def kl_to_uniform(counts: np.ndarray, min_total: int = 1) -> float | None:
    """KL(p || U) = sum_{p_m > 0} p_m log(p_m M) of a histogram; None for a histogram of fewer
    than ``min_total`` samples (4 samples of 8 modes would give ln 8 however they fall)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0 or total < min_total:
        return None
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(p * len(counts))))


def _coverage(kind, counts, n_samples, min_count, rule, hq_fraction=None, verdicts=False):
    counts = np.asarray(counts, dtype=np.int64)
    covered = int((counts >= min_count).sum())
    kl_min = KL_MIN_PER_MODE * len(counts)
    rule += f"; KL undefined (null) below {kl_min} counted samples ({KL_MIN_PER_MODE} per mode)"
    return ModeCoverage(
        kind=kind,
        n_samples=int(n_samples),
        modes_total=len(counts),
        modes_covered=covered,
        kl_to_uniform=kl_to_uniform(counts, kl_min),
        high_quality_fraction=hq_fraction,
        success=covered == len(counts) if verdicts else None,
        failure=covered == 0 if verdicts else None,
        rule=rule,
        counts=counts.tolist(),
        min_count=int(min_count),
    )


def stacked_mnist_modes(digits: np.ndarray, min_count: int | None = None) -> ModeCoverage:
    """Modes of Stacked MNIST from the digits predicted for each channel, shape (N, 3).

    Mode of a sample = 100 d_0 + 10 d_1 + d_2 (1000 modes); a mode is covered when at least
    ``min_count`` samples fall into it (None: the kind's default, ``MODE_KINDS["stacked_mnist"]
    .min_count``, the VEEGAN/PacGAN protocol's); KL is that of the 1000-bin histogram.
    """
    if min_count is None:
        min_count = MODE_KINDS["stacked_mnist"].min_count
    digits = np.asarray(digits)
    if digits.ndim != 2 or digits.shape[1] != 3:
        raise ValueError(f"expected predicted digits of shape (N, 3), got {digits.shape}")
    if digits.size and (digits.min() < 0 or digits.max() > 9):
        raise ValueError("predicted digits must lie in 0..9")
    modes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    counts = np.bincount(modes, minlength=STACKED_MNIST_MODES)
    rule = (
        "mode = the triple of digits predicted per channel by the MNIST classifier; "
        f"covered when at least {min_count} sample{'s' if min_count != 1 else ''} fall into it"
    )
    return _coverage("stacked_mnist", counts, len(digits), min_count, rule)


def _min_count(min_count: int | None, min_share: float, n: int, m: int) -> tuple[int, str]:
    """The count that makes a mode covered, and how it was chosen: ``min_count`` as given (a
    published protocol's rule), else ``ceil(min_share * N / M)``."""
    if min_count is not None:
        return min_count, "a fixed count"
    return max(1, math.ceil(min_share * n / m)), f"{min_share:g} x N / {m}, N = {n}"


def class_modes(
    labels: np.ndarray,
    n_classes: int,
    min_share: float = MIXTURE_MIN_SHARE,
    min_count: int | None = None,
):
    """Class histogram of samples labelled by a classifier, e.g. Fashion-MNIST.

    A class is covered when it receives at least ``ceil(min_share * N / K)`` samples (or
    ``min_count`` when given): a classifier spreads a few errors over every class, so one sample
    proves little.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    min_count, why = _min_count(min_count, min_share, len(labels), n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    rule = (
        f"class predicted by the classifier; covered when it receives at least {min_count} "
        f"samples ({why})"
    )
    return _coverage("classes", counts, len(labels), min_count, rule)


def mixture_modes(
    points: np.ndarray,
    means: np.ndarray,
    sigma: float,
    radius_sigmas: float = MIXTURE_RADIUS_SIGMAS,
    min_share: float = MIXTURE_MIN_SHARE,
    min_count: int | None = None,
) -> ModeCoverage:
    """Coverage of a 2D Gaussian mixture with M means and standard deviation sigma.

    A sample is high quality when its distance to the nearest mean is at most
    ``radius_sigmas * sigma`` (3 sigma); it is then assigned to that mean. Mode m is covered when
    at least ``ceil(min_share * N / M)`` high-quality samples are assigned to it (a fifth of
    the N / M a perfect generator gives it: 20 of 2,500 samples for 25 modes, 63 for 8), or
    ``min_count`` when given (1: the VEEGAN, PacGAN and (alpha_D, alpha_G)-GAN rule). KL is that of the histogram of high-quality samples over the modes. A run is a success
    when all M modes are covered and a failure when none is.
    """
    points = np.asarray(points, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != means.shape[1]:
        raise ValueError(f"expected points of shape (N, {means.shape[1]}), got {points.shape}")
    n, m = len(points), len(means)
    finite = np.isfinite(points).all(axis=1)
    dist = np.linalg.norm(points[:, None, :] - means[None, :, :], axis=2)
    nearest = np.where(finite, np.nan_to_num(dist, nan=np.inf).argmin(axis=1), -1)
    near = finite & (dist.min(axis=1) <= radius_sigmas * sigma)
    counts = np.bincount(nearest[near], minlength=m)
    min_count, why = _min_count(min_count, min_share, n, m)
    rule = (
        f"a sample is high quality within {radius_sigmas:g} sigma (sigma = {sigma:g}) of its "
        f"nearest mode; a mode is covered when it receives at least {min_count} high-quality "
        f"samples ({why}); success: all {m} covered, failure: none"
    )
    hq = float(near.sum() / n) if n else None
    return _coverage("mixture2d", counts, n, min_count, rule, hq_fraction=hq, verdicts=True)

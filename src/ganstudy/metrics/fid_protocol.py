"""The FID protocol: how many images are compared, against which split, with which Inception
block, and the presets a study may choose. Imports nothing heavy, so a study config's FID settings
are checked when the Snakefile is parsed; :mod:`ganstudy.metrics.fid` computes the values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ganstudy.data import registry
from ganstudy.errors import FIDError

# pytorch-fid's InceptionV3.BLOCK_INDEX_BY_DIM keys (a test checks they agree).
DIMS = (64, 192, 768, 2048)
WEIGHTS_ENV = "GANSTUDY_FID_WEIGHTS"
# The name of pytorch-fid's FID_WEIGHTS_URL file, where it looks in $TORCH_HOME/hub/checkpoints.
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass(frozen=True)
class FIDProtocol:
    """How many images are compared, against which split, with which Inception block.

    ``n_reference=None`` means every image of the reference split. A protocol with fewer
    samples than feature dimensions gives singular covariances (rank <= n - 1): it is refused
    unless ``allow_singular`` is set, and then every value carries a flag.
    """

    n_generated: int
    n_reference: int | None
    reference_split: str
    dims: int = 2048
    batch_size: int = 50
    name: str = "full"
    allow_singular: bool = False

    def check(self) -> FIDProtocol:
        if self.dims not in DIMS:
            raise FIDError(
                f"FID dims {self.dims!r} is not allowed; allowed: {', '.join(map(str, DIMS))}"
            )
        for key in ("n_generated", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 2:
                raise FIDError(f"FID {key} {value!r} is not allowed; allowed: an integer >= 2")
        if self.n_reference is not None and self.n_reference < 2:
            raise FIDError(
                f"FID n_reference {self.n_reference!r} is not allowed; allowed: an integer >= 2 "
                "or None (the whole split)"
            )
        flag = singular_flag(self.n_generated, self.n_reference, self.dims)
        if flag and not self.allow_singular:
            raise FIDError(
                f"{flag}; use more samples, fewer dims (one of {', '.join(map(str, DIMS))}) "
                "or allow singular covariances explicitly"
            )
        return self

    def replace(self, **changes) -> FIDProtocol:
        return dataclasses.replace(self, **changes)


def singular_flag(n_generated: int, n_reference: int | None, dims: int) -> str | None:
    """Text explaining a singular covariance, or None: an n-sample covariance has rank <= n - 1,
    so it is singular whenever n <= dims."""
    small = [
        f"{label}={n}"
        for label, n in (("n_generated", n_generated), ("n_reference", n_reference))
        if n is not None and n <= dims
    ]
    if not small:
        return None
    return (
        f"singular covariance: {', '.join(small)} <= dims={dims}; the value is biased and only "
        "comparable with values of identical settings"
    )


def base_protocol(dataset: str) -> FIDProtocol:
    """The literature protocol of a dataset, from its FID reference in the dataset registry."""
    spec = registry.dataset(dataset)
    if spec.fid is None:
        raise FIDError(
            f"FID is not defined for dataset {dataset!r}; datasets with FID: "
            f"{', '.join(with_fid())}"
        )
    ref = spec.fid
    return FIDProtocol(
        n_generated=ref.n_generated, n_reference=ref.n_reference, reference_split=ref.split
    )


def with_fid() -> list[str]:
    """The datasets that have an FID reference."""
    return [name for name, spec in registry.DATASETS.items() if spec.fid is not None]


# A cheaper setting for CPU studies: 192-d features (second max-pool block) of 1,000 vs 1,000
# images, several times faster than pool3 and with non-singular covariances. Never comparable
# with "full" values or with the literature.
PRESETS = {
    "full": {},
    "quick": {"n_generated": 1000, "n_reference": 1000, "dims": 192},
}


def protocol_for(
    dataset: str,
    preset: str = "full",
    n_samples: int | None = None,
    dims: int | None = None,
    allow_singular: bool = False,
) -> FIDProtocol:
    """The FID protocol of a dataset: a preset, optionally with both sample counts set to
    ``n_samples`` and the feature block set by ``dims``; checked before any work starts."""
    base_ = base_protocol(dataset)
    if preset not in PRESETS:
        raise FIDError(f"FID preset {preset!r} is not allowed; allowed: {', '.join(PRESETS)}")
    base = base_.replace(allow_singular=allow_singular)
    protocol = base.replace(name=preset, **PRESETS[preset])
    if n_samples is not None:
        protocol = protocol.replace(n_generated=n_samples, n_reference=n_samples)
    if dims is not None:
        protocol = protocol.replace(dims=dims)
    # Overrides that land on a preset keep its name; anything else is labelled by its settings.
    for name, changes in PRESETS.items():
        if protocol.replace(name=name) == base.replace(name=name, **changes):
            protocol = protocol.replace(name=name)
            break
    else:
        protocol = protocol.replace(name=f"custom-{protocol.dims}d-{protocol.n_generated}")
    return protocol.check()

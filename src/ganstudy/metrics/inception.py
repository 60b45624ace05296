"""pytorch-fid's FID Inception network: its weights file (found, checked by sha256 and named in
every FID's settings) and the network built from it, cached per process."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from pytorch_fid import inception as pt_inception
from pytorch_fid.inception import InceptionV3

from ganstudy.errors import FIDError
from ganstudy.metrics.fid_protocol import WEIGHTS_ENV, WEIGHTS_FILE

WEIGHTS_SHA256_PREFIX = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    sha256: str
    source: str

    @property
    def identity(self) -> str:
        return f"{self.path.name} sha256:{self.sha256}"


def _missing_weights_help() -> str:
    return (
        f"set --fid-weights PATH or ${WEIGHTS_ENV} to a copy of {WEIGHTS_FILE}, or place it in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'} (source: {pt_inception.FID_WEIGHTS_URL})"
    )


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a replaced file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def resolve_weights(path: str | Path | None = None, download: bool = True) -> InceptionWeights:
    """The Inception weights file: ``path`` if given, else ``$GANSTUDY_FID_WEIGHTS``, else
    pytorch-fid's own copy in ``$TORCH_HOME/hub/checkpoints`` (downloaded there if missing)."""
    for candidate, source in ((path, "option"), (os.environ.get(WEIGHTS_ENV), WEIGHTS_ENV)):
        if candidate:
            candidate = Path(candidate).expanduser()
            if not candidate.is_file():
                raise FIDError(
                    f"FID weights file {candidate} (from {source}) does not exist; "
                    + _missing_weights_help()
                )
            return InceptionWeights(candidate, file_sha256(candidate), source)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    if not cached.is_file():
        if not download:
            raise FIDError(
                f"FID weights {WEIGHTS_FILE} are not available; " + _missing_weights_help()
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            # the file name carries the first digits of the original's sha256, as torch.hub's do
            torch.hub.download_url_to_file(
                pt_inception.FID_WEIGHTS_URL, str(cached), hash_prefix=WEIGHTS_SHA256_PREFIX
            )
        except Exception as err:  # noqa: BLE001 - any network failure means the same to a user
            raise FIDError(
                f"cannot download the FID weights {WEIGHTS_FILE} ({err}); "
                + _missing_weights_help()
            ) from err
    return InceptionWeights(cached, file_sha256(cached), "torch hub cache")


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _inception(dims: int, weights_path: str, sha256: str, device: str) -> InceptionV3:
    del sha256  # part of the cache key only
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unreadable file the same way
        raise FIDError(f"FID weights file {weights_path} cannot be read: {err}") from err
    with _BUILD_LOCK:
        original = pt_inception.load_state_dict_from_url
        # pytorch-fid's fid_inception_v3 fetches its weights through this module-level name;
        # answering it with the given file keeps pytorch-fid's network definition untouched.
        pt_inception.load_state_dict_from_url = lambda *args, **kwargs: state
        try:
            model = InceptionV3(
                [InceptionV3.BLOCK_INDEX_BY_DIM[dims]], resize_input=True, normalize_input=True
            )
        except RuntimeError as err:
            raise FIDError(
                f"FID weights file {weights_path} does not hold the FID Inception network: {err}"
            ) from err
        finally:
            pt_inception.load_state_dict_from_url = original
    return model.to(device).eval()


def load_inception(dims: int, weights: InceptionWeights, device: str | torch.device) -> InceptionV3:
    """pytorch-fid's InceptionV3 returning the ``dims``-d block, cached per process."""
    return _inception(dims, str(weights.path), weights.sha256, str(torch.device(device)))

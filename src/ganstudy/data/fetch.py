"""Fetch the raw files of a dataset's source: mirror first, then the official URLs.

For every file of the source (see :mod:`ganstudy.data.sources`), in order:

1. already in ``raw/<key>/`` and verified: kept;
2. found in the mirror directory (``<mirror>/<key>/<file>``, or ``<mirror>/<file>``): copied to a
   temporary name, verified, renamed. A mirror copy that fails verification is an error: a broken
   mirror is reported, never silently bypassed;
3. downloaded from each official URL in turn (urllib, with a timeout) to a temporary name,
   verified, renamed.

Verification: the size when known, then sha256 and md5 when pinned; a file without a published
checksum passes the structural check it names instead and its sha256 is then recorded in
``raw/<key>/SHA256SUMS``, so that a later change of the file is caught. Temporary files are
removed on every failure, so nothing half-written is left and a verified file is never replaced
by a bad one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from ganstudy import store
from ganstudy.data.cats import parse_landmarks
from ganstudy.data.sources import Source, SourceFile, source_for
from ganstudy.errors import FetchError

MIRROR_ENV = "GANSTUDY_MIRROR"
DEFAULT_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_PROGRESS_BYTES = 100 << 20
RECORD = store.FETCH_RECORD


def file_digests(path: Path) -> dict[str, str]:
    """sha256 and md5 of a file, read once in 1 MiB chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _check_cat_zip(path: Path) -> None:
    """A readable zip whose every member passes its CRC and that holds CAT_0N/*.jpg + .cat pairs."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"not a readable zip archive ({err})") from err
    if bad is not None:
        raise ValueError(f"member {bad} fails its CRC check")
    pairs = [n for n in names if n.lower().endswith(".jpg") and n + ".cat" in names]
    if not any(n.split("/")[0].startswith("CAT_") for n in pairs):
        raise ValueError("holds no CAT_0N/<image>.jpg with a matching .jpg.cat landmark file")


def _check_cat_landmarks(path: Path) -> None:
    parse_landmarks(path.read_text(errors="replace"), where=path.name)


# Structural checks for files whose checksum was never published; each raises ValueError.
STRUCTURE_CHECKS: dict[str, Callable[[Path], None]] = {
    "cat_zip": _check_cat_zip,
    "cat_landmarks": _check_cat_landmarks,
}


def read_record(raw_dir: Path) -> dict[str, str]:
    """The recorded sha256 of each fetched file (``<sha256>  <name>`` lines)."""
    path = raw_dir / RECORD
    if not path.is_file():
        return {}
    record = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            record[name] = digest
    return record


def _write_record(raw_dir: Path, record: dict[str, str]) -> None:
    tmp = raw_dir / f".{RECORD}.tmp-{os.getpid()}"
    tmp.write_text("".join(f"{record[n]}  {n}\n" for n in sorted(record)))
    os.replace(tmp, raw_dir / RECORD)


def verify(path: Path, spec: SourceFile, recorded: str | None = None) -> str:
    """Check a file against its declaration and return its sha256; ValueError says what is wrong.

    Pinned files must match size, sha256 and md5 as declared. Unpinned files must match the
    sha256 recorded at their first fetch if there is one, else pass their structural check.
    """
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        kind = "truncated" if size < spec.size else "too long"
        raise ValueError(f"{kind}: {size} bytes, expected {spec.size}")
    digests = file_digests(path)
    for algo in ("sha256", "md5"):
        want = getattr(spec, algo)
        if want is not None and digests[algo] != want:
            raise ValueError(f"checksum mismatch: {algo} {digests[algo]}, expected {want}")
    if not spec.pinned:
        if recorded is not None:
            if digests["sha256"] != recorded:
                raise ValueError(
                    f"changed since first fetched: sha256 {digests['sha256']}, recorded {recorded}"
                )
        elif spec.structure is not None:
            STRUCTURE_CHECKS[spec.structure](path)
    return digests["sha256"]


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror directory: the argument, else $GANSTUDY_MIRROR, else none."""
    origin = "mirror"
    if mirror is None or str(mirror) == "":
        mirror, origin = os.environ.get(MIRROR_ENV) or None, f"${MIRROR_ENV}"
    if mirror is None:
        return None
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise FetchError(f"{origin} {str(mirror)!r} is not a directory")
    return path


def _mirror_candidates(mirror: Path, source: Source, spec: SourceFile) -> list[Path]:
    return [mirror / source.key / spec.name, mirror / spec.name]


def _tmp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part-{os.getpid()}")


def _install(dest: Path, spec: SourceFile, fill: Callable[[Path], None]) -> str:
    """Write into a temporary name with ``fill``, verify, rename onto ``dest``; clean up on failure."""
    tmp = _tmp_name(dest)
    try:
        fill(tmp)
        digest = verify(tmp, spec)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _download_to(url: str, tmp: Path, timeout: float, log: Callable[[str], None]) -> None:
    from ganstudy import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"ganstudy/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
        announced = response.headers.get("Content-Length")
        received, reported = 0, 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            if received - reported >= _PROGRESS_BYTES:
                reported = received
                total = f" of {int(announced) / 1e6:.0f}" if announced else ""
                log(f"  {received / 1e6:.0f}{total} MB")
    # http.client ends a short body quietly; the announced length is the only witness.
    if announced is not None and received != int(announced):
        raise ValueError(f"truncated: received {received} of {announced} bytes")


def _mirror_hint(source: Source, spec: SourceFile, mirror: Path | None) -> str:
    where = f"<MIRROR>/{source.key}/{spec.name}"
    looked = (
        f"It is not in the mirror {mirror} (looked for {mirror / source.key / spec.name}). "
        if mirror is not None
        else ""
    )
    return (
        f"{looked}To fetch without network, put a copy at {where} and pass --mirror MIRROR "
        f"(or set ${MIRROR_ENV}=MIRROR, or the run config key dataset.mirror)."
    )


def fetch_file(
    source: Source,
    spec: SourceFile,
    raw_dir: Path,
    mirror: Path | None,
    timeout: float = DEFAULT_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> str:
    """Make ``raw_dir/<file>`` a verified copy of one source file; return its sha256."""
    log = log or _log
    dest = raw_dir / spec.name
    record = read_record(raw_dir)
    if dest.is_file():
        try:
            return verify(dest, spec, record.get(spec.name))
        except ValueError as err:
            log(f"{dest} fails verification ({err}); fetching it again")
    if mirror is not None:
        for candidate in _mirror_candidates(mirror, source, spec):
            if candidate.is_file():
                log(f"copying {candidate} -> {dest}")
                try:
                    return _install(dest, spec, lambda tmp, c=candidate: shutil.copyfile(c, tmp))
                except ValueError as err:
                    raise FetchError(
                        f"mirror file {candidate} for {source.key}/{spec.name} is rejected: {err}. "
                        f"Replace it with a good copy (official URL: "
                        f"{spec.urls[0] if spec.urls else source.homepage})."
                    ) from err
    if not spec.urls:
        raise FetchError(
            f"{source.key}/{spec.name} has no public download URL (homepage: {source.homepage}). "
            + _mirror_hint(source, spec, mirror)
        )
    failures = []
    for url in spec.urls:
        log(f"downloading {url} -> {dest}")
        try:
            return _install(dest, spec, lambda tmp, u=url: _download_to(u, tmp, timeout, log))
        except (urllib.error.URLError, OSError, ValueError) as err:
            failures.append(f"  {url}: {err}")
    raise FetchError(
        f"could not fetch {source.key}/{spec.name}:\n"
        + "\n".join(failures)
        + "\n"
        + _mirror_hint(source, spec, mirror)
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raw_dir_for(name: str, data_root: str | os.PathLike) -> Path | None:
    source = source_for(name)
    return None if source is None else store.DataRoot(data_root).raw(source.key)


def fetch(
    name: str,
    data_root: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Path | None:
    """Fetch and verify every raw file of dataset ``name``; return ``raw/<key>/`` (None: no files).

    The mirror and the dataset name are checked before anything is written.
    """
    source = source_for(name)
    mirror_dir = resolve_mirror(mirror)
    if source is None:
        return None
    raw_dir = store.DataRoot(data_root).raw(source.key)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for spec in source.files:
        digest = fetch_file(source, spec, raw_dir, mirror_dir, timeout, log)
        record = read_record(raw_dir)
        if record.get(spec.name) != digest:
            record[spec.name] = digest
            _write_record(raw_dir, record)
    return raw_dir


def fetched_files(name: str, data_root: str | os.PathLike) -> tuple[int, int]:
    """(files present in raw/, files declared) for a dataset; presence only, nothing is hashed."""
    source = source_for(name)
    if source is None:
        return (0, 0)
    raw_dir = store.DataRoot(data_root).raw(source.key)
    return (sum((raw_dir / f.name).is_file() for f in source.files), len(source.files))

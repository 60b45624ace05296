"""Fetching: declared checksums, the mirror, and the real download code against local servers."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from ganstudy.data.fetch import (
    MIRROR_ENV,
    FetchError,
    fetch,
    fetch_file,
    read_record,
    verify,
)
from ganstudy.data.registry import DATASETS
from ganstudy.data.sources import SOURCES, Source, SourceFile
from ganstudy.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MIRROR = SHARED / "datasets"
MIRRORED = ("mnist", "fashion-mnist", "cat-faces-64x64-spandan2")


@pytest.fixture
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"no dataset mirror at {MIRROR}")
    return MIRROR


def _quiet(_message: str) -> None:
    pass


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a fetch may have left behind (there must be none)."""
    return sorted(p.name for p in folder.rglob(".*") if ".part-" in p.name or ".tmp-" in p.name)


@pytest.mark.parametrize("key", MIRRORED)
def test_mirror_files_match_the_declared_checksums(mirror, key):
    source = SOURCES[key]
    # The mirror's own SHA256SUMS and our declarations agree, and the bytes match both.
    listed = dict(
        reversed(line.split()) for line in (mirror / key / "SHA256SUMS").read_text().splitlines()
    )
    for spec in source.files:
        path = mirror / key / spec.name
        assert listed[spec.name] == spec.sha256
        assert verify(path, spec) == spec.sha256
        assert hashlib.md5(path.read_bytes()).hexdigest() == spec.md5


def test_every_dataset_with_files_declares_urls_and_checksums_or_says_why_not():
    for name, dataset in DATASETS.items():
        key = dataset.source
        if key is None:
            continue
        source = SOURCES[key]
        for spec in source.files:
            assert spec.pinned or spec.structure is not None, (name, spec.name)
            assert spec.urls or source.note, (name, spec.name)
    # Torchvision's md5s, as its MNIST/FashionMNIST classes check them.
    import torchvision.datasets as tvd

    for cls, key in ((tvd.MNIST, "mnist"), (tvd.FashionMNIST, "fashion-mnist")):
        assert dict(cls.resources) == {f.name: f.md5 for f in SOURCES[key].files}
    assert not SOURCES["cat-dataset"].pinned


def test_fetch_copies_from_the_mirror_and_records_checksums(mirror, tmp_path):
    raw = fetch("mnist", tmp_path / "data", mirror, log=_quiet)
    assert raw == tmp_path / "data" / "raw" / "mnist"
    source = SOURCES["mnist"]
    for spec in source.files:
        assert (raw / spec.name).stat().st_size == spec.size
    assert read_record(raw) == {f.name: f.sha256 for f in source.files}
    assert _leftovers(raw) == []
    # Fetched files are verified and kept: no mirror or network needed the second time.
    assert fetch("stacked_mnist", tmp_path / "data", None, log=_quiet) == raw


def test_mirror_comes_from_the_environment(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    raw = fetch("fashion_mnist", tmp_path / "data", log=_quiet)
    assert len(read_record(raw)) == 4


def _broken_mirror(mirror: Path, tmp_path: Path, damage) -> tuple[Path, SourceFile]:
    fake = tmp_path / "mirror"
    shutil.copytree(mirror / "mnist", fake / "mnist")
    spec = SOURCES["mnist"].file("train-labels-idx1-ubyte.gz")
    target = fake / "mnist" / spec.name
    target.chmod(0o644)
    damage(target)
    return fake, spec


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(
    ("damage", "reason"), [(_flip_a_byte, "checksum mismatch"), (_truncate, "truncated")]
)
def test_a_damaged_mirror_file_is_rejected_and_leaves_nothing(mirror, tmp_path, damage, reason):
    fake, spec = _broken_mirror(mirror, tmp_path, damage)
    raw = tmp_path / "data" / "raw" / "mnist"
    with pytest.raises(FetchError) as err:
        fetch("mnist", tmp_path / "data", fake, log=_quiet)
    message = str(err.value)
    assert str(fake / "mnist" / spec.name) in message
    assert reason in message
    assert not (raw / spec.name).exists()
    assert _leftovers(tmp_path / "data") == []
    # Files fetched before the bad one are complete and recorded.
    assert set(read_record(raw)) == {"train-images-idx3-ubyte.gz"}


def test_a_verified_raw_file_is_not_replaced_by_a_bad_mirror_copy(mirror, tmp_path):
    fetch("mnist", tmp_path / "data", mirror, log=_quiet)
    fake, spec = _broken_mirror(mirror, tmp_path, _flip_a_byte)
    raw_file = tmp_path / "data" / "raw" / "mnist" / spec.name
    before = raw_file.read_bytes()
    fetch("mnist", tmp_path / "data", fake, log=_quiet)  # the verified copy is kept
    assert raw_file.read_bytes() == before


def test_bad_input_is_reported_before_anything_is_written(tmp_path):
    with pytest.raises(FetchError, match="is not a directory"):
        fetch("mnist", tmp_path / "data", tmp_path / "no-such-mirror")
    with pytest.raises(ConfigError, match="unknown dataset 'mnsit'.*allowed: .*mnist"):
        fetch("mnsit", tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert fetch("ring8", tmp_path / "data") is None


# --- the download path, against local files and a local HTTP server ---------------------------

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, just over one read chunk


def _spec(urls: tuple[str, ...], payload: bytes = PAYLOAD) -> SourceFile:
    return SourceFile(
        "payload.bin",
        urls,
        sha256=hashlib.sha256(payload).hexdigest(),
        md5=hashlib.md5(payload).hexdigest(),
        size=len(payload),
    )


def _source(spec: SourceFile) -> Source:
    return Source("local", "local test source", "http://127.0.0.1/", "-", (spec,))


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good: the payload; /corrupt: same length, one byte changed; /truncated: half the bytes
    after announcing all of them, then the connection closes."""

    def do_GET(self):  # noqa: N802 - the http.server API
        body = PAYLOAD
        if self.path == "/corrupt":
            body = PAYLOAD[:-1] + b"\x00"
        if self.path not in ("/good", "/corrupt", "/truncated"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path == "/truncated" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_over_http_is_verified_and_renamed(server, tmp_path):
    spec = _spec((f"{server}/good",))
    digest = fetch_file(_source(spec), spec, tmp_path, None, timeout=10, log=_quiet)
    assert digest == spec.sha256
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == []


def test_download_from_a_file_url(tmp_path):
    origin = tmp_path / "origin" / "payload.bin"
    origin.parent.mkdir()
    origin.write_bytes(PAYLOAD)
    spec = _spec((origin.as_uri(),))
    (tmp_path / "raw").mkdir()
    fetch_file(_source(spec), spec, tmp_path / "raw", None, timeout=10, log=_quiet)
    assert (tmp_path / "raw" / "payload.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/corrupt", "checksum mismatch"), ("/truncated", "truncated"), ("/missing", "404")],
)
def test_a_bad_download_is_reported_and_leaves_nothing(server, tmp_path, path, reason):
    url = f"{server}{path}"
    spec = _spec((url,))
    with pytest.raises(FetchError) as err:
        fetch_file(_source(spec), spec, tmp_path, None, timeout=10, log=_quiet)
    message = str(err.value)
    assert "payload.bin" in message and url in message and reason in message
    assert "--mirror" in message and MIRROR_ENV in message
    assert list(tmp_path.iterdir()) == []


def test_no_network_names_the_url_and_the_mirror_option(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/payload.bin"
    spec = _spec((url,))
    mirror_dir = tmp_path / "empty-mirror"
    mirror_dir.mkdir()
    (tmp_path / "raw").mkdir()
    with pytest.raises(FetchError) as err:
        fetch_file(_source(spec), spec, tmp_path / "raw", mirror_dir, timeout=5, log=_quiet)
    message = str(err.value)
    assert url in message and "<MIRROR>/local/payload.bin" in message
    assert str(mirror_dir / "local" / "payload.bin") in message
    assert list((tmp_path / "raw").iterdir()) == []


def test_the_next_url_is_tried_after_a_failure(server, tmp_path):
    spec = _spec((f"{server}/truncated", f"{server}/good"))
    fetch_file(_source(spec), spec, tmp_path, None, timeout=10, log=_quiet)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_file_without_url_asks_for_a_mirror(tmp_path):
    source = SOURCES["cat-faces-64x64-spandan2"]
    with pytest.raises(FetchError, match="no public download URL.*--mirror"):
        fetch_file(source, source.files[0], tmp_path, None, log=_quiet)


# --- files without a published checksum: structural checks, then the recorded sha256 ----------


def _cat_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("CAT_00/00000001_000.jpg", b"\xff\xd8 not really a jpeg")
        archive.writestr("CAT_00/00000001_000.jpg.cat", "9 " + "10 10 " * 9)


def test_unpinned_zip_is_checked_structurally_then_pinned_by_its_record(tmp_path):
    mirror_dir = tmp_path / "mirror" / "local"
    mirror_dir.mkdir(parents=True)
    _cat_zip(mirror_dir / "CAT_DATASET_01.zip")
    spec = SourceFile("CAT_DATASET_01.zip", (), structure="cat_zip")
    source = Source("local", "local", "-", "-", (spec,))
    raw = tmp_path / "raw"
    raw.mkdir()
    digest = fetch_file(source, spec, raw, tmp_path / "mirror", log=_quiet)
    assert digest == hashlib.sha256((raw / spec.name).read_bytes()).hexdigest()

    # A truncated zip fails the structural check.
    data = (mirror_dir / spec.name).read_bytes()
    (mirror_dir / spec.name).write_bytes(data[: len(data) // 2])
    (raw / spec.name).unlink()
    with pytest.raises(FetchError, match="not a readable zip"):
        fetch_file(source, spec, raw, tmp_path / "mirror", log=_quiet)
    assert list(raw.iterdir()) == []

    # Once a sha256 is recorded, a structurally valid but different file is refused.
    with zipfile.ZipFile(mirror_dir / spec.name, "w") as archive:
        archive.writestr("CAT_01/x.jpg", b"other")
        archive.writestr("CAT_01/x.jpg.cat", "9 " + "1 1 " * 9)
    with pytest.raises(ValueError, match="changed since first fetched"):
        verify(mirror_dir / spec.name, spec, recorded=digest)

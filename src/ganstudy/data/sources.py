"""Where each dataset comes from: official URLs and the expected checksum of every file.

A :class:`Source` is a set of files kept together in one folder, ``raw/<key>/`` under the data
root and ``<mirror>/<key>/`` in a mirror directory (so a fetched ``raw/`` is itself a valid
mirror for another machine). Several datasets may share a source (``mnist`` and
``stacked_mnist``); the 2D mixtures have none. Each dataset names its source in
:data:`ganstudy.data.registry.DATASETS`.

A file with a pinned checksum (sha256 and/or md5) is accepted only with that checksum. A file
whose checksum was never published (the CAT dataset zips) is marked ``structure``: it is checked
by the named structural test in :mod:`ganstudy.data.fetch` instead, and its sha256 is recorded on the
first fetch so that later changes are noticed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganstudy.data import registry


@dataclass(frozen=True)
class SourceFile:
    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    # Name of a structural check (fetch.STRUCTURE_CHECKS) for files without a pinned checksum.
    structure: str | None = None

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None or self.md5 is not None


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    homepage: str
    citation: str
    files: tuple[SourceFile, ...]
    note: str = ""

    @property
    def pinned(self) -> bool:
        return all(f.pinned for f in self.files)

    def file(self, name: str) -> SourceFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"{name!r} is not a file of source {self.key}")


def _idx_files(bases: tuple[str, ...], table: tuple[tuple[str, str, str, int], ...]):
    return tuple(
        SourceFile(name, tuple(base + name for base in bases), sha256=sha, md5=md5, size=size)
        for name, md5, sha, size in table
    )


# torchvision's download URLs and md5s; sha256 and sizes computed from byte-identical copies.
_MNIST_BASES = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_BASES = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_ARCHIVE = "https://archive.org/download/CAT_DATASET/"

SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source(
            key="mnist",
            title="MNIST handwritten digits",
            homepage="http://yann.lecun.com/exdb/mnist/",
            citation="LeCun, Bottou, Bengio, Haffner 1998",
            files=_idx_files(
                _MNIST_BASES,
                (
                    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
                    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
                    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
                    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
                ),
            ),
        ),
        Source(
            key="fashion-mnist",
            title="Fashion-MNIST",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            citation="Xiao, Rasul, Vollgraf 2017",
            files=_idx_files(
                _FASHION_BASES,
                (
                    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
                    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
                    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
                    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
                ),
            ),
        ),
        Source(
            key="cat-dataset",
            title="CAT dataset: ~10k cat photos with 9 head landmarks each",
            homepage="https://archive.org/details/CAT_DATASET",
            citation="Zhang, Sun, Tang 2008, Cat head detection (ECCV)",
            files=(
                SourceFile("CAT_DATASET_01.zip", (_ARCHIVE + "CAT_DATASET_01.zip",), structure="cat_zip"),
                SourceFile("CAT_DATASET_02.zip", (_ARCHIVE + "CAT_DATASET_02.zip",), structure="cat_zip"),
                # A landmark file published beside the zips as a correction: it replaces
                # 00000003_015.jpg.cat of the zips (see cats.CORRECTIONS).
                SourceFile(
                    "00000003_015.jpg.cat", (_ARCHIVE + "00000003_015.jpg.cat",),
                    structure="cat_landmarks",
                ),
            ),
            note=(
                "No checksum of these files has been published; they are unpinned: each zip is "
                "checked structurally (readable archive, CRC of every member, CAT_0N/*.jpg with "
                "matching .cat files) and its sha256 is recorded on first fetch."
            ),
        ),
        Source(
            key="cat-faces-64x64-spandan2",
            title="cats faces 64x64 for generative models (15,747 aligned 64x64 cat faces)",
            homepage="https://www.kaggle.com/datasets/spandan2/cats-faces-64x64-for-generative-models",
            citation="public Kaggle dataset 'spandan2/cats-faces-64x64-for-generative-models'",
            files=(
                SourceFile(
                    "cat-faces-64x64-spandan2.tar.gz", (),
                    sha256="782ddccbfa821aa33c0073e1fb626243c44f76b927a84be6b3e2957775300b96",
                    md5="d14b4fc02c77708891686ea23bec741b",
                    size=41237305,
                ),
            ),
            note=(
                "Not the CAT dataset. The publisher's download needs a signed-in account, so this "
                "pinned archive (cats/<n>.jpg) has no public URL: it is taken from a mirror."
            ),
        ),
    )
}  # fmt: skip


def source_for(name: str) -> Source | None:
    """The source of a dataset (None for the 2D mixtures); unknown names raise ConfigError."""
    key = registry.dataset(name).source
    return None if key is None else SOURCES[key]

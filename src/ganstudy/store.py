"""Where things are on disk: every name of the record (run and results directories, the data
root, the files in them) is formatted, parsed and read here only; the package, the Snakemake
rules, the benchmarks and the scripts take them from this module.

One run is one dataset x arch x loss x bn setting x seed; :class:`RunKey` formats its directory
``runs/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>`` (relative to the results directory)
and parses it back. The ``<loss>`` segment is the run's arm: the loss name, or the name a study
gives a loss trained with settings of its own (the run config's ``arm``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from ganstudy import atomic, dirlock
from ganstudy.errors import ConfigError

# Files of a run directory.
CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "log.csv"
FINAL = "final.pt"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
FID_CURVE = "fid_curve.csv"
EVAL = "eval.json"
SAMPLE_GRID = "samples.png"
SAMPLES_2D = "samples2d.csv"
# checkpoints/ and samples/ hold one file per step: step_<8 digits><suffix> (see step_file).
STEP_PREFIX = "step_"
CHECKPOINT_SUFFIX = ".pt"
SAMPLE_IMAGE_SUFFIX = ".png"

# Files of a results directory.
RUNS = "runs"
DESIGN = "design.csv"
COMPARISONS = "comparisons.csv"
SUMMARY = "summary.csv"
STUDY_CONFIG = "study.yaml"
RUN_CONFIGS = "configs"
LOOKS = "looks"  # looks/look-<k>.json: a sequential study's decision after each wave
LOOK_FORMAT = "ganstudy-look-1"

# Format tags of the files other stages read.
EVAL_FORMAT = "ganstudy-eval-1"

# The columns of design.csv: one row per run the study asks for.
DESIGN_COLUMNS = ("dataset", "arch", "loss", "bn_g", "bn_d", "seed", "run_dir")

# The columns of a run's log.csv: one row every ``train.log_every`` steps (``time``: the row's
# unix time).
LOG_FIELDS = [
    "step", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d", "lr_d",
    "member_images_per_s", "wall_s", "time",
]  # fmt: skip
# The columns of log.csv that are MLflow metrics (time is their timestamp).
LOGGED_METRICS = LOG_FIELDS[1:9]

SEED_PREFIX = "seed"  # runs/<variant>/seed<S>
_NAME = r"[^/]+"
RUN_DIR_FORM = f"{RUNS}/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>"
RUN_DIR_PATTERN = re.compile(
    rf"{RUNS}/(?P<dataset>{_NAME})/(?P<arch>{_NAME})/(?P<loss>{_NAME})/"
    rf"bn-g(?P<bn_g>[01])-d(?P<bn_d>[01])/{SEED_PREFIX}(?P<seed>\d+)$"
)


def step_file(step: int, suffix: str) -> str:
    """``step_<8 digits><suffix>``: a step's checkpoint or sample image (sorts by step)."""
    return f"{STEP_PREFIX}{step:08d}{suffix}"


def step_of(name: str, suffix: str) -> int | None:
    """The step of a file named by :func:`step_file` with ``suffix``; None for any other name."""
    match = re.fullmatch(rf"{STEP_PREFIX}(\d{{8}}){re.escape(suffix)}", name)
    return int(match.group(1)) if match else None


def bn_label(bn_g: bool, bn_d: bool) -> str:
    """``bn-g<0|1>-d<0|1>``: the batch-norm setting as it appears in paths and tables."""
    return f"bn-g{int(bn_g)}-d{int(bn_d)}"


@dataclass(frozen=True)
class VariantKey:
    """One dataset x arch x loss x bn setting: the parent of its seeds' run directories."""

    dataset: str
    arch: str
    loss: str
    bn_g: bool
    bn_d: bool

    @property
    def path(self) -> str:
        """``<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>``, relative to ``runs/``."""
        return f"{self.dataset}/{self.arch}/{self.loss}/{bn_label(self.bn_g, self.bn_d)}"

    def run(self, seed: int) -> RunKey:
        return RunKey(self.dataset, self.arch, self.loss, self.bn_g, self.bn_d, seed)

    @property
    def run_dir_pattern(self) -> str:
        """Its seeds' run directories with ``{seed}`` for the seed (``ganstudy train --out``),
        relative to the results directory."""
        return f"{RUNS}/{self.path}/{SEED_PREFIX}{{seed}}"


@dataclass(frozen=True)
class RunKey:
    """One run: formats and parses its directory relative to the results directory."""

    dataset: str
    arch: str
    loss: str
    bn_g: bool
    bn_d: bool
    seed: int

    @property
    def variant(self) -> VariantKey:
        return VariantKey(self.dataset, self.arch, self.loss, self.bn_g, self.bn_d)

    @property
    def name(self) -> str:
        """``<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>``: the run's name everywhere."""
        return f"{self.variant.path}/{SEED_PREFIX}{self.seed}"

    @property
    def run_dir(self) -> str:
        """The run directory relative to the results directory."""
        return f"{RUNS}/{self.name}"

    @classmethod
    def parse(cls, run_dir: str) -> RunKey:
        """The key of a run directory (relative to the results directory, or ending in one)."""
        text = PurePosixPath(str(run_dir).replace("\\", "/")).as_posix()
        match = RUN_DIR_PATTERN.search(text)
        if match is None:
            raise ValueError(f"{run_dir!r} is not a run directory of the form {RUN_DIR_FORM}")
        g = match.groupdict()
        return cls(
            g["dataset"], g["arch"], g["loss"], g["bn_g"] == "1", g["bn_d"] == "1", int(g["seed"])
        )

    @classmethod
    def of_config(cls, cfg: Any) -> RunKey:
        """The key of a run config (a ``RunConfig``): its arm, else its loss, names the run."""
        arm = cfg.arm or cfg.loss.name
        return cls(cfg.dataset.name, cfg.arch.name, arm, cfg.arch.bn.g, cfg.arch.bn.d, cfg.seed)

    def design_row(self) -> dict[str, Any]:
        """This run's row of design.csv."""
        values = (self.dataset, self.arch, self.loss, int(self.bn_g), int(self.bn_d), self.seed)
        return dict(zip(DESIGN_COLUMNS, (*values, self.run_dir), strict=True))


# ---------------------------------------------------------------------------------------------
# Folders of a data root (``data.root``)

RAW = "raw"  # raw/<source>/: fetched files and their SHA256SUMS record
FETCH_RECORD = "SHA256SUMS"
PREPARED = "prepared"  # prepared/<dataset>/: <split>.pt tensors and manifest.json
SPLIT_SUFFIX = ".pt"
MANIFEST = "manifest.json"
CLASSIFIERS = "classifiers"  # classifiers/<dataset>.pt
FID_STATS = "fid_stats"  # fid_stats/<dataset>-<protocol>.json receipts and .npz statistics
FID_STATISTICS_SUFFIX = ".npz"

# The seed chunk of a training job in names of logs and MLflow tags: seeds-<seeds>.
SEEDS_PREFIX = "seeds-"


class Status(str, Enum):
    """A run's status in metrics.json (and MLflow's ``status`` tag)."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    COMPLETED = "completed"
    DIVERGED = "diverged"

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.COMPLETED, Status.DIVERGED)
# A run's state in summary.csv: its status, or what its files lack.
NOT_EVALUATED = "not evaluated"
MISSING = "missing"
STATES = (
    Status.COMPLETED.value, Status.DIVERGED.value, NOT_EVALUATED, MISSING,
    Status.INTERRUPTED.value, Status.RUNNING.value,
)  # fmt: skip


def job_label(variant_path: str, seeds: str) -> str:
    """``<variant>/seeds-<seeds>``: a training job's name in log paths and MLflow tags."""
    return f"{variant_path}/{SEEDS_PREFIX}{seeds}"


@dataclass(frozen=True)
class DataRoot:
    """A data root's paths (``root``: as given, relative or absolute)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def raw(self, source: str) -> Path:
        return self.root / RAW / source

    def fetch_record(self, source: str) -> Path:
        return self.raw(source) / FETCH_RECORD

    def prepared(self, dataset: str) -> Path:
        return self.root / PREPARED / dataset

    def manifest(self, dataset: str) -> Path:
        return self.prepared(dataset) / MANIFEST

    def prepared_split(self, dataset: str, split: str) -> Path:
        return self.prepared(dataset) / split_file(split)

    def prepared_count(self, dataset: str, split: str) -> int | None:
        """Images of a prepared split, from its manifest; None where it is not prepared."""
        if (manifest := read_record(self.manifest(dataset), missing_ok=True)) is None:
            return None
        count = (manifest.get("splits") or {}).get(split, {}).get("count")
        if not isinstance(count, int):
            raise ConfigError(f"{self.manifest(dataset)}: no image count of split {split!r}")
        return count

    def classifier(self, dataset: str) -> Path:
        return self.root / CLASSIFIERS / f"{dataset}.pt"

    @property
    def fid_stats(self) -> Path:
        return self.root / FID_STATS

    def fid_receipt(self, dataset: str, protocol: str) -> Path:
        return self.fid_stats / f"{dataset}-{protocol}.json"

    def fid_statistics(self, dataset: str, split: str, dims: int, n: int, sha: str) -> Path:
        # The weights' sha256 is in the name: other weights give other statistics.
        name = f"{dataset}-{split}-{dims}-{n}-{sha[:12]}{FID_STATISTICS_SUFFIX}"
        return self.fid_stats / name


def split_file(split: str) -> str:
    return f"{split}{SPLIT_SUFFIX}"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    config = property(lambda self: self.path / CONFIG)
    metrics = property(lambda self: self.path / METRICS)
    log = property(lambda self: self.path / LOG)
    final = property(lambda self: self.path / FINAL)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    samples = property(lambda self: self.path / SAMPLES)
    fid_curve = property(lambda self: self.path / FID_CURVE)
    eval = property(lambda self: self.path / EVAL)
    sample_grid = property(lambda self: self.path / SAMPLE_GRID)
    samples_2d = property(lambda self: self.path / SAMPLES_2D)

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_file(step, CHECKPOINT_SUFFIX)

    def sample_image(self, step: int) -> Path:
        return self.samples / step_file(step, SAMPLE_IMAGE_SUFFIX)


@dataclass(frozen=True)
class ResultsDir:
    """A results directory's record files and run directories."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    design = property(lambda self: self.root / DESIGN)
    summary = property(lambda self: self.root / SUMMARY)
    comparisons = property(lambda self: self.root / COMPARISONS)
    study_config = property(lambda self: self.root / STUDY_CONFIG)
    run_configs = property(lambda self: self.root / RUN_CONFIGS)
    runs = property(lambda self: self.root / RUNS)
    looks = property(lambda self: self.root / LOOKS)

    def look(self, k: int | str) -> Path:
        """The record of look ``k`` (1-based; "{look}": the workflow's wildcard)."""
        return self.looks / f"look-{k}.json"

    def look_ledger(self, k: int) -> Path:
        """The copy of look ``k``'s decision that no rule owns: a rerun whose job would rewrite
        look-<k>.json takes the decision from here instead of deciding again."""
        return self.looks / ".decided" / f"look-{k}.json"

    def latest_look(self) -> tuple[int, Path] | None:
        """(k, path) of the highest-numbered look record, or None."""
        numbers = [(p.stem.removeprefix("look-"), p) for p in self.looks.glob("look-*.json")]
        found = [(int(k), p) for k, p in numbers if k.isdigit()]
        return max(found) if found else None

    def run_config(self, variant_path: str) -> Path:
        return self.run_configs / f"{variant_path}.yaml"

    def run(self, run: RunKey | str) -> RunDir:
        rel = run.run_dir if isinstance(run, RunKey) else run
        return RunDir(self.root / rel)

    def find_runs(self) -> tuple[list[tuple[RunKey, RunDir]], list[Path]]:
        """(runs, strays): every directory under runs/ whose path is a run's (at whatever depth
        the pattern has; sorted), and the leaf directories that are not part of one (stray
        copies, to be named rather than dropped silently)."""
        runs: list[tuple[RunKey, RunDir]] = []
        strays: list[Path] = []
        if not self.runs.is_dir():
            return runs, strays
        for folder, subdirs, _ in os.walk(self.runs):
            path = Path(folder)
            rel = path.relative_to(self.root).as_posix()
            if RUN_DIR_PATTERN.fullmatch(rel):
                runs.append((RunKey.parse(rel), RunDir(path)))
                subdirs.clear()  # checkpoints/, samples/ belong to the run
            elif not subdirs and path != self.runs:
                strays.append(path)
            subdirs.sort()
        return sorted(runs, key=lambda r: str(r[1].path)), sorted(strays)


# ---------------------------------------------------------------------------------------------
# JSON records (metrics.json, eval.json): one reader and one atomic writer


def read_record(path: str | Path, missing_ok: bool = False) -> dict[str, Any] | None:
    """The JSON object in ``path``; None for a missing file where ``missing_ok``. A file that
    is missing (otherwise), unreadable, not JSON or not an object is a ConfigError naming it."""
    path = Path(path)
    if missing_ok and not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    return parse_json_object(text, str(path))


def parse_json_object(text: str, source: str) -> dict[str, Any]:
    """The JSON object in ``text`` read from ``source`` (a file or an option, for messages)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    return doc


def write_record(path: str | Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written under a temporary name and renamed into place."""
    atomic.write_json(path, data)


# ---------------------------------------------------------------------------------------------
# One writer per run directory

WRITER_LOCK = ".writer.lock"  # in every run directory; records who holds it
RunDirBusy = dirlock.Busy


def writing(run_dirs: list[str | Path], purpose: str, create: bool = True):
    """Hold the writer lock (:data:`WRITER_LOCK`) of every directory of ``run_dirs`` while the
    block writes into them; ``purpose`` ("training", "evaluation") names the holder; missing
    directories are created, or skipped with ``create=False`` (for the caller to refuse). A
    directory in use is refused at once with :class:`RunDirBusy` naming it and its holder, and
    nothing is left behind (see :mod:`ganstudy.dirlock`)."""
    return dirlock.holding(run_dirs, WRITER_LOCK, purpose, create)

"""The report's figures and every run's samples as PNG files beside the HTML page.

The HTML report embeds its figures; ``ganstudy report --figures DIR --samples DIR`` also writes
them as files, to browse apart from the page (the workflow marks both folders for the archive of
``snakemake --report``). ``write_figures`` writes the figures the report's sections handed over
by name (the answer's forest plots: ``forest.png``). ``write_samples`` writes one file per run,
named after the run, ``<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>.png``: the 8x8 grid of
images that evaluation drew from the final generator (copied), or for a 2D mixture the
generated points of samples2d.csv (those the mode metrics measured) over the mixture's means
(drawn). A run without samples (not
evaluated yet, or a diverged generator that gave no finite sample) has no file. Files are written
one by one, each atomically; a file of an earlier export that this one does not write is left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganstudy import atomic, store
from ganstudy.data.registry import DATASETS
from ganstudy.errors import ConfigError
from ganstudy.report import figures
from ganstudy.report.inputs import ReportInputs, read_run_csvs
from ganstudy.report.results import PNG_SIGNATURE, scatter_title


def _folder(path: str | Path, option: str) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give the folder to write the figures to")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_figures(files: dict[str, bytes], folder: str | Path) -> list[Path]:
    """Write each figure of ``files`` (name -> PNG bytes) into ``folder``; the paths written."""
    folder = _folder(folder, "--figures")
    written = []
    for name, data in sorted(files.items()):
        atomic.write_bytes(folder / name, data)
        written.append(folder / name)
    return written


def sample_png(study: ReportInputs, row) -> bytes | None:
    """The PNG of a run's samples (a summary row), or None where it has none."""
    grid = study.run_path(row, store.SAMPLE_GRID)
    if grid.is_file():
        data = grid.read_bytes()
        return data if data.startswith(PNG_SIGNATURE) else None
    mixture = getattr(DATASETS.get(row.dataset), "mixture", None)
    if mixture is None or not study.run_path(row, store.SAMPLES_2D).is_file():
        return None
    run = study.runs[study.runs["run_dir"] == row.run_dir]
    points = read_run_csvs(study, run, store.SAMPLES_2D, ["x", "y"])
    if points.empty:
        return None
    key = (row.variant, row.loss_label)
    return figures.scatter2d({key: points}, np.array(mixture.means), {key: scatter_title(row)})


def write_samples(study: ReportInputs, folder: str | Path) -> list[Path]:
    """Write every run's samples into ``folder``, one PNG named after the run; the paths."""
    folder = _folder(folder, "--samples")
    written = []
    for row in study.runs.sort_values("run_dir").itertuples():
        data = sample_png(study, row)
        if data is None:
            continue
        path = folder / f"{store.RunKey.parse(row.run_dir).name}.png"
        atomic.write_bytes(path, data)
        written.append(path)
    return written

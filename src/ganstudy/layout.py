"""Where things are on disk: run directories, the files a run holds, the study's record files.

One run is one dataset x arch x loss x bn setting x seed; :class:`RunKey` formats its directory
``runs/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>`` (relative to the results directory)
and parses it back. The ``<loss>`` segment is the run's arm: the loss name, or the name a study
gives a loss trained with settings of its own (the run config's ``arm``). Every module and the Snakemake rules use it, so the pattern is written here
only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

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

# Files of a results directory.
RUNS = "runs"
DESIGN = "design.csv"
COMPARISONS = "comparisons.csv"
SUMMARY = "summary.csv"
STUDY_CONFIG = "study.yaml"
RUN_CONFIGS = "configs"

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

_NAME = r"[^/]+"
RUN_DIR_PATTERN = re.compile(
    rf"{RUNS}/(?P<dataset>{_NAME})/(?P<arch>{_NAME})/(?P<loss>{_NAME})/"
    r"bn-g(?P<bn_g>[01])-d(?P<bn_d>[01])/seed(?P<seed>\d+)$"
)


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
        return f"{self.variant.path}/seed{self.seed}"

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
            raise ValueError(
                f"{run_dir!r} is not a run directory of the form "
                f"{RUNS}/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>"
            )
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
        return {
            "dataset": self.dataset,
            "arch": self.arch,
            "loss": self.loss,
            "bn_g": int(self.bn_g),
            "bn_d": int(self.bn_d),
            "seed": self.seed,
            "run_dir": self.run_dir,
        }

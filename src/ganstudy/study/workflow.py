"""The study as the workflow sees it: a checked study config and its expansion (the grid of
:mod:`ganstudy.study.grid`), with the paths the workflow connects, the options of the commands
its rules call and the environment of its jobs.

Nothing here imports torch: the Snakefile builds a :class:`Study` when it is parsed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganstudy import store
from ganstudy.analysis.comparisons import Pair
from ganstudy.analysis.primary import Hypothesis
from ganstudy.analysis.primary import hypotheses as primary_hypotheses
from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.losses import ComparedLosses
from ganstudy.metrics import fid_protocol
from ganstudy.study import gpu_slots
from ganstudy.study import schema as schema_mod
from ganstudy.study import waves as waves_mod
from ganstudy.study.grid import Run, TrainJob, Variant, expand, plan_pairs


@dataclass
class Study:
    """A checked study config and its expansion, with the paths the workflow connects."""

    config: dict
    variants: list[Variant]
    # The losses the report compares (the config's ``compare`` key, else the loss roles).
    comparison: ComparedLosses = field(default_factory=ComparedLosses.from_config)
    # Every comparison of the study (plan_pairs): what the report tests.
    pairs: list[Pair] = field(default_factory=list)
    # The declared primary hypotheses (analysis.primary), checked against the pairs.
    primary: list[Hypothesis] = field(default_factory=list)
    # What the primary family lost to blocks switched off (hypotheses left out or narrowed).
    primary_notes: list[str] = field(default_factory=list)
    # The sequential design's waves (analysis.sequential): which jobs each wave trains.
    waves: waves_mod.WavePlan | None = None

    @classmethod
    def from_config(cls, config: dict, schema: dict | str | Path | None = None) -> Study:
        """Check ``config`` (filling its defaults in place when a schema is given) and expand it."""
        if schema is not None:
            schema_mod.validate(config, schema)
        study = cls(config, expand(config))
        study._check_data_settings()
        study.comparison = ComparedLosses.from_config(config)
        study.pairs = plan_pairs(config, study.variants)
        study.primary = primary_hypotheses(config, study.pairs, study.primary_notes)
        study.waves = waves_mod.plan(study)
        return study

    # -- names and paths ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config["study"]

    @property
    def results(self) -> str:
        return self.config["results"].rstrip("/")

    @property
    def data_root(self) -> str:
        return self.config["data"]["root"].rstrip("/")

    @property
    def runs(self) -> list[Run]:
        return [Run(v, s) for v in self.variants for s in v.seeds]

    @property
    def jobs(self) -> list[TrainJob]:
        return [job for v in self.variants for job in v.jobs()]

    def variant(self, key: str) -> Variant:
        for v in self.variants:
            if v.key == key:
                return v
        raise KeyError(key)

    def run_path(self, run: Run | str, name: str = "") -> str:
        """A run directory, or the file ``name`` in it, as the rules name it."""
        run_dir = store.ResultsDir(self.results).run(run.key if isinstance(run, Run) else run)
        return str(run_dir / name if name else run_dir.path)

    def config_path(self, variant: Variant) -> str:
        return str(store.ResultsDir(self.results).run_config(variant.key))

    def design_rows(self) -> list[dict[str, Any]]:
        return [run.design_row() for run in self.runs]

    # -- datasets, classifiers, FID ------------------------------------------------------------

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(v.dataset for v in self.variants))

    def classifier_dataset(self, dataset: str) -> str | None:
        """The dataset whose classifier measures ``dataset``'s mode coverage (None: no classifier)."""
        return registry.dataset(dataset).classifier

    @property
    def classifier_datasets(self) -> list[str]:
        found = (self.classifier_dataset(d) for d in self.datasets)
        return list(dict.fromkeys(d for d in found if d is not None))

    @property
    def prepared_datasets(self) -> list[str]:
        """Datasets with files: those trained on and those the classifiers learn from."""
        names = [*self.datasets, *self.classifier_datasets]
        return [d for d in dict.fromkeys(names) if registry.dataset(d).source is not None]

    def source(self, dataset: str) -> str:
        return registry.dataset(dataset).source

    @property
    def sources(self) -> dict[str, str]:
        """Source key -> one dataset built from it (what ``ganstudy data fetch`` is given)."""
        out: dict[str, str] = {}
        for dataset in self.prepared_datasets:
            out.setdefault(self.source(dataset), dataset)
        return out

    def prepare_params(self, dataset: str) -> dict[str, Any]:
        return dict(self.config["data"]["prepare"].get(dataset, {}))

    def classifier_args(self, dataset: str) -> str:
        """The budget options of ``ganstudy classifier train`` for a classifier dataset."""
        c = self.config["classifiers"]
        args = []
        if dataset in c["epochs"]:
            args.append(f"--epochs {c['epochs'][dataset]}")
        if dataset in c["train_limit"]:
            args.append(f"--train-limit {c['train_limit'][dataset]}")
        return " ".join(args)

    def fid_protocol(self, dataset: str):
        """The FID protocol of a dataset under the study's settings, or None (no FID)."""
        if registry.dataset(dataset).fid is None:
            return None
        f = self.config["fid"]
        return fid_protocol.protocol_for(
            dataset, f["preset"], f["samples"], f["dims"], f["allow_singular"]
        )

    def fid_receipt(self, dataset: str) -> str | None:
        protocol = self.fid_protocol(dataset)
        if protocol is None:
            return None
        return str(store.DataRoot(self.data_root).fid_receipt(dataset, protocol.name))

    def mode_settings(self, variant: Variant | None = None) -> dict[str, int | None]:
        """The mode-metric settings of a variant: its block's ``modes`` over the top level's."""
        settings = dict(self.config["modes"])
        if variant is not None:
            block = self.config["experiments"][variant.block].get("modes") or {}
            settings |= {k: v for k, v in block.items() if v is not None}
        return settings

    def mode_args(self, variant: Variant | None = None) -> str:
        """The mode-metric options of ``ganstudy evaluate`` (for a variant: its block's)."""
        settings = self.mode_settings(variant)
        args = []
        if settings["samples"] is not None:
            args.append(f"--mode-samples {settings['samples']}")
        if settings.get("min_count") is not None:
            args.append(f"--mode-min-count {settings['min_count']}")
        if self.config["classifiers"]["below_target"] == "flag":
            args.append("--allow-weak-classifier")
        return " ".join(args)

    def fid_args(self) -> str:
        """The FID options of ``ganstudy evaluate`` and ``ganstudy study fid-reference``."""
        f = self.config["fid"]
        args = [f"--fid-preset {f['preset']}"]
        if f["samples"] is not None:
            args.append(f"--fid-samples {f['samples']}")
        if f["dims"] is not None:
            args.append(f"--fid-dims {f['dims']}")
        if f["allow_singular"]:
            args.append("--allow-singular-fid")
        return " ".join(args)

    def _check_data_settings(self) -> None:
        for dataset, params in self.config["data"]["prepare"].items():
            try:
                registry.resolve_params(dataset, params)
            except ConfigError as err:
                raise ConfigError(f"key 'data.prepare.{dataset}': {err}") from None
        for key in ("epochs", "train_limit"):
            for dataset in self.config["classifiers"][key]:
                if dataset not in registry.classifier_datasets():
                    raise ConfigError(
                        f"key 'classifiers.{key}.{dataset}': no classifier is trained on "
                        f"{dataset!r}; allowed: {', '.join(registry.classifier_datasets())}"
                    )
        for dataset in self.datasets:
            try:
                self.fid_protocol(dataset)
            except ConfigError as err:
                raise ConfigError(f"key 'fid' (dataset {dataset}): {err}") from None

    # -- the environment of the jobs -----------------------------------------------------------

    def job_environment(
        self, environ: dict[str, str] | None = None, jobs_per_gpu: int | None = None
    ) -> dict[str, str]:
        """Variables the workflow's jobs read: data mirror and FID weights (absolute paths, when
        the config sets them), the tracking URI, and the GPU slot settings of the launcher
        (``jobs_per_gpu``: the count ``gpus.jobs_per_gpu: auto`` was resolved to; unresolved,
        auto means 1)."""
        cfg = self.config
        if jobs_per_gpu is None:
            setting = cfg["gpus"]["jobs_per_gpu"]
            jobs_per_gpu = 1 if setting == "auto" else int(setting)
        env: dict[str, str] = {gpu_slots.JOBS_PER_GPU_ENV: str(jobs_per_gpu)}
        if cfg["data"]["mirror"]:
            env["GANSTUDY_MIRROR"] = os.path.abspath(cfg["data"]["mirror"])
        if cfg["fid"]["weights"]:
            env["GANSTUDY_FID_WEIGHTS"] = os.path.abspath(cfg["fid"]["weights"])
        uri = self.tracking_uri(environ)
        if uri:
            env["MLFLOW_TRACKING_URI"] = uri
        if cfg["gpus"]["count"] is not None:
            env[gpu_slots.GPUS_ENV] = str(cfg["gpus"]["count"])
        if cfg["gpus"]["lock_dir"]:
            env[gpu_slots.LOCK_DIR_ENV] = os.path.abspath(cfg["gpus"]["lock_dir"])
        return env

    # -- tracking ------------------------------------------------------------------------------

    def tracking_uri(self, environ: dict[str, str] | None = None) -> str | None:
        """$MLFLOW_TRACKING_URI, else the config's ``tracking.uri`` (None when tracking is off)."""
        environ = os.environ if environ is None else environ
        if not self.config["tracking"]["enabled"]:
            return None
        return environ.get("MLFLOW_TRACKING_URI") or self.config["tracking"]["uri"]

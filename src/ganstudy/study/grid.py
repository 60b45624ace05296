"""The study: the grid of runs a study config asks for, and the files the workflow writes.

A study config (checked against its schema by :mod:`ganstudy.study.schema`) names experiment
blocks; each block is datasets x archs x arms x bn x seeds with its own run-config settings. An
arm is a loss name (the loss with the block's settings) or a named arm of the block (a loss with
settings of its own, e.g. an optimizer or a learning-rate schedule). Expanding it gives

- variants: one run config per dataset x arch x arm x bn setting, shared by every seed;
- runs: variant x seed, each in ``runs/<dataset>/<arch>/<arm>/bn-g<0|1>-d<0|1>/seed<S>``;
- training jobs: the seeds of a variant in chunks of ``seeds_per_job`` (``all``: one chunk), each
  chunk trained as one batched ensemble (``ganstudy train --seeds``);
- comparisons (:func:`plan_pairs`): each block's candidates against their baseline in every
  dataset x arch x bn group, checked to differ only in what their arms set.

Every run config is built with :func:`ganstudy.config.from_dict` while the study is expanded, so an
unknown name or an impossible combination fails before any job starts, naming the block and key.
Nothing here imports torch: the Snakefile builds a :class:`Study` when it is parsed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganstudy import config as run_config
from ganstudy import layout
from ganstudy.analysis.comparisons import Pair
from ganstudy.analysis.primary import Hypothesis
from ganstudy.analysis.primary import hypotheses as primary_hypotheses
from ganstudy.data import registry
from ganstudy.errors import ConfigError
from ganstudy.losses import LOSSES, ComparedLosses
from ganstudy.metrics import fid_protocol
from ganstudy.optimizers import setting_owners
from ganstudy.study import gpu_slots
from ganstudy.study import schema as schema_mod

# ---------------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class Variant:
    """One dataset x arch x arm x bn setting of a block; ``run_config`` is resolved, seedless.
    ``loss`` is the loss name, ``arm`` the arm (the loss name for a plain loss)."""

    block: str
    dataset: str
    arch: str
    loss: str
    bn_name: str
    bn_g: bool
    bn_d: bool
    seeds: tuple[int, ...]
    seeds_per_job: int
    run_config: dict = field(compare=False, hash=False, repr=False)
    arm: str = ""
    # The run-config keys the arm sets over its block ("train.optimizer", "loss.alpha_d", ...).
    arm_keys: frozenset[str] = field(default=frozenset(), compare=False, hash=False)

    def __post_init__(self):
        if not self.arm:
            object.__setattr__(self, "arm", self.loss)

    @property
    def variant_key(self) -> layout.VariantKey:
        return layout.VariantKey(self.dataset, self.arch, self.arm, self.bn_g, self.bn_d)

    @property
    def key(self) -> str:
        """``<dataset>/<arch>/<arm>/bn-g<0|1>-d<0|1>``: the run dirs' parent, relative to runs/."""
        return self.variant_key.path

    def run_dir(self, seed: int) -> str:
        """A run's directory relative to the results directory."""
        return self.variant_key.run(seed).run_dir

    @property
    def run_dir_pattern(self) -> str:
        """The run directories of this variant with ``{seed}`` for the seed (``ganstudy train
        --out``), relative to the results directory."""
        return self.run_dir(0).removesuffix("seed0") + "seed{seed}"

    def jobs(self) -> list[TrainJob]:
        n = self.seeds_per_job
        return [TrainJob(self, self.seeds[i : i + n]) for i in range(0, len(self.seeds), n)]


@dataclass(frozen=True)
class TrainJob:
    """Seeds of one variant trained together as one ensemble."""

    variant: Variant
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        """A rule name (an identifier) unique within the study."""
        v = self.variant
        bn = f"bn_g{int(v.bn_g)}_d{int(v.bn_d)}"
        return (
            f"train__{v.dataset}__{v.arch}__{v.arm}__{bn}__seeds_{self.seeds[0]}_{len(self.seeds)}"
        )

    @property
    def evaluation_name(self) -> str:
        """The rule name of the job that evaluates this job's runs, in one process."""
        return "evaluate__" + self.name.removeprefix("train__")

    @property
    def run_dirs(self) -> list[str]:
        return [self.variant.run_dir(s) for s in self.seeds]

    @property
    def seeds_arg(self) -> str:
        """The seeds as ``ganstudy train --seeds`` reads them: ranges joined by commas."""
        return format_seeds(self.seeds)


@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int

    @property
    def key(self) -> layout.RunKey:
        return self.variant.variant_key.run(self.seed)

    @property
    def run_dir(self) -> str:
        return self.key.run_dir

    def design_row(self) -> dict[str, Any]:
        return self.key.design_row()


def format_seeds(seeds: Iterable[int]) -> str:
    """Sorted seeds as ranges: (0, 1, 2, 3, 7) -> '0-3,7'."""
    seeds = sorted(seeds)
    parts, start = [], None
    for i, seed in enumerate(seeds):
        if start is None:
            start = seed
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(str(start) if start == seed else f"{start}-{seed}")
            start = None
    return ",".join(parts)


def seed_list(spec: int | list[int]) -> tuple[int, ...]:
    """A block's ``seeds``: a count n means seeds 0..n-1, a list is taken as given (sorted)."""
    if isinstance(spec, int):
        return tuple(range(spec))
    return tuple(sorted(spec))


def seeds_per_job(spec: int | str, seeds: tuple[int, ...]) -> int:
    """A block's ``seeds_per_job``: a count, or ``all`` (every seed of a variant in one job)."""
    return len(seeds) if spec == "all" else int(spec)


def merge(base: dict, update: dict) -> dict:
    """``update`` merged into a copy of ``base`` as Snakemake merges config files: mappings key
    by key, everything else (lists included) replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Arm:
    """An entry of a block's ``losses``: a loss with the keys it sets over the block's."""

    name: str
    loss: str
    loss_keys: dict
    train_keys: dict

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(
            [f"loss.{k}" for k in self.loss_keys] + [f"train.{k}" for k in self.train_keys]
        )


def block_arms(block_name: str, block: dict) -> list[Arm]:
    """The arms of a block's ``losses`` list: loss names, or arms defined under ``arms``."""
    where = f"experiments.{block_name}"
    defined = block.get("arms") or {}
    for name in defined:
        if name in LOSSES:
            raise ConfigError(
                f"key '{where}.arms.{name}': the name is a loss's; allowed: another name (a "
                "plain loss name in `losses` already means that loss with the block's settings)"
            )
    arms = []
    for name in block["losses"]:
        if name in defined:
            loss = dict(defined[name]["loss"])
            arms.append(Arm(name, loss.pop("name"), loss, dict(defined[name].get("train") or {})))
        else:
            arms.append(Arm(name, name, {}, {}))
    return arms


def _variant_config(
    cfg: dict, block_name: str, block: dict, dataset: str, arch: str, arm: Arm, bn: dict
) -> dict:
    """The run config (as a mapping) of one variant of a block."""
    tracking = cfg["tracking"]
    return {
        "seed": 0,
        "arm": arm.name if arm.name != arm.loss else None,
        "dataset": {"name": dataset, "data_root": cfg["data"]["root"], **block["dataset"]},
        "arch": {"name": arch, **block["arch"], "bn": {"g": bn["g"], "d": bn["d"]}},
        "loss": {"name": arm.loss, **block["loss"], **arm.loss_keys},
        "train": {**block["train"], **arm.train_keys},
        "tracking": {
            "enabled": tracking["enabled"],
            "experiment": cfg["study"],
            "tags": {**tracking["tags"], "study": cfg["study"], "block": block_name},
            "system_metrics": tracking["system_metrics"],
        },
    }


def expand(cfg: dict) -> list[Variant]:
    """Every variant of a schema-checked study config, each run config validated."""
    variants: list[Variant] = []
    owner: dict[str, str] = {}
    for block_name, block in cfg["experiments"].items():
        if not block.get("enabled", True):
            continue
        where = f"experiments.{block_name}"
        for bn_name in block["bn"]:
            if bn_name not in cfg["bn"]:
                raise ConfigError(
                    f"key '{where}.bn': {bn_name!r} is not a named bn setting; allowed: "
                    f"{', '.join(cfg['bn'])} (defined under the top-level key 'bn')"
                )
        seeds = seed_list(block["seeds"])
        per_job = seeds_per_job(block["seeds_per_job"] or cfg["seeds_per_job"], seeds)
        arms = block_arms(block_name, block)
        for dataset in block["datasets"]:
            for arch in block["archs"]:
                for arm in arms:
                    for bn_name in block["bn"]:
                        bn = cfg["bn"][bn_name]
                        data = _variant_config(cfg, block_name, block, dataset, arch, arm, bn)
                        try:
                            resolved = run_config.from_dict(data).to_dict()
                        except ConfigError as err:
                            raise ConfigError(
                                f"{where} (dataset {dataset}, arch {arch}, loss {arm.name}, "
                                f"bn {bn_name}): {err}"
                            ) from None
                        v = Variant(
                            block_name, dataset, arch, arm.loss, bn_name, bn["g"], bn["d"],
                            seeds, per_job, resolved, arm.name, arm.keys,
                        )  # fmt: skip
                        if v.key in owner:
                            raise ConfigError(
                                f"{where} and experiments.{owner[v.key]} both ask for the runs "
                                f"of {v.key}; every run belongs to one block (change a list, "
                                "or give one block other seeds)"
                            )
                        owner[v.key] = block_name
                        variants.append(v)
    if not variants:
        raise ConfigError("key 'experiments': every block is disabled; allowed: at least one run")
    return variants


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _specs(block: dict) -> list[tuple[str, tuple[str, ...]]] | None:
    """A block's own comparisons as (baseline, candidates) pairs; None: it has none."""
    spec = block.get("compare")
    if spec is None:
        return None
    specs = spec if isinstance(spec, list) else [spec]
    return [(s["baseline"], tuple(s["candidates"])) for s in specs]


def _differences(base: Variant, cand: Variant) -> list[str]:
    """Run-config keys where two variants differ beyond what their arms set: not the seed, the
    arm, tracking or the loss, nor the keys of an optimizer or schedule an arm chooses."""
    allowed = set(base.arm_keys | cand.arm_keys)
    owners = setting_owners()
    for key in ("train.optimizer", "train.d_lr_schedule"):
        if key in allowed:
            choice = key.split(".")[1]
            allowed |= {f"train.{k}" for k, o in owners.items() if o.startswith(f"{choice}=")}
    a = _flatten(base.run_config)
    b = _flatten(cand.run_config)
    return sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k)
        and k not in allowed
        and k.split(".")[0] not in ("seed", "arm", "tracking", "loss")
    )


def plan_pairs(cfg: dict, variants: list[Variant]) -> list[Pair]:
    """Every comparison of the study: per block its own ``compare`` (or the top-level one among
    the block's runs), each candidate variant with its baseline in the same dataset x arch x bn
    group. A block's own baseline may be in another block; every pair must differ only in what
    its arms set (the loss and the arms' keys), else the comparison is refused."""
    by_key = {v.key: v for v in variants}
    default = ComparedLosses.from_config(cfg)
    pairs = []
    for block_name, block in cfg["experiments"].items():
        if not block.get("enabled", True):
            continue
        where = f"experiments.{block_name}.compare"
        own = _specs(block)
        arms = {a.name for a in block_arms(block_name, block)} | set(block.get("arms") or {})
        for baseline, candidates in own or [(default.baseline, default.candidates)]:
            if own is not None:
                unknown = [n for n in candidates if n not in arms]
                if unknown:
                    raise ConfigError(
                        f"key '{where}': candidate {unknown[0]!r} is not an arm of the block; "
                        f"allowed: {', '.join(sorted(arms))}"
                    )
                if baseline in candidates:
                    raise ConfigError(
                        f"key '{where}': {baseline!r} is the baseline; allowed: other candidates"
                    )
            for cand in (v for v in variants if v.block == block_name and v.arm in candidates):
                key = layout.VariantKey(cand.dataset, cand.arch, baseline, cand.bn_g, cand.bn_d)
                base = by_key.get(key.path)
                if own is None and (base is None or base.block != block_name):
                    continue
                if base is None:
                    raise ConfigError(
                        f"key '{where}': no runs of the baseline {baseline!r} for {key.path} (not "
                        f"in the block's losses nor in another block); allowed: a baseline run "
                        "with the same dataset, architecture and batch norm"
                    )
                diff = _differences(base, cand)
                if diff:
                    a, b = (_flatten(v.run_config) for v in (base, cand))
                    shown = ", ".join(f"{k} ({a.get(k)!r} vs {b.get(k)!r})" for k in diff)
                    raise ConfigError(
                        f"key '{where}': {cand.key} and its baseline {base.key} (block "
                        f"{base.block}) differ in {shown}, which neither arm sets; allowed: a "
                        "baseline trained like the candidate except for the loss and what the "
                        "arms set"
                    )
                pairs.append(
                    Pair(block_name, cand.dataset, cand.arch, cand.bn_g, cand.bn_d, baseline,
                         cand.arm)
                )  # fmt: skip
    return pairs


# ---------------------------------------------------------------------------------------------
# The study


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
        rel = run.run_dir if isinstance(run, Run) else run
        return f"{self.results}/{rel}/{name}".rstrip("/")

    def config_path(self, variant: Variant) -> str:
        return f"{self.results}/{layout.RUN_CONFIGS}/{variant.key}.yaml"

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
        return f"{self.data_root}/fid_stats/{dataset}-{protocol.name}.json"

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

"""The study: the grid of runs a study config asks for, and the files the workflow writes.

A study config (checked against its schema by :mod:`ganstudy.study_schema`) names experiment
blocks; each block is datasets x archs x losses x bn x seeds with its own run-config settings.
Expanding it gives

- variants: one run config per dataset x arch x loss x bn setting, shared by every seed;
- runs: variant x seed, each in ``runs/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>/seed<S>``;
- training jobs: the seeds of a variant in chunks of ``seeds_per_job``, each chunk trained as one
  batched ensemble (``ganstudy train --seeds``).

Every run config is built with :func:`ganstudy.config.from_dict` while the study is expanded, so an
unknown name or an impossible combination fails before any job starts, naming the block and key.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganstudy import atomic, gpu_slots
from ganstudy.config import ConfigError

DESIGN_COLUMNS = ("dataset", "arch", "loss", "bn_g", "bn_d", "seed", "run_dir")
DEFAULT_SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class Variant:
    """One dataset x arch x loss x bn setting of a block; ``run_config`` is resolved, seedless."""

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

    @property
    def key(self) -> str:
        """``<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>``: the run dirs' parent, relative to runs/."""
        return f"{self.dataset}/{self.arch}/{self.loss}/bn-g{int(self.bn_g)}-d{int(self.bn_d)}"

    def run_dir(self, seed: int) -> str:
        """A run's directory relative to the results directory."""
        return f"runs/{self.key}/seed{seed}"

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
            f"train__{v.dataset}__{v.arch}__{v.loss}__{bn}__seeds_{self.seeds[0]}_{len(self.seeds)}"
        )

    @property
    def seeds_arg(self) -> str:
        """The seeds as ``ganstudy train --seeds`` reads them: ranges joined by commas."""
        return format_seeds(self.seeds)


@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int

    @property
    def run_dir(self) -> str:
        return self.variant.run_dir(self.seed)

    def design_row(self) -> dict[str, Any]:
        v = self.variant
        return {
            "dataset": v.dataset,
            "arch": v.arch,
            "loss": v.loss,
            "bn_g": int(v.bn_g),
            "bn_d": int(v.bn_d),
            "seed": self.seed,
            "run_dir": self.run_dir,
        }


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


def _variant_config(cfg: dict, block: dict, dataset: str, arch: str, loss: str, bn: dict) -> dict:
    """The run config (as a mapping) of one variant of a block."""
    tracking = cfg["tracking"]
    return {
        "seed": 0,
        "dataset": {"name": dataset, "data_root": cfg["data"]["root"]},
        "arch": {"name": arch, **block["arch"], "bn": {"g": bn["g"], "d": bn["d"]}},
        "loss": {"name": loss, **block["loss"]},
        "train": dict(block["train"]),
        "tracking": {
            "enabled": tracking["enabled"],
            "experiment": cfg["study"],
            "tags": {**tracking["tags"], "study": cfg["study"]},
        },
    }


def expand(cfg: dict) -> list[Variant]:
    """Every variant of a schema-checked study config, each run config validated."""
    from ganstudy import config as run_config

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
        per_job = block["seeds_per_job"] or cfg["seeds_per_job"]
        for dataset in block["datasets"]:
            for arch in block["archs"]:
                for loss in block["losses"]:
                    for bn_name in block["bn"]:
                        bn = cfg["bn"][bn_name]
                        data = _variant_config(cfg, block, dataset, arch, loss, bn)
                        try:
                            resolved = run_config.from_dict(data).to_dict()
                        except ConfigError as err:
                            raise ConfigError(
                                f"{where} (dataset {dataset}, arch {arch}, loss {loss}, "
                                f"bn {bn_name}): {err}"
                            ) from None
                        v = Variant(
                            block_name, dataset, arch, loss, bn_name, bn["g"], bn["d"],
                            seeds, per_job, resolved,
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


# ---------------------------------------------------------------------------------------------
# The study


@dataclass
class Study:
    """A checked study config and its expansion, with the paths the workflow connects."""

    config: dict
    variants: list[Variant]

    @classmethod
    def from_config(cls, config: dict, schema: dict | str | Path | None = None) -> Study:
        """Check ``config`` (filling its defaults in place when a schema is given) and expand it."""
        if schema is not None:
            from ganstudy import study_schema

            study_schema.validate(config, schema)
        study = cls(config, expand(config))
        study._check_data_settings()
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
        return f"{self.results}/configs/{variant.key}.yaml"

    def design_rows(self) -> list[dict[str, Any]]:
        return [run.design_row() for run in self.runs]

    # -- datasets, classifiers, FID ------------------------------------------------------------

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(v.dataset for v in self.variants))

    def classifier_dataset(self, dataset: str) -> str | None:
        """The dataset whose classifier measures ``dataset``'s mode coverage (None: no classifier)."""
        from ganstudy.classifiers import CLASSIFIER_FOR

        return CLASSIFIER_FOR.get(dataset)

    @property
    def classifier_datasets(self) -> list[str]:
        found = (self.classifier_dataset(d) for d in self.datasets)
        return list(dict.fromkeys(d for d in found if d is not None))

    @property
    def prepared_datasets(self) -> list[str]:
        """Datasets with files: those trained on and those the classifiers learn from."""
        from ganstudy.sources import DATASET_SOURCES

        names = [*self.datasets, *self.classifier_datasets]
        return [d for d in dict.fromkeys(names) if DATASET_SOURCES.get(d) is not None]

    def source(self, dataset: str) -> str:
        from ganstudy.sources import DATASET_SOURCES

        return DATASET_SOURCES[dataset]

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
        from ganstudy import fid

        if dataset not in fid.PROTOCOLS:
            return None
        f = self.config["fid"]
        return fid.protocol_for(dataset, f["preset"], f["samples"], f["dims"], f["allow_singular"])

    def fid_receipt(self, dataset: str) -> str | None:
        protocol = self.fid_protocol(dataset)
        if protocol is None:
            return None
        return f"{self.data_root}/fid_stats/{dataset}-{protocol.name}.json"

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
        from ganstudy import prepare
        from ganstudy.classifiers import SPECS

        for dataset, params in self.config["data"]["prepare"].items():
            try:
                prepare.resolve_params(dataset, params)
            except ConfigError as err:
                raise ConfigError(f"key 'data.prepare.{dataset}': {err}") from None
        for key in ("epochs", "train_limit"):
            for dataset in self.config["classifiers"][key]:
                if dataset not in SPECS:
                    raise ConfigError(
                        f"key 'classifiers.{key}.{dataset}': no classifier is trained on "
                        f"{dataset!r}; allowed: {', '.join(SPECS)}"
                    )
        for dataset in self.datasets:
            try:
                self.fid_protocol(dataset)
            except ConfigError as err:
                raise ConfigError(f"key 'fid' (dataset {dataset}): {err}") from None

    # -- the environment of the jobs -----------------------------------------------------------

    def job_environment(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """Variables the workflow's jobs read: data mirror and FID weights (absolute paths, when
        the config sets them), the tracking URI, and the GPU slot settings of the launcher."""
        cfg = self.config
        env: dict[str, str] = {gpu_slots.JOBS_PER_GPU_ENV: str(cfg["gpus"]["jobs_per_gpu"])}
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


# ---------------------------------------------------------------------------------------------
# Files


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it onto ``path``."""
    atomic.write_text(path, text)


def design_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, DESIGN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run_config_yaml(data: dict) -> str:
    """The resolved YAML of a run config mapping, checked by ``ganstudy.config.from_dict``."""
    from ganstudy import config as run_config

    return run_config.from_dict(data).to_yaml()


def load_configs(paths: list[str | Path]) -> dict:
    """Study config files merged in order, as ``snakemake --configfile`` merges them."""
    merged: dict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study config {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"study config {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"study config {path}: expected a mapping at the top level")
        merged = merge(merged, data)
    return merged


# ---------------------------------------------------------------------------------------------
# Command line


def _schema_path(arg: str | None) -> Path:
    path = Path(arg) if arg else DEFAULT_SCHEMA
    if not path.is_file():
        raise ConfigError(
            f"study config schema {path} does not exist; run from the repository root or pass "
            "--schema workflow/schemas/config.schema.yaml"
        )
    return path


def _json_arg(text: str, option: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{option}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{option}: expected a JSON object")
    return data


def _cmd_design(args) -> int:
    config = _json_arg(args.json, "--json") if args.json else load_configs(args.config)
    study = Study.from_config(config, _schema_path(args.schema))
    atomic_write(args.design, design_csv(study.design_rows()))
    if args.resolved:
        atomic_write(args.resolved, yaml.safe_dump(study.config, sort_keys=False))
    if args.run_configs:
        for variant in study.variants:
            path = Path(args.run_configs) / f"{variant.key}.yaml"
            atomic_write(path, run_config_yaml(variant.run_config))
    print(f"{args.design}: {len(study.runs)} runs of study {study.name}")
    return 0


def _cmd_init_tracking(args) -> int:
    from ganstudy import tracking

    uri = tracking.resolve_uri(args.uri)
    experiment_id = tracking.init_store(uri, args.experiment)
    print(f"MLflow store {uri}: experiment {args.experiment!r} (id {experiment_id})")
    return 0


def _cmd_fid_reference(args) -> int:
    from ganstudy import fid

    protocol = fid.protocol_for(
        args.dataset, args.fid_preset, args.fid_samples, args.fid_dims, args.allow_singular_fid
    )
    weights = fid.resolve_weights(args.fid_weights)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    stats, settings = fid.reference_statistics(
        args.dataset, args.data_root, protocol, weights, device, args.mirror
    )
    path = fid.stats_path(args.data_root, args.dataset, protocol, stats.count, weights.sha256)
    receipt = {"dataset": args.dataset, "statistics": str(path), "settings": settings}
    atomic_write(args.out, json.dumps(receipt, indent=2) + "\n")
    print(f"{args.out}: {args.dataset} reference statistics ({protocol.name}) in {path}")
    return 0


def _cmd_cost(args) -> int:
    from ganstudy import study_cost

    study = Study.from_config(load_configs(args.config), _schema_path(args.schema))
    print(study_cost.table(study_cost.estimate(study, data_root=args.data_root)))
    return 0


def _cmd_gpu_run(args) -> int:
    return gpu_slots.run(args)


def _fid_options(p) -> None:
    p.add_argument("--fid-preset", default="full", help="full or quick (see ganstudy evaluate)")
    p.add_argument("--fid-samples", type=int, metavar="N", help="reference image count")
    p.add_argument("--fid-dims", type=int, metavar="D", help="Inception feature block")
    p.add_argument("--allow-singular-fid", action="store_true")


def register_cli(subparsers) -> None:
    study = subparsers.add_parser(
        "study", help="study-level steps of the workflow: design, run configs, GPU slots, cost"
    )
    sub = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "design",
        help="check a study config; write design.csv (the expected runs) and the run configs",
        description="Check a study config against the schema, expand its grid (every run config "
        "validated) and write design.csv; optionally the resolved config with every default and "
        "each variant's run config (<dir>/<dataset>/<arch>/<loss>/bn-g<0|1>-d<0|1>.yaml).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", nargs="+", help="study config file(s), merged in order")
    source.add_argument("--json", help="the study config as one JSON object")
    p.add_argument("--schema", help=f"config schema (default: {DEFAULT_SCHEMA})")
    p.add_argument("--design", required=True, help="design.csv to write")
    p.add_argument("--resolved", help="also write the resolved study config (YAML) here")
    p.add_argument("--run-configs", metavar="DIR", help="also write every variant's run config")
    p.set_defaults(func=_cmd_design)

    p = sub.add_parser(
        "init-tracking", help="create the MLflow store and the study's experiment once"
    )
    p.add_argument("--experiment", required=True)
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite)")
    p.set_defaults(func=_cmd_init_tracking)

    p = sub.add_parser(
        "fid-reference", help="compute and cache a dataset's FID reference statistics"
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default="data")
    p.add_argument("--mirror", help="data mirror (default: $GANSTUDY_MIRROR)")
    p.add_argument("--fid-weights", metavar="PATH", help="default: $GANSTUDY_FID_WEIGHTS")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _fid_options(p)
    p.add_argument("--out", required=True, help="receipt (JSON) naming the cached statistics")
    p.set_defaults(func=_cmd_fid_reference)

    p = sub.add_parser(
        "cost",
        help="runs, steps and estimated compute of a study config",
        description="Estimate a study's training compute from the CPU throughput measured per "
        "architecture (ganstudy.study_cost.STEP_SECONDS).",
    )
    p.add_argument("config", nargs="+", help="study config file(s), merged in order")
    p.add_argument("--schema", help=f"config schema (default: {DEFAULT_SCHEMA})")
    p.add_argument("--data-root", help="read training-set sizes from prepared manifests here")
    p.set_defaults(func=_cmd_cost)

    p = sub.add_parser(
        "gpu-run",
        help="run a command on a free GPU slot (sets CUDA_VISIBLE_DEVICES)",
        description="Claim a free slot (GPU x jobs_per_gpu) under file locks, expose only that "
        "GPU to the command and run it in place of this process; the slot is freed when the "
        "command exits. Without GPUs the command runs on the CPU.",
    )
    gpu_slots.add_arguments(p)
    p.set_defaults(func=_cmd_gpu_run)

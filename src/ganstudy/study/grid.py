"""The grid of runs a study config asks for.

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
The study object the workflow uses, with its paths, options and job environment, is
:class:`ganstudy.study.workflow.Study`. Nothing here imports torch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ganstudy import config as run_config
from ganstudy import store
from ganstudy.analysis.comparisons import Pair
from ganstudy.errors import ConfigError
from ganstudy.losses import LOSSES, ComparedLosses
from ganstudy.optimizers import setting_owners

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
    def variant_key(self) -> store.VariantKey:
        return store.VariantKey(self.dataset, self.arch, self.arm, self.bn_g, self.bn_d)

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
        return self.variant_key.run_dir_pattern

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
    def key(self) -> store.RunKey:
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
    arm, tracking, what a run keeps on disk or the loss, nor the keys of an optimizer or
    schedule an arm chooses."""
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
        and k not in run_config.STORAGE_KEYS
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
                key = store.VariantKey(cand.dataset, cand.arch, baseline, cand.bn_g, cand.bn_d)
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

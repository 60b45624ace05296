"""Run configuration: frozen dataclasses built from YAML, validated before any work starts.

One run is one dataset x architecture x loss x batch-norm setting x seed, trained with one
optimizer and D learning-rate schedule. Every key has a default; an unknown key, a value of the wrong type or a value outside its allowed set raises
:class:`ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganstudy.data.registry import DATASETS
from ganstudy.errors import ConfigError, require
from ganstudy.losses import LOSSES, resolve_alphas, resolve_coding
from ganstudy.nets import ARCHS, INIT_SCHEMES, MLP_KEYS
from ganstudy.numerics import COMPILE_MODES
from ganstudy.optimizers import resolve_settings


@dataclass(frozen=True)
class BatchNormConfig:
    """Batch norm is a factor of the study: every BN layer of G and of D is switched on or off."""

    g: bool = True
    d: bool = True


@dataclass(frozen=True)
class DataConfig:
    name: str = "ring8"
    data_root: str = "data"
    # A directory laid out like the download sources; files found there with the right
    # checksum are copied instead of downloaded (air-gapped machines).
    mirror: str | None = None
    # 2D mixtures only: None samples fresh points every step; N trains on a fixed set of N
    # points drawn from `sample_seed` (the same set for every seed), in epochs, reshuffled per
    # epoch and member. Image datasets take their size from their preparation.
    n_train: int | None = None
    sample_seed: int = 0


@dataclass(frozen=True)
class ArchConfig:
    name: str = "mlp2d"
    width: int = 64
    z_dim: int = 64
    z_dist: str = "normal"
    bn: BatchNormConfig = field(default_factory=BatchNormConfig)
    # Hidden layers and units of the MLP architectures' G and D (ganstudy.nets.MLP_KEYS); None:
    # the architecture's default. Other architectures leave them unset.
    g_layers: int | None = None
    g_width: int | None = None
    d_layers: int | None = None
    d_width: int | None = None
    # How weights are drawn (ganstudy.nets.INIT_SCHEMES).
    init: str = "dcgan"


@dataclass(frozen=True)
class LossConfig:
    name: str = "gan"
    # LSGAN codings (a: target of D on fakes, b: on reals, c: what G wants D to say).
    # None means the preset of the named loss.
    a: float | None = None
    b: float | None = None
    c: float | None = None
    gp_lambda: float = 10.0
    # (alpha_D, alpha_G) of the alpha loss, each in (0, inf]; None means the registry's 1.0.
    alpha_d: float | None = None
    alpha_g: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    # The optimizer of G and D (ganstudy.optimizers.OPTIMIZERS). Its keys left None take the
    # registry's defaults; the keys of the other optimizer must stay None.
    optimizer: str = "adam"
    beta1: float | None = None
    beta2: float | None = None
    rmsprop_alpha: float | None = None
    rmsprop_eps: float | None = None
    rmsprop_momentum: float | None = None
    # D's learning-rate schedule (ganstudy.optimizers.D_LR_SCHEDULES), with its keys likewise.
    d_lr_schedule: str = "none"
    gap_ema: float | None = None
    gap_h_min: float | None = None
    gap_f_max: float | None = None
    gap_x_min: float | None = None
    gap_x_max: float | None = None
    d_steps: int = 1
    log_every: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 1000
    fid_every: int = 0
    fid_samples: int = 1000
    # Feature dims of training-time FID curves (None: the metrics module's cheap default); the
    # final FID of `ganstudy evaluate` uses the full protocol.
    fid_dims: int | None = None
    device: str = "auto"
    # Numerical settings, recorded in metrics.json (see ganstudy.numerics).
    compile: str = "none"
    deterministic: bool = False
    tf32: bool = False
    # False: a finished run keeps final.pt alone (see ganstudy.checkpoint.finish); true: also
    # its two newest periodic checkpoints, as while it trains.
    keep_checkpoints: bool = False


# Run-config keys that decide what a run keeps on disk, not what it computes: a run continued
# with another value is the same run (ganstudy.train.runfiles.config_diff), and the workflow
# does not train again when one changes.
STORAGE_KEYS = frozenset({"train.keep_checkpoints"})


def without_storage_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A run config (as a dict) without :data:`STORAGE_KEYS`: what its results depend on."""
    out = dict(data)
    for key in STORAGE_KEYS:
        section, name = key.split(".")
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != name}
    return out


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI, else an SQLite store ./mlflow.db in the working directory.
    uri: str | None = None
    experiment: str = "ganstudy"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # MLflow's system metrics (CPU, memory; GPU with pynvml) on every run, sampled every 10 s.
    system_metrics: bool = True


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    # The study arm the run belongs to: the loss segment of its directory and its label in the
    # report. None: the loss name. A study names arms that differ from a plain loss in settings.
    arm: str | None = None
    dataset: DataConfig = field(default_factory=DataConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_seed(self, seed: int) -> RunConfig:
        return dataclasses.replace(self, seed=seed)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


Z_DISTRIBUTIONS = ("normal", "uniform")
DEVICES = ("auto", "cpu", "cuda")
ARM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"key '{key}': {value!r} is not a {allowed}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"key '{key}': expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"key '{key}': {value!r} is not a boolean (true/false)")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"key '{key}': {value!r} is not an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"key '{key}': {value!r} is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"key '{key}': {value!r} is not a string")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"key '{where}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key '{_join(prefix, unknown[0])}' in {where}; allowed keys: {', '.join(names)}"
        )
    kwargs = {name: _convert(data[name], hints[name], _join(prefix, name)) for name in data}
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def validate(cfg: RunConfig) -> RunConfig:
    """Check values and combinations against the registries; fill the LSGAN coding."""
    require(cfg.dataset.name in DATASETS, "dataset.name", cfg.dataset.name, ", ".join(DATASETS))
    require(cfg.arch.name in ARCHS, "arch.name", cfg.arch.name, ", ".join(ARCHS))
    require(cfg.loss.name in LOSSES, "loss.name", cfg.loss.name, ", ".join(LOSSES))
    require(
        cfg.arch.z_dist in Z_DISTRIBUTIONS,
        "arch.z_dist",
        cfg.arch.z_dist,
        ", ".join(Z_DISTRIBUTIONS),
    )
    require(cfg.train.device in DEVICES, "train.device", cfg.train.device, ", ".join(DEVICES))
    require(
        cfg.train.compile in COMPILE_MODES,
        "train.compile",
        cfg.train.compile,
        ", ".join(COMPILE_MODES),
    )
    require(cfg.arch.init in INIT_SCHEMES, "arch.init", cfg.arch.init, ", ".join(INIT_SCHEMES))
    for key in ("width", "z_dim"):
        value = getattr(cfg.arch, key)
        require(value > 0, f"arch.{key}", value, "a positive integer")
    for key in ("batch_size", "d_steps", "log_every", "checkpoint_every", "sample_every"):
        value = getattr(cfg.train, key)
        require(value > 0, f"train.{key}", value, "a positive integer")
    for key in ("lr_g", "lr_d"):
        value = getattr(cfg.train, key)
        require(value > 0, f"train.{key}", value, "a positive number")
    require(
        cfg.train.fid_every >= 0,
        "train.fid_every",
        cfg.train.fid_every,
        "0 (off) or a positive integer",
    )
    require(
        cfg.train.fid_samples > 0, "train.fid_samples", cfg.train.fid_samples, "a positive integer"
    )
    require(cfg.loss.gp_lambda >= 0, "loss.gp_lambda", cfg.loss.gp_lambda, "a number >= 0")

    spec = DATASETS[cfg.dataset.name]
    if (cfg.train.steps is None) == (cfg.train.epochs is None):
        raise ConfigError(
            "keys 'train.steps' and 'train.epochs': set exactly one of them "
            f"(got steps={cfg.train.steps!r}, epochs={cfg.train.epochs!r})"
        )
    if cfg.train.steps is not None:
        require(cfg.train.steps > 0, "train.steps", cfg.train.steps, "a positive integer")
    if cfg.dataset.n_train is not None:
        require(
            spec.kind == "mixture2d",
            "dataset.n_train",
            cfg.dataset.n_train,
            f"null for {spec.name}, whose size is set by its preparation "
            f"(study key data.prepare.{spec.name})",
        )
        require(
            cfg.dataset.n_train >= cfg.train.batch_size,
            "dataset.n_train",
            cfg.dataset.n_train,
            f"at least one batch (train.batch_size = {cfg.train.batch_size})",
        )
    if cfg.train.epochs is not None:
        require(cfg.train.epochs > 0, "train.epochs", cfg.train.epochs, "a positive number")
        require(
            spec.kind == "image" or cfg.dataset.n_train is not None,
            "train.epochs",
            cfg.train.epochs,
            f"null for {spec.name}, which is sampled without end: set train.steps, or give it "
            "a fixed training set with dataset.n_train",
        )
    arch = ARCHS[cfg.arch.name]
    mlp = {}
    for key in MLP_KEYS:
        value = getattr(cfg.arch, key)
        if key not in arch.mlp_defaults:
            require(
                value is None,
                f"arch.{key}",
                value,
                f"null: {arch.name} has no such setting (it is a key of "
                + ", ".join(n for n, a in ARCHS.items() if a.mlp_defaults)
                + ")",
            )
            continue
        value = arch.mlp_defaults[key] if value is None else value
        require(value > 0, f"arch.{key}", value, "a positive integer")
        mlp[key] = value
    require(
        arch.supports(spec),
        "arch.name",
        cfg.arch.name,
        f"an architecture for {spec.name} ({spec.describe_shape()}): "
        + ", ".join(name for name, a in ARCHS.items() if a.supports(spec)),
    )
    if cfg.arm is not None:
        require(
            ARM_NAME.match(cfg.arm) is not None
            and (cfg.arm == cfg.loss.name or cfg.arm not in LOSSES),
            "arm",
            cfg.arm,
            "a name of lowercase letters, digits and _ that is not another loss's name",
        )
    a, b, c = resolve_coding(cfg.loss)
    alpha_d, alpha_g = resolve_alphas(cfg.loss)
    loss = dataclasses.replace(cfg.loss, a=a, b=b, c=c, alpha_d=alpha_d, alpha_g=alpha_g)
    return dataclasses.replace(
        cfg,
        arch=dataclasses.replace(cfg.arch, **mlp),
        loss=loss,
        train=resolve_settings(cfg.train, loss),
    )


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a run config from a plain mapping (e.g. parsed YAML)."""
    return validate(_build(RunConfig, data, ""))


def load(path: str | Path) -> RunConfig:
    from ganstudy import yamlfile

    return from_dict(yamlfile.load_mapping(path, "config file"))


def override(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` assignments (values parsed as YAML) to a nested mapping."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}
    given: dict[str, str] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r} is not of the form key.sub=value")
        if key in given:
            raise ConfigError(
                f"--set {item!r}: key '{key}' is already set ({given[key]!r}); allowed: each "
                "key once"
            )
        given[key] = item
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(
                f"--set {item!r}: the value of key '{key}' is not valid YAML ({problem}); "
                "allowed: a YAML value, e.g. 500, 0.001, true, [1, 2] or a quoted string"
            ) from None
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a mapping")
        node[parts[-1]] = value
    return data

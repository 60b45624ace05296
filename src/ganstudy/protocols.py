"""Published protocols as data, the same fields read from our runs, and their differences.

A protocol record (``protocols`` in ``report/references.yaml``) states what a publication did,
one value per field of :data:`FIELDS`: the dataset and its size, the networks, the loss and its
exact form, the optimizer, the length, the latent code, the metric and its sample count, the
number of runs and what the plus-minus is. A value of ``null`` means the publication does not
say. :func:`ours` reads the same fields from one of our run configs and what the run recorded;
:func:`differences` compares them field by field and returns every mismatch, and every field
it cannot compare (a value the publication does not give, or one we cannot derive) as "not
compared": a field is never skipped silently.

The networks are compared by name: a published record names the architecture of our registry
that implements the publication's networks (checked against the reference code by the nets
tests), or describes its networks in words where no registered one does, which then differ
from ours by construction.

Nothing here imports torch: the conformance test and the study check use it on plain configs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ganstudy.errors import ConfigError
from ganstudy.metrics.registry import published_names

NOT_PUBLISHED = "not compared: the publication does not state it"
# A record's value for a field that does not apply (MLP depth of a conv net): equal to ours when
# we have no value either.
NOT_APPLICABLE = "n/a"
NOT_DERIVED = "not compared: our runs do not record it"


@dataclass(frozen=True)
class Facts:
    """What a run config alone does not say: the training-set size the run used (None:
    sampled without end), its total G steps, the evaluation settings and the number of runs."""

    n_train: int | None = None
    steps: int | None = None
    metric: str | None = None
    n_samples: int | None = None
    min_count: int | None = None
    classifier: str | None = None
    fid_implementation: str | None = None
    n_reference: int | None = None
    runs: int | None = None


def _get(cfg: Mapping, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _cfg(path: str) -> Callable[[Mapping, Facts], Any]:
    return lambda cfg, facts: _get(cfg, path)


def _coding(cfg: Mapping, facts: Facts) -> str | None:
    loss = cfg["loss"]
    if loss.get("a") is None:
        return None
    return f"({loss['a']:g}, {loss['b']:g}, {loss['c']:g})"


def _beta(index: int) -> Callable[[Mapping, Facts], Any]:
    def value(cfg: Mapping, facts: Facts) -> Any:
        train = cfg["train"]
        return train.get(f"beta{index}") if train["optimizer"] == "adam" else None

    return value


def _train_size(cfg: Mapping, facts: Facts) -> Any:
    if facts.n_train is not None:
        return facts.n_train
    if cfg["dataset"].get("n_train") is not None:
        return cfg["dataset"]["n_train"]
    from ganstudy.data import registry

    spec = registry.DATASETS.get(cfg["dataset"]["name"])
    if spec is not None and spec.kind == "mixture2d":
        return "unbounded: fresh samples every step"
    return None


def _training_set(cfg: Mapping, facts: Facts) -> str:
    from ganstudy.data import registry

    spec = registry.DATASETS.get(cfg["dataset"]["name"])
    if spec is None or spec.kind != "mixture2d":
        return "a prepared set, reshuffled every epoch"
    if cfg["dataset"].get("n_train") is None:
        return "fresh samples every step"
    return "one fixed set for every seed, reshuffled every epoch"


def _epochs(cfg: Mapping, facts: Facts) -> Any:
    epochs = cfg["train"].get("epochs")
    return "none: a set number of steps" if epochs is None else epochs


def _z(cfg: Mapping, facts: Facts) -> str:
    arch = cfg["arch"]
    dist = {"normal": "N(0, 1)", "uniform": "U(-1, 1)"}[arch["z_dist"]]
    return f"{arch['z_dim']}-d {dist}"


def _bn(flag: str) -> Callable[[Mapping, Facts], bool]:
    return lambda cfg, facts: bool(cfg["arch"]["bn"][flag])


def _fact(name: str) -> Callable[[Mapping, Facts], Any]:
    return lambda cfg, facts: getattr(facts, name)


@dataclass(frozen=True)
class Field:
    key: str
    description: str
    # Our value from a resolved run config (as a mapping) and the run's facts; None: a field we
    # never derive (always "not compared").
    ours: Callable[[Mapping, Facts], Any] | None


FIELDS: tuple[Field, ...] = (
    Field("dataset", "dataset (a name of the dataset registry)", _cfg("dataset.name")),
    Field("train_size", "training samples (images or points)", _train_size),
    Field("training_set", "how training batches are drawn", _training_set),
    Field("arch", "networks: the registered architecture that implements them", _cfg("arch.name")),
    Field("g_layers", "hidden layers of G (MLPs)", _cfg("arch.g_layers")),
    Field("g_width", "units per hidden layer of G (MLPs)", _cfg("arch.g_width")),
    Field("d_layers", "hidden layers of D (MLPs)", _cfg("arch.d_layers")),
    Field("d_width", "units per hidden layer of D (MLPs)", _cfg("arch.d_width")),
    Field("bn_g", "batch norm in G", _bn("g")),
    Field("bn_d", "batch norm in D", _bn("d")),
    Field("init", "weight initialisation (ganstudy.nets.INIT_SCHEMES)", _cfg("arch.init")),
    Field("z", "latent code: dimension and distribution", _z),
    Field("loss", "loss (a name of the loss registry, whose formula is exact)", _cfg("loss.name")),
    Field("coding", "least-squares coding (a, b, c)", _coding),
    Field("optimizer", "optimizer of G and D", _cfg("train.optimizer")),
    Field("lr_d", "learning rate of D", _cfg("train.lr_d")),
    Field("lr_g", "learning rate of G", _cfg("train.lr_g")),
    Field("beta1", "Adam beta1", _beta(1)),
    Field("beta2", "Adam beta2", _beta(2)),
    Field("batch_size", "batch size", _cfg("train.batch_size")),
    Field("epochs", "epochs over the training set", _epochs),
    Field("steps", "generator updates in all", _fact("steps")),
    Field("d_steps", "D updates per G update", _cfg("train.d_steps")),
    Field(
        "noise",
        "latent draws during training",
        lambda cfg, facts: "fresh draws every step, separate batches for the D and the G step",
    ),
    Field("metric", "the metric of the published number", _fact("metric")),
    Field("n_samples", "generated samples the metric uses", _fact("n_samples")),
    Field("min_count", "(high-quality) samples that make a mode covered", _fact("min_count")),
    Field("classifier", "classifier behind a mode count", _fact("classifier")),
    Field("fid_implementation", "Inception network of FID", _fact("fid_implementation")),
    Field("n_reference", "real images FID compares with", _fact("n_reference")),
    Field("runs", "seeds or trials behind the number", _fact("runs")),
    # The report gives the SD and a 95% CI of every mean; the field names the published spread.
    Field("spread", "what the plus-minus is", lambda cfg, facts: "SD over seeds"),
    Field(
        "selection",
        "how the reported setting was chosen (ours: the study config's, every seed reported)",
        lambda cfg, facts: "fixed setting",
    ),
)
FIELD_KEYS = tuple(f.key for f in FIELDS)
# Keys of a protocol record besides the fields.
RECORD_KEYS = ("source", "where", "text", "notes")


def check_record(name: str, record: Mapping) -> None:
    """Every field present (null where the publication is silent), nothing unknown."""
    unknown = sorted(set(record) - set(FIELD_KEYS) - set(RECORD_KEYS))
    if unknown:
        raise ConfigError(
            f"references.yaml: protocol {name!r} has unknown key {unknown[0]!r}; allowed: "
            + ", ".join((*RECORD_KEYS, *FIELD_KEYS))
        )
    missing = [k for k in FIELD_KEYS if k not in record]
    if missing:
        raise ConfigError(
            f"references.yaml: protocol {name!r} lacks field(s) {', '.join(missing)}; every "
            "field is stated (null where the publication does not say)"
        )


def ours(run_config: Mapping, facts: Facts) -> dict[str, Any]:
    """Our value of every field (None: not derived) for one resolved run config."""
    out = {}
    for f in FIELDS:
        out[f.key] = None if f.ours is None else f.ours(run_config, facts)
    return out


def same(published: Any, mine: Any) -> bool:
    if isinstance(published, bool) or isinstance(mine, bool):
        return published is mine or published == mine
    try:
        return math.isclose(float(published), float(mine), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(published) == str(mine)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Difference:
    key: str
    published: Any
    ours: tuple[Any, ...]
    compared: bool

    def __str__(self) -> str:
        if not self.compared:
            if self.published is None:
                return f"{self.key}: {NOT_PUBLISHED}"
            return f"{self.key}: published {_show(self.published)}, {NOT_DERIVED}"
        mine = ", ".join(_show(v) for v in self.ours)
        return f"{self.key}: published {_show(self.published)}, ours {mine}"


def differences(record: Mapping, mine: list[Mapping[str, Any]]) -> list[Difference]:
    """Field-by-field differences between a protocol record and our runs' values (one mapping
    per run, from :func:`ours`): a field differs when any run's value differs; a field the
    record leaves null, or one no run records, is "not compared"."""
    out = []
    for key in FIELD_KEYS:
        published = record.get(key)
        values = []
        for run in mine:
            value = run.get(key)
            if value is not None and not any(same(value, v) for v in values):
                values.append(value)
        if published == NOT_APPLICABLE:
            if values:
                out.append(Difference(key, published, tuple(values), True))
            continue
        if published is None:
            out.append(Difference(key, None, tuple(values), False))
        elif not values:
            out.append(Difference(key, published, (), False))
        elif not all(same(published, v) for v in values):
            out.append(Difference(key, published, tuple(values), True))
    return out


def conformance(record: Mapping, mine: Mapping[str, Any]) -> list[str]:
    """The fields where one run config departs from a record it reproduces: every compared
    mismatch (fields the record leaves null, or we cannot derive, are not departures)."""
    return [str(d) for d in differences(record, [mine]) if d.compared]


def result_protocol(references: Mapping, result: Mapping) -> dict[str, Any]:
    """The whole protocol of one published number: its record with the result's own fields."""
    record = dict(references["protocols"][result["protocol"]])
    record.update(result.get("protocol_fields") or {})
    record["metric"] = result["metric"]
    return record


def check_references(refs: Mapping) -> None:
    """Every protocol record complete, every result naming a known protocol, metric and fields."""
    for name, record in refs.get("protocols", {}).items():
        check_record(name, record)
    for res in refs["results"]:
        if res.get("protocol") not in refs.get("protocols", {}):
            raise ConfigError(
                f"references.yaml: result {res.get('id')!r} names protocol "
                f"{res.get('protocol')!r}; allowed: {', '.join(refs.get('protocols', {}))}"
            )
        # the ``published`` names of the metric registry (each maps to a column of ours)
        if res["metric"] not in published_names():
            raise ConfigError(
                f"references.yaml: result {res['id']!r} has metric {res['metric']!r}; allowed: "
                + ", ".join(published_names())
            )
        unknown = set(res.get("protocol_fields") or {}) - set(FIELD_KEYS)
        if unknown:
            raise ConfigError(
                f"references.yaml: result {res['id']!r} sets unknown protocol field "
                f"{sorted(unknown)[0]!r}; allowed: {', '.join(FIELD_KEYS)}"
            )
